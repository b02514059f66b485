"""Episodes on the real Docker backend, with scripted agent and user simulators (the LLM seam is the only fake)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from execute_support import (
    Responder,
    bash,
    call,
    docker_engine,  # noqa: F401  (a fixture, requested by name)
    is_subagent,
    make_plan,
    results_this_turn,
    scripted_turns,
    simple_user,
    user_turn,
)

from ise.config import Config, load_config
from ise.llm.scripted import ScriptedLLM
from ise.records import Message, Milestone, Perturbation, Plan, ShellCheck, TerminationReason, ToolSpec, Trace
from ise.recovery import flatten
from ise.sandbox import lifecycle
from ise.sandbox.docker import open_sandbox
from ise.sandbox.engine import docker_client
from ise.sandbox.provider import SandboxFactory
from ise.stages.episode import ExecuteEnv, execute_plan
from ise.stages.execute import open_sandboxes
from ise.stages.sft_rows import openai_messages, openai_tools, validate_conversation

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("docker_engine")]


@pytest.fixture(scope="module")
def sandboxes() -> Iterator[SandboxFactory]:
    with open_sandboxes(load_config([])) as factory:
        yield factory


def run(
    plan: Plan, agent: Responder, user: Responder, factory: SandboxFactory, *overrides: str
) -> tuple[Trace, Config]:
    config = load_config(["llm.kind=scripted", *overrides])
    env = ExecuteEnv(
        config=config,
        agent_llm=ScriptedLLM(responder=agent),
        user_llm=ScriptedLLM(responder=user),
        sandbox_factory=factory,
    )
    trace = execute_plan(plan, env)
    Trace.model_validate_json(trace.model_dump_json())  # what is written reads back
    return trace, config


def assert_consistent(trace: Trace) -> None:
    """Every tool call has exactly one Step and one tool message carrying the Step's result."""
    calls = {c.id: c for m in trace.messages for c in m.tool_calls}
    results = {m.tool_call_id: m.content for m in trace.messages if m.role == "tool"}
    assert set(calls) == set(results) == {s.tool_call_id for s in trace.steps}
    for step in trace.steps:
        assert results[step.tool_call_id] == step.result
        assert trace.messages[step.message_index].tool_calls[0].id == step.tool_call_id or any(
            c.id == step.tool_call_id for c in trace.messages[step.message_index].tool_calls
        )
    indices = [s.index for s in flatten(trace.steps)]
    assert indices == list(range(len(indices)))


