"""The pure parts of the execute stage: role guard, verdicts, claims, budgets, recovery labels, argument checks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from execute_support import make_plan

from ise.agent import BASH, REPEAT_NOTE, WRITE_FILE, argument_problem, repeats_previous
from ise.config import ExecuteConfig
from ise.provenance import trajectory_seed
from ise.records import Budgets, CheckProbe, CheckResult, Step, TerminationReason
from ise.recovery import command_family, label_failures
from ise.stages.execute import drop_rerunnable
from ise.stages.trace_build import claims_success
from ise.usersim import drift_reason, split_verdict


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("can you also sort it by date?", None),
        ("Sure, go ahead and do that.", None),
        ("I've tried restarting it already, still broken", None),
        ("Sure! How can I help you today?", "offers help"),
        ("I'd be happy to help with that.", "offers help"),
        ("Certainly. First, open the file.", "answers like an assistant"),
        ("Here's how you can fix it: edit the config.", "solves the task"),
        ("```bash\nls -la\n```", "emits a code block"),
        ('{"name": "bash", "arguments": {"command": "ls"}}', "emits JSON"),
        ("<tool_call>ls</tool_call>", "emits a tool call"),
        ("Assistant: I ran the command.", "speaks as the assistant"),
        ("   ", "empty message"),
    ],
)
def test_role_guard(text: str, reason: str | None) -> None:
    assert drift_reason(text) == reason


def test_verdict_tokens_are_split_off() -> None:
    assert split_verdict("Great, thanks! [[DONE]]") == ("Great, thanks!", "done")
    assert split_verdict("User: forget it [[GIVE_UP]]") == ("forget it", "give_up")
    assert split_verdict("[[DONE]] wait no [[GIVE_UP]]") == ("wait no", "give_up")
    assert split_verdict("still not working") == ("still not working", None)


@pytest.mark.parametrize(
    ("answer", "claims"),
    [
        ("Done! report.txt is in place.", True),
        ("I've updated the config and restarted the service successfully.", True),
        ("I could not find the file, so nothing was created.", False),
        ("Should I also delete the old logs?", False),
        ("Here is what the directory contains.", False),
        (None, False),
    ],
)
def test_success_claims(answer: str | None, claims: bool) -> None:
    assert claims_success(answer) is claims


def test_budget_caps_lower_but_never_raise_the_plans_budgets() -> None:
    plan = Budgets(
        max_user_turns=5, max_agent_steps_per_turn=10, command_timeout_s=30, wall_clock_s=600, max_tokens=9000
    )
    caps = ExecuteConfig(max_user_turns=3, command_timeout_s=60, max_tokens=4000)
    assert caps.capped(plan) == Budgets(
        max_user_turns=3, max_agent_steps_per_turn=10, command_timeout_s=30, wall_clock_s=600, max_tokens=4000
    )
    assert ExecuteConfig().capped(plan) == plan


def test_trajectory_seeds_are_stable_and_distinct() -> None:
    assert trajectory_seed(0, "a") == trajectory_seed(0, "a")
    assert len({trajectory_seed(0, "a"), trajectory_seed(0, "b"), trajectory_seed(1, "a")}) == 3


def test_tool_arguments_are_checked_against_the_schema() -> None:
    assert argument_problem(BASH, {"command": "ls"}) is None
    assert argument_problem(BASH, {}) == "missing required argument(s): command"
    assert argument_problem(BASH, {"command": "ls", "cwd": "/"}) == "unknown argument(s): cwd; expected: command"
    assert argument_problem(WRITE_FILE, {"path": "a", "content": 3}) == "argument 'content' must be a string, got int"


@pytest.mark.parametrize(
    ("command", "family"),
    [
        ("ls -la", "ls"),
        ("cd app && python3 main.py --fast", "python3 main.py"),
        ("FOO=1 sudo make test", "make test"),
        ("git commit -m 'x'", "git commit"),
        ("python3 -m pytest -q", "python3 -m"),
        ("tail -n +2 a.csv | wc -l > n.txt", "tail"),
        ("timeout 5 curl localhost", "curl"),
    ],
)
def test_command_families(command: str, family: str) -> None:
    assert command_family(command) == family


def _step(index: int, command: str, status: str = "ok", *, turn: int = 1, tool: str = "bash", **extra: Any) -> Step:
    arguments = {"command": command} if tool == "bash" else {"path": command}
    return Step(
        index=index,
        turn=turn,
        message_index=index,
        tool_call_id=f"c{index}",
        tool=tool,
        arguments=arguments,
        status=status,  # type: ignore[arg-type]
        result="",
        **extra,
    )


def test_failures_are_linked_to_what_overcame_them() -> None:
    steps = [
        _step(0, "python3 app.py", "failed", exit_code=1),  # fixed by running it again after an edit
        _step(1, "app.py", tool="edit_file"),
        _step(2, "python3 app.py"),
        _step(3, "cat missing.txt", "failed", exit_code=1),  # never recovered by cat; the check passes later
        _step(4, "notes.txt", "error", tool="read_file", error="read_file failed: no such file"),
        _step(5, "notes.txt", tool="read_file"),  # same tool succeeds after the refusal
        _step(6, "make", "failed", turn=2, exit_code=2),  # nothing overcomes it
        _step(7, "lss -la", "failed", turn=3, exit_code=127),  # not found; an unrelated success later is no fix
        _step(8, "ls -la", turn=3),
    ]
    probes = [
        CheckProbe(turn=1, milestone="m1", after_step=3, results=[CheckResult(id="count", passed=False, exit_code=1)]),
        CheckProbe(turn=1, milestone="m1", after_step=5, results=[CheckResult(id="count", passed=True, exit_code=0)]),
    ]
    final = [CheckResult(id="listing", passed=True, exit_code=0)]
    failures = label_failures(steps, probes, final, {1: ["count"], 2: ["report"], 3: ["listing"]})
    linked = {(f.kind, f.step, f.check): (f.recovered_by, f.evidence) for f in failures}
    assert linked == {
        ("step", 0, None): (2, "same_target"),
        ("step", 3, None): (5, "check_passed"),
        ("step", 4, None): (5, "tool_fixed"),
        ("step", 6, None): (None, None),
        ("step", 7, None): (None, None),
        ("probe", 3, "count"): (5, "check_passed"),
    }


def test_infra_traces_are_dropped_for_a_rerun_and_the_rest_kept_byte_for_byte(tmp_path: Path) -> None:
    out = tmp_path / "traces.jsonl"
    kept = '{"id": "a", "termination": "user_done", "tags": ["checks_passed"], "note": "infra_error in text"}\n'
    infra = '{"id": "b", "termination": "infra_error", "tags": ["infra_error"]}\n'
    setup = '{"id": "d", "termination": "setup_error", "env": {"plan_sha256": "x", "image_id": "sha256:1"}}\n'
    out.write_text(kept + infra + setup + kept.replace('"a"', '"c"') + '{"id": "torn", "termin')

    def drop(**how: bool) -> tuple[int, int]:
        return drop_rerunnable(out, {}, image_id="sha256:1", **{"infra_errors": True, "setup_errors": False, **how})

    assert drop(infra_errors=False) == (0, 0)  # nothing asked for, nothing changed: the torn tail is repaired only
    assert drop() == (1, 0)
    assert out.read_text() == kept + setup + kept.replace('"a"', '"c"')
    assert drop() == (0, 0)
    assert drop_rerunnable(out, {}, infra_errors=True, setup_errors=False, image_id="sha256:2") == (0, 1)
    assert drop_rerunnable(tmp_path / "absent.jsonl", {}, infra_errors=True, setup_errors=True, image_id=None) == (0, 0)


def test_termination_reasons_are_stable_strings() -> None:
    # export and reports filter on these values: renaming one is a schema change
    assert {r.value for r in TerminationReason} == {
        "user_done", "user_gave_up", "max_turns", "max_steps", "wall_clock", "token_budget",
        "model_error", "role_drift", "infra_error", "setup_error", "agent_answered",
    }  # fmt: skip


def test_make_plan_is_a_valid_plan() -> None:
    plan = make_plan()
    assert {c for m in plan.user.milestones for c in m.checks} == {c.id for c in plan.checks}


def test_a_step_that_repeats_the_previous_one_exactly_is_pointed_out() -> None:
    first = _step(0, "cat a.txt")
    first.result = "hello"
    again = _step(1, "cat a.txt")
    again.result = "hello"
    other = _step(2, "cat b.txt")
    other.result = "hello"
    assert repeats_previous(first, again)
    again.result += REPEAT_NOTE
    third = _step(3, "cat a.txt")
    third.result = "hello"
    assert repeats_previous(again, third)  # a third time is noted again
    assert not repeats_previous(again, other)
