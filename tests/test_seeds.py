"""The seed library (ise/seeds): every seed reads, is sound on paper and is proven on the real Docker engine (every
check fails on the initial state, answer checks reject "" and "I do not know.", and every check passes after the
reference solution, each in a fresh sandbox); the library covers the taxonomy; bad seed files are one clear line;
`simulate.seeds` adds a domain's seeds to a run exactly once; the reference agent passes whole episodes (with
their perturbations) and the do-nothing agent fails them."""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from execute_support import docker_engine  # noqa: F401  (a fixture, requested by name)
from simulate_support import CARD, GOOD_WORLD, docker_sandboxes, intent

import ise.seeds
from ise.config import Config, SimulateConfig, load_config
from ise.controls import oracle_llm
from ise.errors import InputError
from ise.jsonl import read_records
from ise.llm.scripted import ScriptedLLM
from ise.plan_static import static_problems
from ise.plan_validation import validate
from ise.records import AnswerCheck, Plan, Trace
from ise.sandbox import lifecycle
from ise.sandbox.docker_api import shared_api
from ise.sandbox.provider import SandboxFactory, open_provider
from ise.seeds import domains, load_seed_tasks, load_seeds, seed_examples
from ise.stages.evaluate import run_eval
from ise.stages.simulate import run_simulate
from ise.tasks import TaskSet, load_tasks
from ise.taxonomy import load_taxonomy
from ise.usersim import drift_reason

SEEDS = load_seeds()
BY_NAME = {plan.id.removeprefix("seed/"): plan for plan in SEEDS}
TAXONOMY_DOMAINS = {"files", "text", "data", "logs", "backup", "documents", "git", "services", "security"}
TAXONOMY_DOMAINS |= {"packages", "automation", "network"}
RUN_ID = f"test-seeds-{uuid.uuid4().hex[:8]}"
EPISODE_SEEDS = [
    "sort-downloads-and-dedupe",  # a perturbation mid-task, a shell check and an answer
    "ssh-bruteforce-blocklist",  # a perturbation the state-computed check must follow, three milestones
    "hosts-override-resolution",  # admin: /etc/hosts is a bind mount
    "pidfile-control-script",  # a script whose behaviour the check exercises
    "count-large-raw-files",  # one question, single answer
]
"""Seeds run as whole episodes through `ise eval`."""


def _has_answer(plan: Plan) -> bool:
    return any(isinstance(c, AnswerCheck) for c in plan.checks)


# --- on paper ----------------------------------------------------------------------------------------------------


def test_the_library_covers_every_domain_and_complexity() -> None:
    assert len(SEEDS) >= 40
    per_domain = Counter(plan.intent.domain for plan in SEEDS)
    assert set(domains()) == TAXONOMY_DOMAINS
    assert all(per_domain[d] >= 2 for d in TAXONOMY_DOMAINS), per_domain
    assert sum(map(_has_answer, SEEDS)) * 3 >= len(SEEDS)
    assert {plan.intent.complexity for plan in SEEDS} == {"simple", "medium", "complex"}
    assert {plan.profile for plan in SEEDS} == {"user", "admin"}


def test_seeds_use_the_taxonomys_task_templates() -> None:
    known = {task.id for task in load_taxonomy(Path("configs/taxonomy")).tasks}
    assert {t for plan in SEEDS for t in plan.intent.tasks} <= known


@pytest.mark.parametrize("plan", SEEDS, ids=lambda p: p.id)
def test_a_seed_is_sound_on_paper(plan: Plan) -> None:
    assert static_problems(plan, SimulateConfig()) == []
    assert plan.id == plan.intent.id == f"seed/{plan.origin.task_id if plan.origin else '?'}"
    assert plan.origin is not None
    assert (plan.origin.suite, plan.origin.category) == ("seeds", plan.intent.domain)
    assert plan.budgets.max_user_turns >= len(plan.user.milestones) + 1
    assert len(plan.solution) == len(plan.user.milestones)
    named = [check for m in plan.user.milestones for check in m.checks]
    assert sorted(named) == sorted(c.id for c in plan.checks), "every check belongs to exactly one milestone"
    asks = [m.ask for m in plan.user.milestones]
    assert all("\n" not in ask and drift_reason(ask) is None for ask in asks)
    assert plan.user.persona
    assert plan.user.goal
    assert plan.intent.persona.role


