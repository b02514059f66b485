"""Execute-stage throughput: trajectories per hour against a fake LLM with fixed latency, on the real Docker backend.

Each trajectory is a realistic small episode (3 user turns, 3 tool steps per turn, probes, final checks) in its own
fresh hardened container. The LLM answers after a fixed sleep, so the ideal is known exactly: with W workers and
C LLM calls per trajectory, W / (C x latency) trajectories per second, if sandboxes and orchestration were free and
workers overlapped perfectly. The table shows the measured rate as a fraction of that ideal, and of linear scaling
from one worker.

    .venv/bin/python bench/execute_bench.py [--latency-ms 200] [--workers 1,4,16,32] [--waves 3]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ise.config import load_config
from ise.jsonl import read_records, write_atomic
from ise.records import Completion, Message, Profile, ToolCall, ToolSpec, Trace, Usage
from ise.sandbox.base import Sandbox
from ise.sandbox.provider import SandboxFactory
from ise.stages.execute import open_sandboxes, run_execute

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from execute_support import bash, call, make_plan, results_this_turn, sim_turn, user_turn

TURNS = 3
STEPS_PER_TURN = 3
CALLS_PER_TRAJECTORY = TURNS * (STEPS_PER_TURN + 1) + (TURNS + 1)
"""Agent: each step's call plus the answer, per turn. User simulator: one per turn plus the closing verdict."""


class LatencyLLM:
    """A fake at the LLM seam that answers after a fixed delay, concurrently (no lock around the wait)."""

    def __init__(self, latency_s: float, role: str) -> None:
        self.latency_s = latency_s
        self.role = role
        self.model = f"fake-{role}"

    def chat(
        self,
        messages: Sequence[Message],
        *,
        tools: Sequence[ToolSpec] = (),
        response_schema: dict[str, Any] | None = None,
        temperature: float | None = None,
        seed: int | None = None,
    ) -> Completion:
        time.sleep(self.latency_s)
        reply = agent_reply(messages) if self.role == "agent" else user_reply(messages)
        calls = [ToolCall(id=f"call_{len(messages)}", **c) for c in reply.get("tool_calls", [])]
        message = Message(role="assistant", content=reply.get("content"), tool_calls=calls)
        return Completion(message=message, usage=Usage(completion_tokens=20), mode="native" if calls else "text")

    def close(self) -> None:
        pass


def agent_reply(messages: Sequence[Message]) -> dict[str, Any]:
    turn, seen = user_turn(messages), len(results_this_turn(messages))
    steps = [
        bash("cat sales.csv | tail -n +2 | wc -l > count.txt"),
        call("read_file", path="count.txt"),
        call("write_file", path="report.txt", content=f"report ready (turn {turn})\n"),
    ]
    return steps[seen] if seen < STEPS_PER_TURN else {"content": f"Done with turn {turn}: count.txt and report.txt."}


def user_reply(messages: Sequence[Message]) -> dict[str, Any]:
    turn = sim_turn(messages)
    if turn > TURNS:
        return {"content": "thanks [[DONE]]"}
    return {"content": f"please do step {turn} of the report"}