def test_multi_turn_episode_with_recovery_perturbations_and_delegation(sandboxes: SandboxFactory) -> None:
    plan = make_plan(
        perturbations=[
            Perturbation(
                id="lock-count",
                description="someone appends junk to count.txt as soon as it exists",
                script="echo junk >> /workspace/count.txt",
                when="test -f /workspace/count.txt",
            ),
            Perturbation(
                id="drop-note",
                description="a note appears when the user asks for the report",
                script="echo 'from ops' > /workspace/NOTE",
                at_user_turn=2,
            ),
        ],
        complexity="complex",  # the delegate tool is offered for complex plans only (execute.delegate_for)
    )
    agent = scripted_turns(
        {
            1: [
                bash("wc -l < sales.cvs > count.txt"),  # typo: fails
                bash("wc -l < sales.csv > count.txt"),  # recovery (4: header included); the perturbation fires
                call("read_file", path="count.txt"),
                call("write_file", path="count.txt", content="3\n"),
                {"content": "Done: count.txt holds 3 (the header is not counted)."},
            ],
            2: [
                call("delegate", task="Write /workspace/report.txt containing exactly: report ready"),
                {"content": "report.txt is written; it says 'report ready'."},
            ],
        },
        sub=[call("write_file", path="/workspace/report.txt", content="report ready\n"), {"content": "Wrote it."}],
    )
    trace, _ = run(plan, agent, simple_user(), sandboxes)

    assert trace.termination == TerminationReason.USER_DONE
    assert trace.turns == 2
    assert trace.user.verdict == "done"
    assert trace.user.milestones_reached == 2
    assert trace.outcome.passed
    assert [c.passed for c in trace.outcome.checks] == [True, True]
    assert_consistent(trace)
    assert validate_conversation(openai_messages(trace.messages), openai_tools(trace.tools)) == []

    first, second = trace.steps[0], trace.steps[1]
    assert first.status == "failed"
    assert first.exit_code != 0
    assert "sales.cvs" in first.stderr
    assert second.status == "ok"
    assert second.exit_code == 0
    assert second.cwd == "/workspace"
    assert [c.path for c in second.changes] == ["/workspace/count.txt"]
    assert trace.failures[0].step == first.index
    assert trace.failures[0].recovered_by == second.index
    assert trace.failures[0].evidence == "same_target"
    assert trace.recoveries >= 1
    assert "recovered" in trace.tags

    by_id = {e.id: e for e in trace.events}
    assert by_id["lock-count"].trigger == "condition"
    assert by_id["lock-count"].after_step == second.index
    assert second.perturbations == ["lock-count"]
    assert "junk" in trace.steps[2].result  # the agent really saw the perturbed file
    note = by_id["drop-note"]
    assert note.trigger == "user_turn"
    assert note.turn == 2
    assert trace.messages[note.message_index - 1].role == "user"  # right after the second user turn was sent

    delegate = next(s for s in trace.steps if s.tool == "delegate")
    assert delegate.status == "ok"
    assert delegate.result == "Wrote it."
    assert [s.tool for s in delegate.sub_steps] == ["write_file"]
    assert delegate.sub_steps[0].index == delegate.index + 1
    assert delegate.sub_steps[0].changes[0].path == "/workspace/report.txt"
    assert [m.role for m in delegate.sub_messages] == ["system", "user", "assistant", "tool", "assistant"]
    assert "delegated" in trace.tags
    assert "delegated_whole_request" not in trace.tags  # it worked on turn 1 itself, and delegated in turn 2
    assert "perturbed" in trace.tags

    assert [p.milestone for p in trace.probes] == ["m1", "m2"]
    assert all(r.passed for p in trace.probes for r in p.results)
    assert trace.env.image_id.startswith("sha256:")
    assert trace.env.sandbox["network"] == "none"
    assert trace.timing.sandbox_s > 0
    assert trace.timing.wall_s >= trace.timing.sandbox_s
    assert {u.role for u in trace.usage} == {"agent", "user"}


def test_failed_checks_and_an_unverified_claim(sandboxes: SandboxFactory) -> None:
    agent = scripted_turns({1: [bash("ls"), {"content": "All done, count.txt is in place."}]})
    trace, _ = run(make_plan(max_user_turns=1), agent, simple_user(done_after=0), sandboxes)

    assert not trace.outcome.passed
    assert [(c.id, c.passed) for c in trace.outcome.checks] == [("count", False), ("report", False)]
    assert trace.outcome.agent_claimed_success
    assert trace.outcome.unverified_claim
    assert {"checks_failed", "unverified_claim"} <= set(trace.tags)
    assert trace.probes[0].results[0].passed is False
    assert any(f.kind == "probe" and f.check == "count" and f.recovered_by is None for f in trace.failures)
    assert trace.infra_error is None


def test_command_timeout_is_recorded_and_the_episode_goes_on(sandboxes: SandboxFactory) -> None:
    agent = scripted_turns({1: [bash("sleep 30"), bash("echo 3 > count.txt"), {"content": "count.txt written."}]})
    plan = make_plan(command_timeout_s=1.5, max_user_turns=1)
    trace, _ = run(plan, agent, simple_user(done_after=1), sandboxes)

    slow = trace.steps[0]
    assert slow.timed_out
    assert slow.status == "failed"
    assert slow.exit_code in (124, 137)
    assert slow.duration_s < 10
    assert "timed out" in slow.result
    assert trace.steps[1].status == "ok"
    assert "timed_out" in trace.tags
    assert trace.termination == TerminationReason.USER_DONE