def test_first_asks_tell_the_seeds_apart() -> None:
    oracle_llm(SEEDS)  # raises when two seeds open with the same ask


def test_domains_select_seeds_and_an_unknown_one_lists_the_known() -> None:
    files = load_tasks("seeds:files,git", load_config([]))
    assert files.suite == "seeds"
    assert {p.intent.domain for p in files.plans} == {"files", "git"}
    assert load_seed_tasks([]).plans == SEEDS == load_seeds(["all"])
    with pytest.raises(InputError, match=r"unknown seed domain or seed 'kitchen'; known domains: automation, backup"):
        load_seed_tasks(["files", "kitchen"])
    one = "seed/flatten-camera-import"
    assert [p.id for p in load_seeds([one])] == [one]  # single seeds by id, with or beside domains
    assert [p.id for p in load_seeds([one, "files"])].count(one) == 1


def test_seed_examples_pick_the_domain_first_then_task_overlap() -> None:
    picked = seed_examples("files", ["files.flatten_tree", "files.bulk_rename"], 3)
    assert next(p.id for p in picked) == "seed/flatten-camera-import"
    assert [p.intent.domain for p in picked] == ["files"] * 3
    many = seed_examples("git", [], 50)
    in_git = sum(p.intent.domain == "git" for p in SEEDS)
    assert {p.intent.domain for p in many[:in_git]} == {"git"}
    assert "git" not in {p.intent.domain for p in many[in_git:]}
    assert seed_examples("files", [], 0) == []


# --- bad seed files ----------------------------------------------------------------------------------------------

GOOD_SEED = """\
seeds:
- name: one
  persona: {role: teacher, industry: higher education, experience: beginner, style: kind}
  tasks: [files.count_matching]
  tools: [find]
  complexity: simple
  request: How many handouts are in /workspace/class? I need the number for the copy shop.
  deliverable: the number of files in /workspace/class
  workspace: [the folder /workspace/class]
  setup: mkdir -p /workspace/class && touch /workspace/class/a.pdf
  voice: kind
  goal: know the count
  milestones:
    - ask: How many handouts are in /workspace/class?
      checks: [{kind: answer, id: n, description: count, match: number, expected: "1"}]
      solution: ls /workspace/class | wc -l
"""


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (GOOD_SEED.replace("  tools: [find]\n", "  tools: [find]\n  colour: red\n"), r":2: seed one: colour: Extra"),
        (GOOD_SEED + GOOD_SEED.removeprefix("seeds:\n"), r"seed one is defined twice"),
        (GOOD_SEED.replace("match: number", "match: loose"), r":2: seed one: milestones\.0\.checks\.0\.answer\.match"),
        (GOOD_SEED.replace("setup: mkdir", "setup: pip install x; mkdir"), r":2: seed one: setup script needs the net"),
        (GOOD_SEED.replace("  voice: kind\n", "  voice: [kind\n"), r"kitchen\.yaml:\d+: not YAML"),
        ("- just a list\n", r"kitchen\.yaml: expected a mapping with a `seeds` list"),
        (GOOD_SEED + "notes: hi\n", r"unknown top-level key 'notes'"),
    ],
)
def test_a_bad_seed_file_is_one_line_naming_file_line_and_seed(
    text: str, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "kitchen.yaml").write_text(text)
    monkeypatch.setattr(ise.seeds, "SEED_DIR", tmp_path)
    ise.seeds._load_domain.cache_clear()
    try:
        with pytest.raises(InputError, match=message) as caught:
            load_seeds(["kitchen"])
        assert "\n" not in str(caught.value)
        assert str(caught.value).startswith("ise/seeds/kitchen.yaml")
    finally:
        ise.seeds._load_domain.cache_clear()


