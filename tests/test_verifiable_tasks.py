"""The hand-written verifiable tasks (bench/data/verifiable_tasks.jsonl): sound on paper, proven on the real Docker
backend (every check fails on the initial state and passes after the reference solution), and, through whole
episodes, passed by the reference agent and failed by the do-nothing agent (ise/controls.py)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from execute_support import docker_engine  # noqa: F401  (a fixture, requested by name)

from ise.agent import format_exec
from ise.config import Config, SimulateConfig, load_config
from ise.controls import DONE, NON_ANSWER, null_llm, oracle_llm, relay_user_llm, stdout_of
from ise.jsonl import read_records
from ise.plan_static import static_problems
from ise.plan_validation import validate
from ise.prompts import render
from ise.records import AnswerCheck, Message, Milestone, Plan, ShellCheck, TerminationReason, Trace
from ise.sandbox import lifecycle
from ise.sandbox.base import ExecResult
from ise.sandbox.docker_api import shared_api
from ise.sandbox.provider import SandboxFactory, open_provider
from ise.stages.episode import ExecuteEnv, execute_plan
from ise.usersim import VERDICT_TOKENS, drift_reason

DATA = Path(__file__).resolve().parent.parent / "bench" / "data"
PLANS = list(read_records(DATA / "verifiable_tasks.jsonl", Plan, unique_ids=True))
BY_ID = {plan.id: plan for plan in PLANS}
RUN_ID = f"test-verifiable-{uuid.uuid4().hex[:8]}"

EPISODE_TASKS = [
    # the five system administration tasks the brief names
    "admin-group-members",
    "admin-setgid-shared-dir",
    "admin-install-script",
    "admin-stop-service",
    "admin-rotate-log",
    # answer tasks covering every comparator, literal and computed by `command`
    "info-sqlite-top-customer",  # exact, number (literal, tolerance)
    "info-compare-releases",  # one_of, contains
    "info-config-key",  # regex
    "info-log-error-count",  # number (command)
    "info-commit-introduced",  # regex (command), contains, regex
    "info-biggest-data-dir",  # contains (command)
    "info-branch-with-fix",  # one_of (command), then a shell check
    "info-port-owner",  # one_of, number (command) on processes the setup started
]


def _answer_checks(plan: Plan) -> list[AnswerCheck]:
    return [c for c in plan.checks if isinstance(c, AnswerCheck)]


# --- on paper ----------------------------------------------------------------------------------------------------


def test_the_jsonl_is_the_yaml_source_converted() -> None:
    source: Any = yaml.safe_load((DATA / "verifiable_tasks.yaml").read_text(encoding="utf-8"))
    assert [Plan.model_validate(task) for task in source["tasks"]] == PLANS, (
        "bench/data/verifiable_tasks.jsonl is stale: run .venv/bin/python bench/verifiable_bench.py --convert"
    )


def test_forty_tasks_of_both_kinds_cover_every_comparator() -> None:
    info = [p for p in PLANS if p.profile == "user"]
    admin = [p for p in PLANS if p.profile == "admin"]
    assert len(info) >= 20
    assert all(_answer_checks(p) for p in info)
    assert len(admin) >= 20
    assert all(any(isinstance(c, ShellCheck) for c in p.checks) for p in admin)
    assert all(p.id.startswith("info-") for p in info)
    assert all(p.id.startswith("admin-") for p in admin)
    answers = [c for p in PLANS for c in _answer_checks(p)]
    literal = {c.match for c in answers if c.command is None}
    computed = {c.match for c in answers if c.command is not None}
    every = {"exact", "contains", "regex", "number", "one_of"}
    assert literal == every
    assert computed == every


@pytest.mark.parametrize("plan", PLANS, ids=lambda p: p.id)
def test_a_task_is_sound_on_paper(plan: Plan) -> None:
    assert static_problems(plan, SimulateConfig()) == []
    assert len(plan.solution) == len(plan.user.milestones)
    assert plan.budgets.max_user_turns >= len(plan.user.milestones) + 1
    named = [check for m in plan.user.milestones for check in m.checks]
    assert sorted(named) == sorted(c.id for c in plan.checks), "every check belongs to exactly one milestone"
    asks = [m.ask for m in plan.user.milestones]
    assert len(set(asks)) == len(asks)
    assert all("\n" not in ask for ask in asks)
    assert [drift_reason(ask) for ask in asks] == [None] * len(asks), "the relay user's asks must stay in role"


def test_each_task_opens_with_its_own_ask() -> None:
    """The oracle finds its plan by the first ask, so one oracle can serve every plan of a stage run."""
    firsts = [p.user.milestones[0].ask for p in PLANS]
    assert len(set(firsts)) == len(firsts)
    oracle_llm(PLANS)  # would raise on a clash


# --- the control agents and the relay user -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stdout", "stderr", "exit_code", "timed_out"),
    [
        ("28\n", "", 0, False),
        ("", "", 0, False),
        ("two\nlines\n", "a warning\n", 0, False),
        ("", "only errors\n", 1, False),
        ("partial", "", 124, True),
    ],
)
def test_stdout_of_reads_back_what_the_agent_was_shown(
    stdout: str, stderr: str, exit_code: int, timed_out: bool
) -> None:
    result = ExecResult(stdout=stdout, stderr=stderr, exit_code=exit_code, duration_s=0.1, timed_out=timed_out)
    assert stdout_of(format_exec(result, 30)) == stdout.strip()


def _turn_request(plan: Plan, *, current: int, asked: set[int], turn: int) -> list[Message]:
    """What the user simulator is sent, rendered from the real prompt."""
    request = render(
        "user_turn.jinja",
        transcript=f"YOU: {plan.user.milestones[0].ask}\n\nAGENT: hi",
        digest="The agent ran no commands and changed no files.",
        milestones=plan.user.milestones,
        current=current,
        asked=asked,
        turn=turn,
        max_turns=plan.budgets.max_user_turns,
        tokens=VERDICT_TOKENS,
    )
    return [Message(role="system", content="(card)"), Message(role="user", content=request)]


def test_the_relay_user_sends_the_asks_then_declares_done() -> None:
    plan = BY_ID["info-sqlite-top-customer"]
    first, second = (m.ask for m in plan.user.milestones)
    relay = relay_user_llm()

    def says(**state: Any) -> str:
        return relay.chat(_turn_request(plan, **state)).message.content or ""

    # turn 1 is the first ask itself (ise/usersim.py): the relay is first called for turn 2
    assert says(current=0, asked={0}, turn=2) == first  # still waiting: asks again
    assert says(current=1, asked={0}, turn=2) == second
    assert says(current=2, asked={0, 1}, turn=3).endswith("[[DONE]]")
    assert says(current=1, asked={0, 1}, turn=4).endswith("[[DONE]]")  # no messages left


def test_the_oracle_replays_each_milestone_then_answers() -> None:
    plan = BY_ID["admin-install-script"]
    oracle = oracle_llm(PLANS)
    one, two = plan.user.milestones
    conversation = [Message(role="system", content="(agent)"), Message(role="user", content=one.ask)]
    call = oracle.chat(conversation).message.tool_calls[0]
    assert (call.name, call.arguments) == ("bash", {"command": plan.solution[0]})
    conversation += [
        Message(role="assistant", tool_calls=[call]),
        Message(role="tool", tool_call_id=call.id, content="[exit code 0]"),
    ]
    assert oracle.chat(conversation).message.content == DONE  # no answer check: "Done."
    conversation += [Message(role="assistant", content=DONE), Message(role="user", content=two.ask)]
    call = oracle.chat(conversation).message.tool_calls[0]
    assert call.arguments == {"command": plan.solution[1]}
    conversation += [
        Message(role="assistant", tool_calls=[call]),
        Message(role="tool", tool_call_id=call.id, content="errors=4 warnings=2\n[exit code 0]"),
    ]
    assert oracle.chat(conversation).message.content == "errors=4 warnings=2"
    assert null_llm().chat(conversation).message.content == NON_ANSWER


def test_the_oracle_refuses_plans_it_cannot_tell_apart() -> None:
    twin = BY_ID["info-config-key"].model_copy(update={"id": "twin"})
    with pytest.raises(ValueError, match="same ask"):
        oracle_llm([BY_ID["info-config-key"], twin])


# --- on the real Docker backend ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sandboxes(docker_engine: None) -> Iterator[SandboxFactory]:  # noqa: F811  (the fixture imported above)
    with open_provider(load_config([]).sandbox, run_id=RUN_ID) as factory:
        yield factory
    assert lifecycle.ours(shared_api(), run_id=RUN_ID) == []


@pytest.mark.docker
@pytest.mark.parametrize("plan", PLANS, ids=lambda p: p.id)
def test_a_task_is_proven(plan: Plan, sandboxes: SandboxFactory) -> None:
    """Dry run (every check fails on the initial state, answer checks reject "" and "I do not know.") and the
    reference solution run (every check passes afterwards)."""
    result = validate(plan, sandboxes, SimulateConfig())
    assert [str(p) for p in result.problems] == []


def _episode(plan: Plan, agent: Any, factory: SandboxFactory) -> Trace:
    config: Config = load_config(["llm.kind=scripted"])
    env = ExecuteEnv(config=config, agent_llm=agent, user_llm=relay_user_llm(), sandbox_factory=factory)
    trace = execute_plan(plan, env)
    Trace.model_validate_json(trace.model_dump_json())
    return trace


@pytest.mark.docker
@pytest.mark.parametrize("task", EPISODE_TASKS)
def test_the_reference_agent_passes_and_doing_nothing_fails(task: str, sandboxes: SandboxFactory) -> None:
    plan = BY_ID[task]
    milestones: list[Milestone] = plan.user.milestones

    done = _episode(plan, oracle_llm(plan), sandboxes)
    assert done.infra_error is None
    failing = [(c.id, c.reason or c.stderr[-200:]) for c in done.outcome.checks if not c.passed]
    assert done.outcome.passed, failing
    assert done.termination == TerminationReason.USER_DONE
    assert done.user.milestones_reached == len(milestones) == done.turns
    assert [s.arguments["command"] for s in done.steps] == plan.solution
    assert all(s.status == "ok" for s in done.steps)
    assert [p.milestone for p in done.probes] == [m.id for m in milestones]
    assert all(r.passed for p in done.probes for r in p.results)

    nothing = _episode(plan, null_llm(), sandboxes)
    assert nothing.infra_error is None
    assert nothing.steps == []
    assert not nothing.outcome.passed
    assert [c.id for c in nothing.outcome.checks if c.passed] == []
    answers = [c for c in nothing.outcome.checks if c.kind == "answer"]
    assert all(c.answer in ("", NON_ANSWER) for c in answers)