def test_container_killed_mid_episode_is_an_infra_error(sandboxes: SandboxFactory) -> None:
    killed = threading.Event()

    def agent(messages: Sequence[Message], tools: Sequence[ToolSpec], schema: dict[str, Any] | None) -> dict[str, Any]:
        if not results_this_turn(messages):
            return bash("echo 3 > count.txt")
        if not killed.is_set():  # from outside, as an OOM killer or an operator would
            api = docker_client().api
            for container in lifecycle.ours(api):
                if container["State"] == "running" and "killme" in container["Names"][0]:
                    api.kill(container["Id"])
            killed.set()
        return bash("cat count.txt")

    config = load_config([])
    trace, _ = run(
        make_plan(),
        agent,
        simple_user(),
        lambda profile: open_sandbox(config.sandbox.for_profile(profile), run_id="killme"),
    )

    assert killed.is_set()
    assert trace.termination == TerminationReason.INFRA_ERROR
    assert "infra_error" in trace.tags
    assert trace.infra_error is not None
    assert trace.infra_error.kind == "sandbox"
    assert trace.infra_error.role == "sandbox"
    # not the agent's failure: no checks verdict, no model errors, not labelled as failed checks
    assert trace.outcome.checks == []
    assert not trace.outcome.unverified_claim
    assert "checks_failed" not in trace.tags
    assert trace.model_errors == []
    deadline = time.monotonic() + 20  # the engine removes a killed auto-remove container asynchronously
    while lifecycle.ours(docker_client().api, run_id="killme") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not lifecycle.ours(docker_client().api, run_id="killme")


def test_role_drift_is_regenerated_and_counted(sandboxes: SandboxFactory) -> None:
    agent = scripted_turns(
        {
            1: [bash("echo 3 > count.txt"), {"content": "Done."}],
            2: [bash("echo report ready > report.txt"), {"content": "Done."}],
        }
    )
    trace, _ = run(make_plan(), agent, simple_user(drift_on_turn=2), sandboxes)

    assert trace.user.drift_detected == 1
    assert trace.user.drift_reasons == ["offers help"]
    assert "role_drift" in trace.tags
    assert trace.termination == TerminationReason.USER_DONE
    said = [m.content or "" for m in trace.messages if m.role == "user"]
    assert not any("happy to help" in text or "```" in text for text in said)
    assert said[1] == "good. now write report.txt that says 'report ready'"


def test_every_draft_drifting_falls_back_to_scripted_words(sandboxes: SandboxFactory) -> None:
    def drifting_user(
        messages: Sequence[Message], tools: Sequence[ToolSpec], schema: dict[str, Any] | None
    ) -> dict[str, Any]:
        return {"content": "Certainly! Here's how you can do it: run `wc -l`."}

    agent = scripted_turns({1: [{"content": "What should I do?"}]})
    trace, config = run(make_plan(max_user_turns=2), agent, drifting_user, sandboxes)

    drafts = config.execute.user_regenerations + 1
    ask = make_plan().user.milestones[0].ask
    # turn 1 is the plan's ask; turn 2 asks again for the milestone still open; the closing call after the last
    # turn drifts too and falls back to a remark that is not sent: the budget ends the episode
    assert [m.content for m in trace.messages if m.role == "user"] == [ask, f"That is still not done. {ask}"]
    assert trace.user.fallbacks == 2
    assert trace.user.drift_detected == 2 * drafts
    assert trace.user.drift_reasons == ["answers like an assistant"] * (2 * drafts)
    assert trace.termination == TerminationReason.MAX_TURNS


def test_model_errors_are_data_and_malformed_replies_are_retried(sandboxes: SandboxFactory) -> None:
    replies: list[dict[str, Any]] = [
        {"error": "malformed"},
        call("shell", command="ls"),  # unknown tool
        call("bash", cmd="ls"),  # bad arguments
        call("read_file", path="missing.txt"),  # file tool error
        bash("echo 3 > count.txt"),
        {"content": "count.txt has 3."},
    ]
    lock = threading.Lock()

    def agent(messages: Sequence[Message], tools: Sequence[ToolSpec], schema: dict[str, Any] | None) -> dict[str, Any]:
        if user_turn(messages) > 1 or is_subagent(messages):
            return {"content": "Done."}
        with lock:
            return replies.pop(0)

    trace, _ = run(make_plan(max_user_turns=1), agent, simple_user(done_after=1), sandboxes)

    kinds = [e.kind for e in trace.model_errors]
    assert kinds == ["malformed", "unknown_tool", "bad_arguments", "file_tool"]
    assert [s.status for s in trace.steps] == ["error", "error", "error", "ok"]
    assert trace.steps[0].result.startswith("error: unknown tool 'shell'")
    assert "missing required argument(s): command" in trace.steps[1].result
    assert trace.steps[2].error is not None
    assert "missing.txt" in trace.steps[2].error
    # the retry hint is not part of the conversation; the tool errors are
    assert not any("could not be used" in (m.content or "") for m in trace.messages)
    problems = validate_conversation(openai_messages(trace.messages), openai_tools(trace.tools))
    assert problems == ["message 2 (assistant): call 'call_2_0' names unknown tool 'shell'"]  # export filters it
    fixed = {f.step: (f.recovered_by, f.evidence) for f in trace.failures if f.kind == "step"}
    assert fixed[1] == (3, "tool_fixed")  # bad bash arguments, then a good bash call
    assert "model_error" in trace.tags
    assert trace.infra_error is None


