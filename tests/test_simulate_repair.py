"""The repair loop and the stage, with the scripted LLM at the LLM seam and real Docker sandboxes for the dry run."""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from simulate_support import CARD, GOOD_WORLD, PASSING_CHECK, bad_world, docker_sandboxes, intent

from ise.config import Config, SimulateConfig, load_config
from ise.llm.base import LLMError
from ise.llm.scripted import ScriptedLLM
from ise.plan_validation import validate
from ise.records import Message, Plan, Profile, ToolSpec
from ise.runner import errors_path
from ise.sandbox.base import Sandbox
from ise.sandbox.provider import SandboxFactory
from ise.stages.simulate import PlanRejected, Simulator, plan_messages, run_simulate, stats_path

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def sandboxes() -> Iterator[SandboxFactory]:
    with docker_sandboxes() as factory:
        yield factory


def simulator(replies: list[dict[str, Any]], sandboxes: SandboxFactory, **cfg: Any) -> tuple[Simulator, ScriptedLLM]:
    llm = ScriptedLLM(replies)
    return Simulator(llm, SimulateConfig(**cfg), sandboxes), llm


def test_a_rejected_plan_goes_back_with_the_exact_error_and_the_fix_is_kept(sandboxes: SandboxFactory) -> None:
    sim, llm = simulator([{"json": bad_world()}, {"json": GOOD_WORLD}, {"json": CARD}], sandboxes)
    plan = sim(intent())

    assert plan.attempts == 2
    assert llm.remaining == 0
    second = llm.calls[1]["messages"]
    assert second[:2] == plan_messages(intent(), with_card=False)
    assert second[2] == Message(role="assistant", content=json.dumps(bad_world()))
    assert second[3].role == "user"
    assert "- check m1c1 ('test -f /workspace/logs/app.log') already passes before any work is done" in (
        second[3].content or ""
    )
    assert llm.calls[2]["response_schema"]["title"] == "CardDraft"
    assert plan.user.persona == CARD["voice"]
    assert plan.user.on_failure == CARD["on_failure"]
    assert plan.user.on_partial == "Acknowledge what works and ask for the rest."  # empty -> the default
    assert plan.checks[0].command == GOOD_WORLD["milestones"][0]["checks"][0]["command"]
    assert validate(plan, sandboxes, SimulateConfig()).ok  # what is kept is exactly what passed
    assert sim.outcomes[0].problem_kinds == {"check_passes": 1}
    assert len(sim.outcomes[0].validation_s) == 2


def test_exhausted_attempts_raise_with_the_last_problems(sandboxes: SandboxFactory) -> None:
    sim, llm = simulator([{"json": bad_world()}, {"json": bad_world()}], sandboxes, max_attempts=2)
    with pytest.raises(PlanRejected, match=r"no valid plan after 2 attempts; last problems: check m1c1 .* already"):
        sim(intent())
    assert len(llm.calls) == 2
    assert not sim.outcomes[0].validated


def world_with_disproved_parts() -> dict[str, Any]:
    """GOOD_WORLD plus a second check on milestone one that already passes and a perturbation that cannot apply."""
    world = copy.deepcopy(GOOD_WORLD)
    world["milestones"][0]["checks"].append(PASSING_CHECK)
    lost = {"description": "lose the cart", "script": "mv /workspace/cart.json /tmp/", "at_user_turn": 1, "when": ""}
    world["perturbations"].append(lost)
    return world


def test_disproved_checks_and_perturbations_are_dropped_instead_of_asking_again(sandboxes: SandboxFactory) -> None:
    sim, llm = simulator([{"json": world_with_disproved_parts()}, {"json": CARD}], sandboxes)
    plan = sim(intent())

    assert plan.attempts == 1
    assert llm.remaining == 0
    assert plan.pruned == ["m1c2", "p2"]
    assert [c.id for c in plan.checks] == ["m1c1", "m2c1"]
    assert [m.checks for m in plan.user.milestones] == [["m1c1"], ["m2c1"]]
    assert [p.id for p in plan.perturbations] == ["p1"]
    assert plan.user.persona == CARD["voice"]
    assert validate(plan, sandboxes, SimulateConfig()).ok
    assert len(sim.outcomes[0].validation_s) == 2  # the pruned plan was validated again before it was kept


