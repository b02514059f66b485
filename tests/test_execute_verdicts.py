"""Who decides and who is to blame, on the real Docker backend: answer checks in episodes (probes, final checks, the
user simulator's digest), empty answers, and plans whose own setup fails (setup_error)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from execute_support import (
    Responder,
    bash,
    docker_engine,  # noqa: F401  (a fixture, requested by name)
    make_plan,
    scripted_turns,
    simple_user,
)
from rich.console import Console

from ise.config import load_config
from ise.jsonl import read_records, write_atomic
from ise.llm.scripted import ScriptedLLM
from ise.records import (
    AnswerCheck,
    FileFixture,
    Message,
    Milestone,
    Plan,
    ShellCheck,
    TerminationReason,
    ToolSpec,
    Trace,
)
from ise.sandbox.provider import SandboxFactory, open_provider
from ise.stages.episode import ExecuteEnv, execute_plan
from ise.stages.execute import run_execute

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("docker_engine")]

ROWS = "tail -n +2 /workspace/sales.csv | wc -l"


@pytest.fixture(scope="module")
def sandboxes() -> Iterator[SandboxFactory]:
    with open_provider(load_config([]).sandbox, run_id="test-verdicts") as factory:
        yield factory


def run(plan: Plan, agent: Responder, user: Responder, factory: SandboxFactory) -> Trace:
    env = ExecuteEnv(
        config=load_config(["llm.kind=scripted"]),
        agent_llm=ScriptedLLM(responder=agent),
        user_llm=ScriptedLLM(responder=user),
        sandbox_factory=factory,
    )
    trace = execute_plan(plan, env)
    Trace.model_validate_json(trace.model_dump_json())
    return trace


def question_plan(plan_id: str = "question-1") -> Plan:
    """How many rows does sales.csv have? The truth is computed from the final state; a second, literal check."""
    checks = [
        AnswerCheck(kind="answer", id="rows", description="the number of rows", match="number", command=ROWS),
        AnswerCheck(kind="answer", id="says", description="names the file", match="contains", expected="sales.csv"),
    ]
    milestone = Milestone(id="m1", ask="How many rows does sales.csv have?", checks=["rows", "says"])
    return make_plan(plan_id, checks=list(checks), milestones=[milestone], max_user_turns=2)


def test_an_answer_check_passes_on_the_right_answer_and_the_probe_shows_it(sandboxes: SandboxFactory) -> None:
    agent = scripted_turns({1: [bash("tail -n +2 sales.csv | wc -l"), {"content": "sales.csv has **3** rows."}]})
    trace = run(question_plan(), agent, simple_user(done_after=1), sandboxes)

    assert trace.outcome.passed, trace.outcome.checks
    rows = trace.outcome.checks[0]
    assert (rows.kind, rows.answer, rows.expected, rows.passed) == ("answer", "sales.csv has **3** rows.", "3", True)
    probe = trace.probes[0].results[0]
    assert probe.kind == "answer"
    assert probe.passed


def test_a_wrong_answer_fails_and_the_user_simulator_is_told(sandboxes: SandboxFactory) -> None:
    requests: list[str] = []
    user = simple_user(done_after=2)

    def watching(messages: Sequence[Message], tools: Sequence[ToolSpec], schema: dict[str, Any] | None) -> Any:
        requests.append(messages[-1].content or "")
        return user(messages, tools, schema)

    agent = scripted_turns({1: [{"content": "sales.csv has 4 rows."}], 2: [{"content": "Sorry: sales.csv, 4 rows."}]})
    trace = run(question_plan(), agent, watching, sandboxes)

    assert not trace.outcome.passed
    rows = trace.outcome.checks[0]
    assert rows.reason == "4 is not 3 (tolerance 0)"
    assert "- NOT OK: the number of rows (the agent's answer)" in requests[0]  # turn 1 needs no simulator call
    assert "- ok: names the file (the agent's answer)" in requests[0]


def test_the_answer_of_the_milestones_turn_counts_not_a_later_pleasantry(sandboxes: SandboxFactory) -> None:
    """The user asks a second thing after the question; the agent's last words are about that, yet the answer
    check still sees the answer given while its milestone was current."""
    checks = [
        AnswerCheck(kind="answer", id="rows", description="the number of rows", match="number", command=ROWS),
        ShellCheck(id="note", description="note.txt exists", command="test -f /workspace/note.txt"),
    ]
    milestones = [
        Milestone(id="m1", ask="How many rows does sales.csv have?", checks=["rows"]),
        Milestone(id="m2", ask="Write note.txt.", checks=["note"]),
    ]
    plan = make_plan("question-2", checks=checks, milestones=milestones, max_user_turns=3)
    agent = scripted_turns({1: [{"content": "3"}], 2: [bash("touch note.txt"), {"content": "Done, it is written."}]})
    trace = run(plan, agent, simple_user(done_after=2), sandboxes)

    assert trace.outcome.passed, trace.outcome.checks
    assert trace.outcome.checks[0].answer == "3"


def test_an_empty_answer_is_asked_again_then_the_checks_decide(sandboxes: SandboxFactory) -> None:
    checks = [ShellCheck(id="count", description="count.txt holds 3", command="grep -qx 3 /workspace/count.txt")]
    plan = make_plan("empty-1", checks=checks, milestones=[Milestone(id="m1", ask="count", checks=["count"])])

    def agent(messages: Sequence[Message], tools: Sequence[ToolSpec], schema: dict[str, Any] | None) -> Any:
        worked = any(m.role == "tool" for m in messages)
        return {"content": ""} if worked else bash("echo 3 > count.txt")  # then empty, re-asked or not

    trace = run(plan, agent, simple_user(done_after=1), sandboxes)

    assert trace.termination != TerminationReason.MODEL_ERROR
    assert [e.kind for e in trace.model_errors] == ["empty"] * 3
    assert trace.outcome.passed


def failing_setup(plan_id: str) -> Plan:
    plan = make_plan(plan_id)
    noise = "\n".join(f"echo 'noise line {i}' >&2" for i in range(60))
    plan.fixtures.setup_script = f"echo 'root cause: the users table is missing' >&2\n{noise}\nexit 3"
    return plan


def test_a_plan_whose_setup_fails_is_a_setup_error_with_its_first_and_last_lines(sandboxes: SandboxFactory) -> None:
    trace = run(failing_setup("setup-1"), scripted_turns({}), simple_user(), sandboxes)

    assert trace.termination == TerminationReason.SETUP_ERROR
    assert trace.verdict == "setup_error"
    assert trace.errored
    assert "setup_error" in trace.tags
    assert "infra_error" not in trace.tags
    assert trace.infra_error is not None
    assert trace.infra_error.kind == "setup"
    assert "root cause: the users table is missing" in trace.infra_error.message
    assert "noise line 59" in trace.infra_error.message
    assert trace.outcome.checks == []
    assert trace.messages == []


def test_setup_errors_neither_stop_the_stage_nor_rerun_unless_the_plan_changed(
    tmp_path: Path, sandboxes: SandboxFactory
) -> None:
    plans_path, out = tmp_path / "plans.jsonl", tmp_path / "traces.jsonl"
    plans = [failing_setup(f"setup-{i}") for i in range(6)]
    write_atomic(plans_path, plans)
    config = load_config(["llm.kind=scripted", "execute.max_consecutive_infra_errors=2"])
    llms = (ScriptedLLM(responder=scripted_turns({})), ScriptedLLM(responder=simple_user()))
    console = Console(stderr=True, width=200)

    first = run_execute(plans_path, out, config, llms=llms, sandbox_factory=sandboxes, console=console)
    assert first.labels == {"setup_error": 6}  # 6 in a row, with a breaker at 2: not infrastructure

    again = run_execute(plans_path, out, config, llms=llms, sandbox_factory=sandboxes, console=console)
    assert (again.ok, again.skipped) == (0, 6)

    plans[0].fixtures.setup_script = "true"  # the plan was fixed: that one runs again, the others stay
    write_atomic(plans_path, plans)
    fixed = run_execute(plans_path, out, config, llms=llms, sandbox_factory=sandboxes, console=console)
    assert (fixed.ok, fixed.skipped) == (1, 5)

    forced = load_config(["llm.kind=scripted", "execute.retry_setup_errors=true"])
    retried = run_execute(plans_path, out, forced, llms=llms, sandbox_factory=sandboxes, console=console)
    assert (retried.ok, retried.skipped) == (5, 1)
    traces = list(read_records(out, Trace))
    assert sorted(t.id for t in traces) == sorted(p.id for p in plans)  # exactly once each


def test_each_steps_changes_cover_every_root_the_plan_seeds_and_etc_under_admin(sandboxes: SandboxFactory) -> None:
    checks = [ShellCheck(id="gone", description="old data removed", command="test ! -e /srv/app/old.dat")]
    plan = make_plan("admin-changes", checks=checks, milestones=[Milestone(id="m1", ask="clean", checks=["gone"])])
    plan.profile = "admin"
    plan.fixtures.files.append(FileFixture(path="/srv/app/old.dat", content="stale\n"))
    agent = scripted_turns({1: [bash("rm /srv/app/old.dat && echo 'ServerName x' > /etc/app.conf"), {"content": "ok"}]})
    trace = run(plan, agent, simple_user(done_after=1), sandboxes)

    assert trace.env.profile == "admin"
    assert "You work as root" in (trace.messages[0].content or "")
    assert trace.outcome.passed, trace.outcome.checks
    changes = {(c.path, c.change) for c in trace.steps[0].changes}
    assert changes == {("/srv/app/old.dat", "deleted"), ("/etc/app.conf", "created")}
