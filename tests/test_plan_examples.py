"""Seeds as the plan writer's worked examples: what the prompt shows is the seed in the writer's own draft JSON,
and that draft, read back the way a model's answer is, is still a proven plan on the real engine."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest
from execute_support import docker_engine  # noqa: F401  (a fixture, requested by name)

from ise.config import Config, SimulateConfig
from ise.plan_validation import validate
from ise.records import Plan
from ise.sandbox.provider import open_provider
from ise.seeds import load_seeds
from ise.stages.plan_drafts import PlanDraft, asks_question, plan_from_draft, plan_messages
from ise.stages.plan_examples import draft_of, seed_examples_for

SEEDS = load_seeds()
SYSTEM = set(SimulateConfig().system_domains)
SHOWN = [(s, q) for s in SEEDS for q in (False, True) if draft_of(s, question=q, with_card=True) is not None]


def _read_back(seed: Plan, question: bool) -> Plan:
    draft = draft_of(seed, question=question, with_card=True)
    assert draft is not None
    for milestone in draft["milestones"]:  # the schema always has an answer; the prompt omits it without questions
        milestone.setdefault("answer", {"match": "none", "expected": "", "expected_from": ""})
    world = PlanDraft.model_validate(draft)
    plan = plan_from_draft(seed.intent, world, None, SimulateConfig(), attempts=1, model="seed")
    return plan.model_copy(update={"profile": seed.profile})  # examples are only shown under their own profile


def test_most_seeds_can_be_shown_and_answers_only_for_questions() -> None:
    # most seeds build their world in the setup script, and the writer's schema wants at least one file
    assert len({s.id for s, _ in SHOWN}) >= 10
    for seed, question in SHOWN:
        draft = draft_of(seed, question=question, with_card=True)
        assert draft is not None
        assert all(("answer" in m) == question for m in draft["milestones"])


def test_the_prompt_shows_the_closest_seed_only_when_asked() -> None:
    seed = next(s for s, q in SHOWN if not q and s.profile == "user" and s.intent.domain not in SYSTEM)
    intent = seed.intent.model_copy(update={"id": "x", "request": "Please tidy the release folder for me."})
    assert not asks_question(intent)
    (request, answer), *_ = seed_examples_for(intent, 1, profile=seed.profile, question=False, with_card=False)
    system = plan_messages(intent, with_card=False, cfg=SimulateConfig(seed_examples=1))[0].content or ""
    assert f'request: "{request}"' in system
    assert answer in system
    assert json.loads(answer)["goal"]
    plain = plan_messages(intent, with_card=False, cfg=SimulateConfig())[0].content or ""
    assert request not in plain  # seed_examples 0 (the default): the fixed examples only


@pytest.mark.docker
@pytest.mark.usefixtures("docker_engine")
def test_every_example_read_back_is_still_a_proven_plan() -> None:
    config = Config()
    with open_provider(config.sandbox, run_id="test-plan-examples") as factory, ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda sq: validate(_read_back(*sq), factory, config.simulate), SHOWN))
    problems = {f"{s.id} question={q}": r.problems for (s, q), r in zip(SHOWN, results, strict=True)}
    failures = {name: [str(p) for p in found] for name, found in problems.items() if found}
    assert failures == {}