def test_the_good_seed_reads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "kitchen.yaml").write_text(GOOD_SEED)
    monkeypatch.setattr(ise.seeds, "SEED_DIR", tmp_path)
    ise.seeds._load_domain.cache_clear()
    try:
        [plan] = load_seeds(["kitchen"])
    finally:
        ise.seeds._load_domain.cache_clear()
    assert (plan.id, plan.intent.domain, plan.user.milestones[0].checks, plan.solution) == (
        "seed/one",
        "kitchen",
        ["n"],
        ["ls /workspace/class | wc -l"],
    )


# --- on the real Docker engine -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sandboxes(docker_engine: None) -> Iterator[SandboxFactory]:  # noqa: F811  (the fixture imported above)
    with open_provider(load_config([]).sandbox, run_id=RUN_ID) as factory:
        yield factory
    assert lifecycle.ours(shared_api(), run_id=RUN_ID) == []


@pytest.mark.docker
def test_every_seed_is_proven(sandboxes: SandboxFactory) -> None:
    """Dry run and reference-solution run for every seed, three at a time (each validation opens its own sandboxes)."""
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(lambda plan: validate(plan, sandboxes, SimulateConfig()), SEEDS))
    problems = {plan.id: [str(p) for p in r.problems] for plan, r in zip(SEEDS, results, strict=True) if not r.ok}
    assert problems == {}
    print(f"{len(SEEDS)} seeds proven in {time.monotonic() - started:.1f} s")


@pytest.mark.docker
def test_ise_eval_on_seeds_the_oracle_passes_and_null_fails(tmp_path: Path, sandboxes: SandboxFactory) -> None:
    """Whole multi-turn episodes through `ise eval` (the relay user sends each ask; perturbations fire mid-task)."""
    tasks = TaskSet(suite="seeds", plans=[BY_NAME[name] for name in EPISODE_SEEDS])
    config = Config(run_dir=tmp_path, workers=2)
    oracle = run_eval(
        tasks, tmp_path / "oracle.jsonl", config, agent="oracle", multi_turn=True, sandbox_factory=sandboxes
    )
    assert [(t.id, t.passed, t.cause) for t in oracle.tasks if t.passed != 1] == []
    assert oracle.not_run == []
    traces = {t.id: t for t in read_records(tmp_path / "oracle.jsonl", Trace)}
    for name in EPISODE_SEEDS:
        plan = BY_NAME[name]
        fired = sorted(e.id for e in traces[plan.id].events if e.exit_code == 0)
        assert fired == sorted(p.id for p in plan.perturbations), name
    null = run_eval(tasks, tmp_path / "null.jsonl", config, agent="null", multi_turn=True, sandbox_factory=sandboxes)
    assert [t.id for t in null.tasks if t.passed] == []
    assert all(t.cause for t in null.tasks)


@pytest.mark.docker
def test_simulate_seeds_adds_a_domains_seeds_once(tmp_path: Path) -> None:
    intents = tmp_path / "intents.jsonl"
    intents.write_text(intent("a").model_dump_json() + "\n")
    output = tmp_path / "plans.jsonl"
    config = load_config(["llm.kind=scripted", "simulate.seeds=[backup]"])
    wanted = sorted(p.id for p in SEEDS if p.intent.domain == "backup")
    with docker_sandboxes() as sandboxes:
        first = ScriptedLLM([{"json": GOOD_WORLD}, {"json": CARD}])
        stats: dict[str, Any] = run_simulate(intents, output, config, llm=first, sandbox_factory=sandboxes)
        plans = {p.id: p for p in read_records(output, Plan)}
        assert sorted(plans) == sorted(["a", *wanted])
        assert all(plans[i] == BY_NAME[i.removeprefix("seed/")] for i in wanted)
        assert stats["plans"] == 1 + len(wanted)
        again = ScriptedLLM([])
        stats = run_simulate(intents, output, config, llm=again, sandbox_factory=sandboxes)
    assert again.calls == []
    assert [json.loads(line)["id"] for line in output.read_text().splitlines()].count(wanted[0]) == 1
    assert len(output.read_text().splitlines()) == 1 + len(wanted)
    assert stats["run"]["skipped"] == 1 + len(wanted)
