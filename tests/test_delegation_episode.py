"""Delegation in real episodes (Docker sandbox, scripted agent and user): the delegate tool and its mention in the
system prompt are offered only for the complexities execute.delegate_for names, in multi-turn and single-turn
episodes alike, and a trajectory that hands the whole request to a sub-agent is tagged so."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from execute_support import (
    Reply,
    Responder,
    bash,
    call,
    docker_engine,  # noqa: F401  (a fixture, requested by name)
    is_subagent,
    make_plan,
    scripted_turns,
    simple_user,
)

from ise.config import load_config
from ise.llm.scripted import ScriptedLLM
from ise.records import Complexity, Message, ToolSpec, Trace
from ise.sandbox.provider import SandboxFactory
from ise.stages.episode import ExecuteEnv, execute_plan
from ise.stages.execute import open_sandboxes

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("docker_engine")]

EVERY_TOOL = ["bash", "read_file", "write_file", "edit_file", "list_dir"]


@pytest.fixture(scope="module")
def sandboxes() -> Iterator[SandboxFactory]:
    with open_sandboxes(load_config([])) as factory:
        yield factory


class Recording:
    """Wraps a responder and keeps the tool names every top-level agent call was offered."""

    def __init__(self, responder: Responder) -> None:
        self.responder = responder
        self.offered: list[list[str]] = []

    def __call__(self, messages: Sequence[Message], tools: Sequence[ToolSpec], schema: dict[str, Any] | None) -> Reply:
        if not is_subagent(messages):
            self.offered.append([t.name for t in tools])
        return self.responder(messages, tools, schema)


def episode(
    factory: SandboxFactory, agent: Responder, complexity: Complexity, *overrides: str, single_turn: bool = False
) -> Trace:
    env = ExecuteEnv(
        config=load_config(["llm.kind=scripted", *overrides]),
        agent_llm=ScriptedLLM(responder=agent),
        user_llm=ScriptedLLM(responder=simple_user()),
        sandbox_factory=factory,
        single_turn=single_turn,
    )
    return execute_plan(make_plan(complexity=complexity, max_user_turns=2), env)


WORKS_ITSELF = scripted_turns(
    {
        1: [bash("echo 3 > count.txt"), {"content": "count.txt holds 3."}],
        2: [call("write_file", path="report.txt", content="report ready\n"), {"content": "report.txt written."}],
    }
)


@pytest.mark.parametrize("single_turn", [False, True], ids=["multi-turn", "single-turn"])
@pytest.mark.parametrize(
    ("complexity", "overrides", "offered"),
    [
        ("complex", (), True),  # the default: execute.delegate_for = [complex]
        ("medium", (), False),
        ("simple", (), False),
        ("complex", ("execute.delegate_for=[]",), False),
        ("simple", ("execute.delegate_for=[simple, complex]",), True),
    ],
)
def test_delegate_is_offered_only_for_the_configured_complexities(
    sandboxes: SandboxFactory, complexity: Complexity, overrides: tuple[str, ...], offered: bool, single_turn: bool
) -> None:
    agent = Recording(WORKS_ITSELF)
    trace = episode(sandboxes, agent, complexity, *overrides, single_turn=single_turn)

    expected = [*EVERY_TOOL, "delegate"] if offered else EVERY_TOOL
    assert [t.name for t in trace.tools] == expected
    assert agent.offered
    assert all(names == expected for names in agent.offered)  # what the model really got
    system = trace.messages[0]
    assert system.role == "system"
    assert ("delegate" in (system.content or "")) is offered
    assert trace.outcome.passed or single_turn  # single-turn: the request is one message, report.txt never asked


def test_a_delegate_call_where_it_is_not_offered_is_refused_as_an_unknown_tool(sandboxes: SandboxFactory) -> None:
    agent = scripted_turns({1: [call("delegate", task="count the rows"), {"content": "Could not delegate."}]})
    trace = episode(sandboxes, agent, "simple")

    refused = trace.steps[0]
    assert (refused.tool, refused.status) == ("delegate", "error")
    assert "unknown tool 'delegate'" in refused.result
    assert refused.sub_messages == []


def test_handing_the_whole_request_to_a_sub_agent_is_tagged(sandboxes: SandboxFactory) -> None:
    agent = scripted_turns(
        {
            1: [
                call("delegate", task="Write the row count of sales.csv, without its header, to count.txt"),
                {"content": "Done."},
            ]
        },
        sub=[bash("echo 3 > /workspace/count.txt"), {"content": "count.txt holds 3."}],
    )
    trace = episode(sandboxes, agent, "complex")

    assert [s.tool for s in trace.steps if s.turn == 1] == ["delegate"]
    assert [s.tool for s in trace.steps[0].sub_steps] == ["bash"]
    assert {"delegated", "delegated_whole_request"} <= set(trace.tags)


def test_working_first_and_delegating_after_is_not_whole_delegation(sandboxes: SandboxFactory) -> None:
    agent = scripted_turns(
        {1: [bash("ls"), call("delegate", task="Write 3 to /workspace/count.txt"), {"content": "Done."}]},
        sub=[bash("echo 3 > /workspace/count.txt"), {"content": "count.txt holds 3."}],
    )
    trace = episode(sandboxes, agent, "complex")

    assert [s.tool for s in trace.steps if s.turn == 1] == ["bash", "delegate"]
    assert "delegated" in trace.tags
    assert "delegated_whole_request" not in trace.tags