class CpuMeter:
    """CPU seconds spent by ise itself, by the engine's daemons (dockerd, containerd) and inside our containers.

    Containers are measured one by one (their cgroup, read just before removal), so other containers on the
    machine do not count. The daemons serve everyone: on a shared machine their figure includes others' work."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.containers_s = 0.0

    def read(self) -> tuple[float, float, float]:
        own = resource.getrusage(resource.RUSAGE_SELF)
        with self._lock:
            return own.ru_utime + own.ru_stime, _daemons_cpu(), self.containers_s

    def wrap(self, factory: SandboxFactory) -> SandboxFactory:
        @contextmanager
        def measured(profile: Profile) -> Iterator[Sandbox]:
            with factory(profile) as sandbox:
                try:
                    yield sandbox
                finally:
                    used = _container_cpu(getattr(sandbox, "container_id", ""))
                    with self._lock:
                        self.containers_s += used

        return measured


def _daemons_cpu() -> float:
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        name, fields = text[text.index("(") + 1 : text.rindex(")")], text[text.rindex(")") + 2 :].split()
        if name in ("dockerd", "containerd"):  # not the per-container shims: they exit and take their count along
            total += sum(int(f) for f in fields[11:13]) / ticks  # utime stime
    return total


def _container_cpu(container_id: str) -> float:
    for path in (
        Path(f"/sys/fs/cgroup/cpuacct/docker/{container_id}/cpuacct.usage"),  # cgroup v1
        Path(f"/sys/fs/cgroup/system.slice/docker-{container_id}.scope/cpu.stat"),  # v2, systemd driver
        Path(f"/sys/fs/cgroup/docker/{container_id}/cpu.stat"),  # v2, cgroupfs driver
    ):
        try:
            text = path.read_text()
        except OSError:
            continue
        return int(text) / 1e9 if path.name == "cpuacct.usage" else int(text.split()[1]) / 1e6
    return 0.0


def measure(
    workers: int, trajectories: int, latency_s: float, workdir: Path, *, pool: bool
) -> tuple[float, tuple[float, float, float]]:
    """Seconds to run `trajectories` episodes with `workers` workers, and CPU seconds per trajectory by part."""
    settings = ["llm.kind=scripted", f"workers={workers}", "execute.retry_infra_errors=false"]
    config = load_config([*settings, f"sandbox.pool_size={workers if pool else 0}"])
    plans = [
        make_plan(f"bench-{workers}-{i}", max_user_turns=TURNS, max_steps=STEPS_PER_TURN + 1)
        for i in range(trajectories)
    ]
    plans_path, output = workdir / f"plans-{workers}.jsonl", workdir / f"traces-{workers}.jsonl"
    write_atomic(plans_path, plans)
    llms = (LatencyLLM(latency_s, "agent"), LatencyLLM(latency_s, "user"))
    meter = CpuMeter()
    with open_sandboxes(config) as factory:
        before, started = meter.read(), time.monotonic()
        stats = run_execute(plans_path, output, config, llms=llms, sandbox_factory=meter.wrap(factory))
        elapsed, after = time.monotonic() - started, meter.read()
    cpu = (
        (after[0] - before[0]) / trajectories,
        (after[1] - before[1]) / trajectories,
        (after[2] - before[2]) / trajectories,
    )
    traces = list(read_records(output, Trace))
    bad = [t.id for t in traces if not t.outcome.passed or t.termination.value != "user_done"]
    if stats.ok != trajectories or bad:
        raise SystemExit(f"bench episodes did not all pass: ok={stats.ok} errors={stats.errors} failed={bad[:3]}")
    return elapsed, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency-ms", type=float, default=200.0)
    parser.add_argument("--workers", default="1,4,16,32")
    parser.add_argument("--waves", type=int, default=3, help="Trajectories per worker in each run.")
    parser.add_argument("--repeat", type=int, default=1, help="Runs per worker count (the median is shown).")
    parser.add_argument("--pool", action="store_true", help="Keep one warm sandbox per worker (sandbox.pool_size).")
    args = parser.parse_args()
    latency = args.latency_ms / 1000
    load_before = f"{os.getloadavg()[0]:.1f}"  # other work on the machine skews every figure
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="ise-bench-") as tmp:
        for workers in [int(w) for w in args.workers.split(",")]:
            count = max(4, workers * args.waves)
            runs = [measure(workers, count, latency, Path(tmp) / f"r{r}", pool=args.pool) for r in range(args.repeat)]
            seconds = statistics.median(r[0] for r in runs)
            cpu = tuple(statistics.median(r[1][i] for r in runs) for i in range(3))
            rows.append((workers, count, seconds, cpu))
    print_table(rows, latency_ms=args.latency_ms, pool=args.pool, load_before=load_before)


Row = tuple[int, int, float, tuple[float, float, float]]
HEADER = "{:>7} {:>5} {:>8} {:>10} {:>10} {:>9} {:>9} {:>22} {:>9}".format(
    "workers", "traj", "seconds", "traj/hour", "ideal/hour", "of ideal", "of linear", "CPU s/traj", "cpu cap/h"
)


def print_table(rows: list[Row], *, latency_ms: float, pool: bool, load_before: str) -> None:
    cores = os.cpu_count() or 1
    ideal_one = 3600 / (CALLS_PER_TRAJECTORY * latency_ms / 1000)
    base_rate = rows[0][1] / rows[0][2] * 3600 / rows[0][0]
    pooling = "one warm sandbox per worker" if pool else "no sandbox pool"
    print(f"\nexecute throughput: fake LLM {latency_ms:g} ms/call, {CALLS_PER_TRAJECTORY} calls/trajectory, {pooling}")
    print(f"load average before: {load_before}; after: {os.getloadavg()[0]:.1f} ({cores} cores)")
    print(HEADER)
    for workers, count, seconds, (own, engine, inside) in rows:
        rate, ideal, per_traj = count / seconds * 3600, ideal_one * workers, own + engine + inside
        split = f"{per_traj:.2f} ({own:.2f}/{engine:.2f}/{inside:.2f})"
        print(
            f"{workers:>7} {count:>5} {seconds:>8.1f} {rate:>10.0f} {ideal:>10.0f} {rate / ideal:>8.0%} "
            f"{rate / (base_rate * workers):>9.0%} {split:>22} {cores / per_traj * 3600:>9.0f}"
        )
    print("CPU s/traj: ise / engine daemons (dockerd, containerd; they also serve any other containers running) /")
    print("inside our containers. cpu cap/h: the rate at which that cost alone saturates this machine's cores.")


if __name__ == "__main__":
    main()
