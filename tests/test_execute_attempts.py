"""execute.attempts: several trajectories per plan, each with its own seed and id, stopping at the first verified
success when asked; resumable and exactly-once per attempt, kill -9 included."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from execute_support import (
    SALES,
    bash,
    docker_engine,  # noqa: F401  (a fixture, requested by name)
    make_plan,
    scripted_turns,
    simple_user,
)
from test_execute_stage import ISE, SLOW_AGENT, FakeOpenAI, llm_overrides, trace_ids, wait_for, write_plans

from ise.config import Config, ExportConfig
from ise.jsonl import write_atomic
from ise.llm.scripted import Reply, ScriptedLLM
from ise.records import Message, ToolSpec
from ise.stages.execute import run_execute
from ise.stages.export import export
from ise.trace_file import load_traces
from ise.yields import yield_table

GOOD = scripted_turns(
    {
        1: [bash("wc -l < sales.csv | awk '{print $1-1}' > count.txt"), {"content": "count.txt holds 3."}],
        2: [bash("echo report ready > report.txt"), {"content": "report.txt is written."}],
    }
)


class _FailsFirstEpisode:
    """Does nothing in its first episode, the work in every later one (workers=1: episodes run in order)."""

    def __init__(self) -> None:
        self.episodes = 0

    def __call__(self, messages: Sequence[Message], tools: Sequence[ToolSpec], schema: dict[str, Any] | None) -> Reply:
        if [m.role for m in messages] == ["system", "user"]:
            self.episodes += 1
        return {"content": "Not sure how, sorry."} if self.episodes == 1 else GOOD(messages, tools, schema)


@pytest.mark.docker
@pytest.mark.usefixtures("docker_engine")
@pytest.mark.parametrize(
    ("stop_at_success", "attempts", "expected", "pass_at_1"),
    [(True, 3, ["p", "p.a1"], 0.0), (False, 2, ["p", "p.a1"], 0.5), (False, 3, ["p", "p.a1", "p.a2"], 0.6667)],
    ids=["stop-at-success", "every-attempt", "every-attempt-of-three"],
)
def test_attempt_two_passes_after_attempt_one_failed(
    tmp_path: Path, stop_at_success: bool, attempts: int, expected: list[str], pass_at_1: float
) -> None:
    plans, out = tmp_path / "plans.jsonl", tmp_path / "traces.jsonl"
    write_atomic(plans, [make_plan("p", files=SALES)])
    config = Config(workers=1).model_copy(deep=True)
    config.execute.attempts = attempts
    config.execute.stop_at_success = stop_at_success
    llms = (ScriptedLLM(responder=_FailsFirstEpisode()), ScriptedLLM(responder=simple_user()))

    run_execute(plans, out, config, llms=llms)

    traces = load_traces(out)
    assert [t.id for t in traces] == expected
    assert [t.env.attempt for t in traces] == list(range(len(expected)))
    assert [t.outcome.passed for t in traces] == [False] + [True] * (len(expected) - 1)
    assert {t.plan_id for t in traces} == {"p"}
    assert len({t.env.seed for t in traces}) == len(expected)  # distinct seeds
    overall = yield_table(traces)["overall"]
    # stopped: the first attempt alone says pass@1; every attempt run: c of n, as ise eval (1 of 2 -> 0.5)
    assert overall["pass@1"]["value"] == pass_at_1
    assert overall["pass@k"]["value"] == 1.0

    run_execute(plans, out, config, llms=(ScriptedLLM(), ScriptedLLM()))  # nothing left: no call is made
    assert [t.id for t in load_traces(out)] == expected
    summary = export(out, tmp_path / "sft", ExportConfig(formats=["trl"], render_samples=0), processes=1)
    assert sum(summary.rows.values()) == len(expected) - 1  # the verified attempts, and only those


@pytest.mark.docker
@pytest.mark.usefixtures("docker_engine")
def test_kill_9_mid_attempt_then_rerun_writes_every_attempt_exactly_once(tmp_path: Path) -> None:
    plans, out = tmp_path / "plans.jsonl", tmp_path / "traces.jsonl"
    ids = write_plans(plans, 3)
    with FakeOpenAI(SLOW_AGENT, simple_user()).running() as fake:
        args = [ISE, "execute", "-i", str(plans), "-o", str(out), "--workers", "2"]
        for override in [*llm_overrides(fake.base_url), "execute.attempts=2", "execute.stop_at_success=false"]:
            args += ["-c", override]
        first = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        wait_for(lambda: out.exists() and out.read_text().count("\n") >= 1, 120, "a first trace")
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
        before = trace_ids(out)
        assert 1 <= len(before) < 2 * len(ids)
        second = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr
    final = trace_ids(out)
    assert sorted(final) == sorted([*ids, *(f"{i}.a1" for i in ids)])  # every attempt, none twice
    assert final[: len(before)] == before