@pytest.mark.parametrize(
    ("override", "agent_turn", "reason"),
    [
        ("execute.max_agent_steps_per_turn=2", [bash("true")], TerminationReason.MAX_STEPS),
        ("execute.max_tokens=40", [bash("echo " + "x" * 400)], TerminationReason.TOKEN_BUDGET),
        ("execute.wall_clock_s=1", [bash("sleep 1.2")], TerminationReason.WALL_CLOCK),
    ],
)
def test_budgets_end_the_episode_with_a_reason(
    sandboxes: SandboxFactory, override: str, agent_turn: list[dict[str, Any]], reason: TerminationReason
) -> None:
    trace, _ = run(make_plan(), scripted_turns({1: agent_turn}), simple_user(), sandboxes, override)

    assert trace.termination == reason
    assert trace.outcome.checks  # the checks still ran: a budget ending is the agent's outcome, not infra
    assert "infra_error" not in trace.tags


def test_user_gives_up(sandboxes: SandboxFactory) -> None:
    def quitter(
        messages: Sequence[Message], tools: Sequence[ToolSpec], schema: dict[str, Any] | None
    ) -> dict[str, Any]:
        return {"content": "This is going nowhere. [[GIVE_UP]]"}

    trace, _ = run(make_plan(), scripted_turns({1: [bash("false"), {"content": "Done!"}]}), quitter, sandboxes)

    assert trace.termination == TerminationReason.USER_GAVE_UP
    assert trace.user.verdict == "give_up"
    assert trace.user.final_message == "This is going nowhere."
    assert trace.messages[-1].role == "assistant"  # the verdict is not part of the conversation
    assert trace.outcome.unverified_claim  # "Done!" over a failed command


def test_checks_with_expected_output_and_exit_codes(sandboxes: SandboxFactory) -> None:
    checks = [
        ShellCheck(id="absent", description="no tmp file left", command="test -e /workspace/tmp.txt", expect_exit=1),
        ShellCheck(id="count", description="count.txt holds 3", command="cat /workspace/count.txt", expect_stdout="3"),
    ]
    plan = make_plan(checks=checks, milestones=[Milestone(id="m1", ask="count rows", checks=["absent", "count"])])
    agent = scripted_turns({1: [bash("echo 3 > count.txt && touch tmp.txt && rm tmp.txt"), {"content": "Done."}]})
    trace, _ = run(plan, agent, simple_user(done_after=1), sandboxes)
    assert trace.outcome.passed
    assert [c.exit_code for c in trace.outcome.checks] == [1, 0]


def test_the_user_simulator_sees_what_really_ran_not_just_the_claim(sandboxes: SandboxFactory) -> None:
    requests: list[str] = []
    user = simple_user()

    def watching_user(
        messages: Sequence[Message], tools: Sequence[ToolSpec], schema: dict[str, Any] | None
    ) -> dict[str, Any]:
        requests.append(messages[-1].content or "")
        return user(messages, tools, schema)

    agent = scripted_turns({1: [bash("wc -l < sales.cvs > count.txt"), {"content": "Done, count.txt is ready."}]})
    run(make_plan(max_user_turns=1), agent, watching_user, sandboxes)

    assert len(requests) == 1  # turn 1 is the plan's own ask: the simulator is first called after the agent's turn
    after_turn_1 = requests[0]
    assert "AGENT: Done, count.txt is ready." in after_turn_1
    assert (
        "wc -l < sales.cvs > count.txt` -> exit 1 (bash: line 1: sales.cvs: No such file or directory)" in after_turn_1
    )
    assert "- NOT OK: count.txt holds 3" in after_turn_1
    assert "You have no messages left" in after_turn_1  # the budget is spent: only a verdict is asked for
