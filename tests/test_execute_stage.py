"""The execute stage as a whole: CLI input errors, resume after kill -9, Ctrl-C, fault injection, infra retries.

The agent and user simulator are stateless responders behind a fake OpenAI-compatible server on 127.0.0.1, so
the real OpenAI client (retries, error classification) and a real `ise execute` process are exercised.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from execute_support import (
    FakeOpenAI,
    bash,
    call,
    docker_engine,  # noqa: F401  (a fixture, requested by name)
    make_plan,
    scripted_turns,
    simple_user,
)

from ise.config import load_config
from ise.errors import InputError
from ise.jsonl import read_records, write_atomic
from ise.records import TerminationReason, Trace
from ise.runner import StageAborted, errors_path
from ise.sandbox import lifecycle
from ise.sandbox.engine import docker_client
from ise.stages.execute import run_execute

ISE = str(Path(sys.executable).with_name("ise"))

SLOW_AGENT = scripted_turns(
    {
        1: [bash("sleep 0.7; echo 3 > count.txt"), {"content": "count.txt holds 3."}],
        2: [bash("sleep 0.7; echo report ready > report.txt"), {"content": "report.txt is written."}],
    }
)


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(SLOW_AGENT, simple_user()).running() as server:
        yield server


def write_plans(path: Path, count: int, prefix: str = "plan") -> list[str]:
    plans = [make_plan(f"{prefix}-{i}") for i in range(count)]
    write_atomic(path, plans)
    return [p.id for p in plans]


def llm_overrides(base_url: str, *, retries: int = 0) -> list[str]:
    return [
        "llm.kind=openai",
        f"llm.base_url={base_url}",
        f"llm.max_retries={retries}",
        "llm.retry_backoff_s=0.05",
        "llm.timeout_s=1",
    ]


def cli(*args: str) -> list[str]:
    return [ISE, "execute", *args]


def containers_of(pid: int) -> list[str]:
    """ise sandbox containers created by process `pid` (running or not)."""
    owner = lifecycle.owner_label(pid)
    api = docker_client().api
    return [c["Id"] for c in lifecycle.ours(api) if c["Labels"].get(lifecycle.LABEL_OWNER, "").startswith(owner)]


def wait_for(condition: object, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def trace_ids(path: Path) -> list[str]:
    """Ids of the whole lines (a torn last line from kill -9 is not a trace; the next run repairs it)."""
    ids = []
    for line in path.read_text().splitlines():
        try:
            ids.append(json.loads(line)["id"])
        except json.JSONDecodeError:
            continue
    return ids


def test_a_malformed_plans_line_is_one_clear_error_and_nothing_is_written(tmp_path: Path) -> None:
    plans = tmp_path / "plans.jsonl"
    good = make_plan("ok-1").model_dump_json()
    bad = json.loads(good) | {"budgets": {"max_user_turns": "many"}}
    plans.write_text(good + "\n" + json.dumps(bad) + "\n")
    out = tmp_path / "traces.jsonl"

    done = subprocess.run(cli("-i", str(plans), "-o", str(out)), capture_output=True, text=True, timeout=60)

    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1
    assert f"{plans}:2" in lines[0]
    assert "budgets.max_user_turns" in lines[0]
    assert not out.exists()
    assert not errors_path(out).exists()
    with pytest.raises(InputError, match=r"plans\.jsonl:2"):
        run_execute(plans, out, load_config([]))


@pytest.mark.docker
@pytest.mark.usefixtures("docker_engine")
def test_kill_9_then_rerun_loses_nothing_duplicates_nothing_and_leaks_no_container(
    tmp_path: Path, fake: FakeOpenAI
) -> None:
    plans, out = tmp_path / "plans.jsonl", tmp_path / "traces.jsonl"
    ids = write_plans(plans, 6)
    args = cli("-i", str(plans), "-o", str(out), "--workers", "2")
    for override in llm_overrides(fake.base_url):
        args += ["-c", override]

    first = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    owner = lifecycle.owner_label(first.pid)
    # kill it mid-flight: some traces written, episodes running in live containers
    wait_for(lambda: out.exists() and out.read_text().count("\n") >= 1 and containers_of(first.pid), 120, "progress")
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(timeout=30)
    written_before = trace_ids(out)
    assert 1 <= len(written_before) < len(ids)
    api = docker_client().api
    leaked = [c for c in lifecycle.ours(api) if c["Labels"].get(lifecycle.LABEL_OWNER, "").startswith(owner)]
    assert leaked  # kill -9 skipped every clean-up; the next run must reap these

    second = subprocess.run(args, capture_output=True, text=True, timeout=300)

    assert second.returncode == 0, second.stderr
    final = trace_ids(out)
    assert sorted(final) == sorted(ids)  # nothing lost, nothing twice
    assert final[: len(written_before)] == written_before  # finished ones were not rerun
    traces = list(read_records(out, Trace))
    assert all(t.termination == TerminationReason.USER_DONE and t.outcome.passed for t in traces)
    assert not [c for c in lifecycle.ours(api) if c["Labels"].get(lifecycle.LABEL_OWNER, "").startswith(owner)]
    assert all(not lifecycle.owner_gone(c["Labels"].get(lifecycle.LABEL_OWNER, "")) for c in lifecycle.ours(api))


@pytest.mark.docker
@pytest.mark.usefixtures("docker_engine")
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_an_interrupt_stops_cleanly_writes_only_whole_traces_and_removes_containers(
    tmp_path: Path, fake: FakeOpenAI, signum: int
) -> None:
    plans, out = tmp_path / "plans.jsonl", tmp_path / "traces.jsonl"
    ids = write_plans(plans, 6)
    args = cli("-i", str(plans), "-o", str(out), "--workers", "3")
    for override in llm_overrides(fake.base_url):
        args += ["-c", override]

    run = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: len(containers_of(run.pid)) >= 2, 120, "episodes in flight")
    started = time.monotonic()
    run.send_signal(signum)
    _, stderr = run.communicate(timeout=60)

    assert run.returncode != 0
    assert time.monotonic() - started < 20  # no waiting for every episode to finish
    assert "interrupted" in stderr
    assert not containers_of(run.pid)
    written = list(read_records(out, Trace)) if out.exists() else []  # every line is a whole, valid trace
    assert all(t.termination != TerminationReason.INFRA_ERROR for t in written)  # removal is not an infra error
    assert len(written) < len(ids)

    again = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert sorted(trace_ids(out)) == sorted(ids)


@pytest.mark.docker
@pytest.mark.usefixtures("docker_engine")
def test_with_20_percent_of_llm_calls_failing_every_trajectory_completes_or_is_tagged_infra(tmp_path: Path) -> None:
    plans, out = tmp_path / "plans.jsonl", tmp_path / "traces.jsonl"
    ids = write_plans(plans, 10)
    agent = scripted_turns(
        {
            1: [bash("echo 3 > count.txt"), {"content": "count.txt holds 3."}],
            2: [bash("echo report ready > report.txt"), {"content": "report.txt is written."}],
        }
    )
    fake = FakeOpenAI(agent, simple_user(), fault_rate=0.2, seed=7, hang_s=1.5)
    with fake.running():
        # one retry: most faults are absorbed by the client, some survive it and must end as infra errors
        config = load_config([*llm_overrides(fake.base_url, retries=1), "execute.max_consecutive_infra_errors=50"])
        stats = run_execute(plans, out, config, workers=1)

    traces = list(read_records(out, Trace))
    assert sorted(t.id for t in traces) == sorted(ids)
    assert stats.errors == 0
    assert not errors_path(out).exists() or not errors_path(out).read_text().strip()
    assert all(fake.faults[kind] > 0 for kind in FakeOpenAI.FAULTS), fake.faults
    infra = [t for t in traces if t.termination == TerminationReason.INFRA_ERROR]
    completed = [t for t in traces if t.termination != TerminationReason.INFRA_ERROR]
    assert infra
    assert completed
    for trace in infra:
        assert "infra_error" in trace.tags
        assert trace.infra_error is not None
        assert trace.infra_error.kind in ("rate_limit", "server", "timeout", "connection")
        assert "checks_failed" not in trace.tags
    for trace in completed:  # ran to an ending of the agent's own: judged by the checks
        assert trace.infra_error is None
        assert len(trace.outcome.checks) == 2
        assert trace.outcome.passed == (trace.termination == TerminationReason.USER_DONE)
    # a tool call with unreadable arguments is the model's error: re-asked, recorded, never infra
    malformed = [e for t in traces for e in t.model_errors if e.kind == "malformed"]
    assert malformed
    assert stats.labels["infra_error"] == len(infra)
    assert stats.labels["passed"] + stats.labels["failed_checks"] == len(completed)


@pytest.mark.docker
@pytest.mark.usefixtures("docker_engine")
def test_an_endpoint_down_stops_the_stage_and_the_rerun_retries_those_trajectories(tmp_path: Path) -> None:
    plans, out = tmp_path / "plans.jsonl", tmp_path / "traces.jsonl"
    ids = write_plans(plans, 4)
    down = FakeOpenAI(SLOW_AGENT, simple_user())
    down.close()  # connection refused
    config = load_config([*llm_overrides(down.base_url), "execute.max_consecutive_infra_errors=2"])

    with pytest.raises(StageAborted, match="2 trajectories in a row"):
        run_execute(plans, out, config, workers=1)
    first = list(read_records(out, Trace))
    assert [t.termination for t in first] == [TerminationReason.INFRA_ERROR] * 2
    assert first[0].infra_error is not None
    assert first[0].infra_error.kind == "connection"
    assert first[0].infra_error.role == "agent"  # turn 1 is the plan's own ask: the agent is the first to call

    agent = scripted_turns({1: [bash("echo 3 > count.txt"), {"content": "Done."}], 2: [{"content": "Done."}]})
    with FakeOpenAI(agent, simple_user()).running() as up:
        stats = run_execute(plans, out, load_config(llm_overrides(up.base_url)), workers=2)

    traces = list(read_records(out, Trace))
    assert sorted(t.id for t in traces) == sorted(ids)
    assert all(t.termination != TerminationReason.INFRA_ERROR for t in traces)
    assert stats.skipped == 0  # the infra traces were dropped and rerun, not skipped


@pytest.mark.docker
@pytest.mark.usefixtures("docker_engine")
@pytest.mark.parametrize("mode", ["native", "constrained"])
def test_both_tool_modes_of_the_real_client_drive_an_episode(tmp_path: Path, mode: str) -> None:
    plans, out = tmp_path / "plans.jsonl", tmp_path / "traces.jsonl"
    write_plans(plans, 1)
    agent = scripted_turns(
        {
            1: [bash("echo 3 > count.txt"), {"content": "count.txt holds 3."}],
            2: [call("write_file", path="report.txt", content="report ready"), {"content": "report.txt is written."}],
        }
    )
    with FakeOpenAI(agent, simple_user()).running() as fake:
        run_execute(plans, out, load_config([*llm_overrides(fake.base_url), f"llm.tool_mode={mode}"]))

    [trace] = list(read_records(out, Trace))
    assert trace.outcome.passed
    assert [s.llm_mode for s in trace.steps] == [mode, mode]
    assert [m.content for m in trace.messages if m.role == "assistant" and not m.tool_calls] == [
        "count.txt holds 3.",
        "report.txt is written.",
    ]
