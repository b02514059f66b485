"""End to end with the embedded model as both agent and user simulator, in a real sandbox: whatever the verdict,
the episode must run to an ending of its own and leave a complete, consistent trace."""

from __future__ import annotations

from pathlib import Path

import pytest
from execute_support import (
    docker_engine,  # noqa: F401  (a fixture, requested by name)
    make_plan,
)

from ise.config import load_config
from ise.jsonl import read_records, write_atomic
from ise.records import Milestone, ShellCheck, TerminationReason, Trace
from ise.recovery import flatten
from ise.stages.execute import run_execute

pytestmark = [pytest.mark.model, pytest.mark.docker, pytest.mark.usefixtures("docker_engine")]


def test_embedded_model_completes_an_episode_with_a_valid_trace(tmp_path: Path) -> None:
    plan = make_plan(
        "model-1",
        milestones=[
            Milestone(id="m1", ask="Create hello.txt in the workspace containing the word hello.", checks=["hello"])
        ],
        checks=[
            ShellCheck(id="hello", description="hello.txt says hello", command="grep -qi hello /workspace/hello.txt")
        ],
        max_user_turns=2,
        max_steps=4,
        wall_clock_s=480,
        max_tokens=12_000,
    )
    plans, out = tmp_path / "plans.jsonl", tmp_path / "traces.jsonl"
    write_atomic(plans, [plan])
    config = load_config(["llm.kind=embedded", "llm.max_tokens=200", "llm.temperature=0.2"])

    stats = run_execute(plans, out, config, workers=1)

    assert stats.ok == 1
    [trace] = list(read_records(out, Trace))
    assert trace.termination != TerminationReason.INFRA_ERROR, trace.infra_error
    assert trace.turns >= 1
    assert [m.role for m in trace.messages[:2]] == ["system", "user"]
    assert any(m.role == "assistant" for m in trace.messages)
    # every call the model made ran in the sandbox and came back as exactly one tool message
    calls = [c.id for m in trace.messages for c in m.tool_calls]
    results = [m.tool_call_id for m in trace.messages if m.role == "tool"]
    assert calls == results == [s.tool_call_id for s in trace.steps]
    assert all(s.llm_mode in ("constrained", "parsed", "native") for s in flatten(trace.steps))
    agent_usage = next(u for u in trace.usage if u.role == "agent")
    assert agent_usage.prompt_tokens > 0
    assert agent_usage.model == "qwen2.5-coder-0.5b"
    assert trace.timing.llm_s > 0
    assert [c.id for c in trace.outcome.checks] == ["hello"]
    assert trace.outcome.passed == trace.outcome.checks[0].passed