def test_a_milestone_left_without_a_proven_check_goes_back_to_the_model(sandboxes: SandboxFactory) -> None:
    world = world_with_disproved_parts()
    world["milestones"][1]["checks"] = [PASSING_CHECK]  # milestone two would have nothing left to check
    sim, _ = simulator([{"json": world}, {"json": GOOD_WORLD}, {"json": CARD}], sandboxes)
    plan = sim(intent())
    assert (plan.attempts, plan.pruned) == (2, [])
    assert sim.outcomes[0].problem_kinds == {"check_passes": 2, "perturbation": 1}


def test_with_pruning_off_the_model_repairs_what_was_disproved(sandboxes: SandboxFactory) -> None:
    replies = [{"json": world_with_disproved_parts()}, {"json": GOOD_WORLD}, {"json": CARD}]
    sim, llm = simulator(replies, sandboxes, prune=False)
    plan = sim(intent())
    assert (plan.attempts, plan.pruned) == (2, [])
    assert "perturbation p2 exited 1" in (llm.calls[1]["messages"][3].content or "")


def test_a_miscounted_expectation_is_taken_from_the_solved_run(sandboxes: SandboxFactory) -> None:
    world = copy.deepcopy(GOOD_WORLD)
    world["milestones"][1]["checks"][0]["expect_stdout"] = "2"  # the solution inserts one incident, not two
    sim, llm = simulator([{"json": world}, {"json": CARD}], sandboxes)
    plan = sim(intent())

    assert (plan.attempts, llm.remaining) == (1, 0)
    assert (plan.calibrated, plan.pruned) == (["m2c1"], [])
    assert plan.checks[1].expect_stdout == "1"  # and "1" is not printed on the initial state (count 0)
    assert validate(plan, sandboxes, SimulateConfig()).ok


def test_a_check_that_exits_wrongly_is_not_calibrated(sandboxes: SandboxFactory) -> None:
    world = copy.deepcopy(GOOD_WORLD)
    world["milestones"][1]["checks"][0] |= {"expect_stdout": "2", "expect_exit": 3}
    sim, _ = simulator([{"json": world}, {"json": GOOD_WORLD}, {"json": CARD}], sandboxes)
    plan = sim(intent())
    assert (plan.attempts, plan.calibrated) == (2, [])
    assert sim.outcomes[0].problem_kinds == {"solution": 1}


def test_answers_that_are_not_a_draft_use_up_an_attempt_then_start_afresh(sandboxes: SandboxFactory) -> None:
    replies = [{"content": "Sure! Here is the plan."}, {"json": {"goal": "x"}}, {"json": GOOD_WORLD}, {"json": CARD}]
    sim, llm = simulator(replies, sandboxes, schema_attempts=2)
    plan = sim(intent())
    assert plan.attempts == 2
    assert llm.calls[2]["messages"] == plan_messages(intent(), with_card=False)
    assert "no JSON value found in the reply" in (llm.calls[1]["messages"][-1].content or "")
    assert sim.outcomes[0].problem_kinds == {"schema": 1}


def test_an_endpoint_failure_is_not_an_attempt(sandboxes: SandboxFactory) -> None:
    sim, llm = simulator([{"error": "connection"}, {"json": GOOD_WORLD}], sandboxes)
    with pytest.raises(LLMError, match="connection"):
        sim(intent())
    assert llm.remaining == 1


def test_a_validated_world_is_kept_when_the_card_cannot_be_written(sandboxes: SandboxFactory) -> None:
    sim, llm = simulator([{"json": GOOD_WORLD}, {"content": "no"}, {"content": "still no"}], sandboxes)
    plan = sim(intent())
    assert llm.remaining == 0
    assert (plan.attempts, plan.user.persona, plan.user.hidden_facts) == (1, intent().persona.style, [])
    assert sim.outcomes[0].card_fallback


def test_one_shot_mode_writes_the_card_in_the_same_answer(sandboxes: SandboxFactory) -> None:
    draft = GOOD_WORLD | {"voice": "polite and slow", "hidden_facts": CARD["hidden_facts"]}
    sim, llm = simulator([{"json": draft}], sandboxes, two_part=False)
    plan = sim(intent())
    assert len(llm.calls) == 1
    assert llm.calls[0]["response_schema"]["title"] == "PlanDraft"
    assert (plan.user.persona, plan.user.hidden_facts[0].fact) == ("polite and slow", "the csv has no header")


# --- the stage -------------------------------------------------------------------------------------------------


def write_intents(path: Path, *ids: str) -> Path:
    path.write_text("".join(intent(i).model_dump_json() + "\n" for i in ids))
    return path


def stage_config(**simulate: Any) -> Config:
    return load_config(["llm.kind=scripted", *(f"simulate.{k}={v}" for k, v in simulate.items())])


def test_the_stage_keeps_good_plans_sends_rejections_to_the_errors_file_and_resumes(
    tmp_path: Path, sandboxes: SandboxFactory
) -> None:
    intents = write_intents(tmp_path / "intents.jsonl", "a", "b")
    output = tmp_path / "plans.jsonl"
    config = stage_config(max_attempts=2)
    first = ScriptedLLM([{"json": bad_world()}, {"json": bad_world()}, {"json": GOOD_WORLD}, {"json": CARD}])
    stats = run_simulate(intents, output, config, llm=first, sandbox_factory=sandboxes, console=Console(width=120))

    [plan] = [Plan.model_validate_json(line) for line in output.read_text().splitlines()]
    assert plan.id == "b"
    [error] = [json.loads(line) for line in errors_path(output).read_text().splitlines()]
    assert (error["id"], error["error"]) == ("a", "PlanRejected")
    assert "already passes before any work is done" in error["message"]
    assert json.loads(stats_path(output).read_text()) == stats
    assert (stats["plans"], stats["rejected"], stats["validation_pass_rate"]) == (1, 1, 0.5)
    assert stats["this_run"]["attempts"] == 3
    assert stats["this_run"]["problems"] == {"check_passes": 2}
    assert stats["checks_per_plan"]["mean"] == 2
    assert stats["perturbations_per_plan"]["mean"] == 1
    assert stats["fixtures_per_plan"]["mean"] == 3

    # A rerun plans only what is missing: the scripted LLM has replies for one intent, and "b" is not asked again.
    second = ScriptedLLM([{"json": GOOD_WORLD}, {"json": CARD}])
    stats = run_simulate(intents, output, config, llm=second, sandbox_factory=sandboxes, console=Console(width=120))
    assert second.remaining == 0
    assert [Plan.model_validate_json(line).id for line in output.read_text().splitlines()] == ["b", "a"]
    assert (stats["plans"], stats["rejected"], stats["validation_pass_rate"]) == (2, 0, 1.0)
    assert stats["run"]["skipped"] == 1


def test_workers_plan_intents_concurrently(tmp_path: Path, sandboxes: SandboxFactory) -> None:
    """Two workers: both intents are dry-run at the same time, each in its own sandbox."""
    open_now, peak, lock = [0], [0], threading.Lock()
    both_open = threading.Barrier(2, timeout=60)

    @contextmanager
    def counted(profile: Profile) -> Iterator[Sandbox]:
        with sandboxes(profile) as box:
            with lock:
                open_now[0] += 1
                peak[0] = max(peak[0], open_now[0])
            both_open.wait()
            try:
                yield box
            finally:
                with lock:
                    open_now[0] -= 1

    def responder(messages: Sequence[Message], _: Sequence[ToolSpec], schema: dict[str, Any] | None) -> dict[str, Any]:
        assert schema is not None
        return {"json": CARD if schema["title"] == "CardDraft" else GOOD_WORLD}

    intents = write_intents(tmp_path / "intents.jsonl", "a", "b")
    output = tmp_path / "plans.jsonl"
    llm = ScriptedLLM(responder=responder)
    stats = run_simulate(intents, output, stage_config(), workers=2, llm=llm, sandbox_factory=counted)
    assert peak[0] == 2
    assert sorted(Plan.model_validate_json(line).id for line in output.read_text().splitlines()) == ["a", "b"]
    assert stats["validation_pass_rate"] == 1.0
