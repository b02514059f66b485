"""Export throughput: N synthetic trajectories of ~70 messages into every format (goal: 25,000 in <= 60 s on 2 cores).

    .venv/bin/python bench/export_bench.py [--traces 25000] [--turns 6] [--calls 5] [--repeat 1] [--keep DIR]

Runs the export with 1 worker process and with one per core, side by side (median wall and CPU seconds, ratio),
and prints the phases of the last run and the output sizes. Wall time depends on what else the machine runs:
the load average at the start is printed; CPU seconds do not depend on it. The render check and tokenizer are
off: they need the model server and are sampled/optional in real use.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ise.config import ExportConfig
from ise.records import (
    Budgets,
    CheckResult,
    Message,
    ModelUsage,
    Outcome,
    Persona,
    Step,
    TerminationReason,
    Timing,
    ToolCall,
    ToolSpec,
    Trace,
    TraceEnv,
    TraceIntent,
    UserSimReport,
)
from ise.stages.export import export
from ise.stages.export_summary import ExportSummary
from ise.stages.sft_files import available_cores, parquet_schemas

DOMAINS = ["devops", "data", "web", "security", "ml", "databases"]
OUTPUT = "drwxr-xr-x 2 agent agent 4096 Nov 25 08:58 src\n-rw-r--r-- 1 agent agent  912 Nov 25 08:58 app.py\n"
BASH = ToolSpec(
    name="bash",
    description="Run a shell command in the persistent session.",
    parameters={"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]},
)


def synthetic_trace(index: int, turns: int, calls: int) -> Trace:
    """One system prompt, then per user turn: a request, `calls` tool calls with results, and an answer."""
    messages = [Message(role="system", content="You are an OS agent working in /workspace. " * 8)]
    steps = []
    for turn in range(1, turns + 1):
        messages.append(Message(role="user", content=f"Turn {turn}: please check the service logs and fix it. " * 3))
        for call in range(calls):
            call_id = f"c{turn}-{call}"
            command = f"grep -n 'error' /var/log/app/{turn}-{call}.log | tail -n 20"
            result = OUTPUT * (1 + (index + call) % 4)
            messages.append(
                Message(
                    role="assistant",
                    content="Looking at the logs." if call == 0 else None,
                    tool_calls=[ToolCall(id=call_id, name="bash", arguments={"command": command})],
                )
            )
            messages.append(Message(role="tool", tool_call_id=call_id, content=result))
            steps.append(
                Step(
                    index=len(steps),
                    turn=turn,
                    message_index=len(messages) - 2,
                    tool_call_id=call_id,
                    tool="bash",
                    arguments={"command": command},
                    status="ok",
                    result=result,
                    stdout=result,
                    exit_code=0,
                    duration_s=0.05,
                )
            )
        messages.append(Message(role="assistant", content=f"Fixed the problem of turn {turn}; the service is up. " * 2))
    return Trace(
        id=f"bench-{index:06d}",
        intent=TraceIntent(
            domain=DOMAINS[index % len(DOMAINS)],
            complexity=("simple", "medium", "complex")[index % 3],  # type: ignore[arg-type]
            persona=Persona(role="sre", industry="fintech", experience="senior", style="terse"),
            tasks=["logs"],
            tools=["grep"],
            request="Fix the service.",
            expected_turns=turns,
        ),
        messages=messages,
        tools=[BASH],
        steps=steps,
        outcome=Outcome(
            passed=index % 5 != 0,
            checks=[CheckResult(id="up", passed=index % 5 != 0, exit_code=0)],
            agent_claimed_success=True,
            unverified_claim=False,
        ),
        termination=TerminationReason.USER_DONE,
        turns=turns,
        user=UserSimReport(verdict="done", turns=turns),
        usage=[ModelUsage(role="agent", model="bench-model", calls=turns * (calls + 1))],
        timing=Timing(wall_s=60.0, llm_s=50.0, sandbox_s=5.0),
        env=TraceEnv(
            image_id="ise-sandbox:bench",
            sandbox={},
            budgets=Budgets(
                max_user_turns=turns,
                max_agent_steps_per_turn=calls,
                command_timeout_s=30,
                wall_clock_s=600,
                max_tokens=0,
            ),
            config_hash="bench",
            seed=0,
            ise_version="bench",
        ),
    )


def write_input(path: Path, count: int, turns: int, calls: int) -> int:
    """Pydantic-dump a few distinct shapes, then stamp ids into copies: generation is not what we measure."""
    shapes = [synthetic_trace(i, turns, calls).model_dump_json() for i in range(60)]
    with path.open("w", encoding="utf-8") as handle:
        for index in range(count):
            line = shapes[index % len(shapes)].replace(
                f'"id":"bench-{index % len(shapes):06d}"', f'"id":"bench-{index:06d}"', 1
            )
            handle.write(line + "\n")
    return len(json.loads(shapes[0])["messages"])


def _cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


@dataclass
class Run:
    wall: float
    cpu: float
    summary: ExportSummary


def run_once(traces: Path, out: Path, processes: int) -> Run:
    shutil.rmtree(out, ignore_errors=True)
    cfg = ExportConfig(render_samples=0, token_counter="approx")
    cpu_before, started = _cpu_seconds(), time.perf_counter()
    summary = export(traces, out, cfg, processes=processes)
    return Run(time.perf_counter() - started, _cpu_seconds() - cpu_before, summary)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", type=int, default=25_000)
    parser.add_argument("--turns", type=int, default=6)
    parser.add_argument("--calls", type=int, default=5, help="tool calls per user turn")
    parser.add_argument("--repeat", type=int, default=1, help="runs per setting (medians are printed)")
    parser.add_argument("--keep", type=Path, help="keep the input and output under this folder")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="ise-export-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    traces = work / "traces.jsonl"
    started = time.perf_counter()
    messages = write_input(traces, args.traces, args.turns, args.calls)
    size_mb = traces.stat().st_size / 1e6
    made_s = time.perf_counter() - started
    print(f"input: {args.traces} traces x {messages} messages, {size_mb:.0f} MB (made in {made_s:.1f} s)")
    print(f"machine: {available_cores()} cores, load average {os.getloadavg()[0]:.1f} at start")

    parquet_schemas()  # import `datasets` before timing, so neither setting pays for it
    settings = {"1 process": 1, f"{available_cores()} processes": available_cores()}
    runs = {name: [run_once(traces, work / "out", n) for _ in range(args.repeat)] for name, n in settings.items()}
    last = runs[list(settings)[-1]][-1].summary
    print(f"\nphases of the last run ({list(settings)[-1]}), seconds:")
    for phase, seconds in last.timings.items():
        print(f"  {phase:<24}{seconds:>8.2f}")
    print(f"\n{'setting':<14}{'wall s':>9}{'CPU s':>9}{'traces/s':>10}{'vs 1 process':>14}")
    base = statistics.median(r.wall for r in runs["1 process"])
    for name, results in runs.items():
        wall, cpu = statistics.median(r.wall for r in results), statistics.median(r.cpu for r in results)
        print(f"{name:<14}{wall:>9.1f}{cpu:>9.1f}{args.traces / wall:>10,.0f}{base / wall:>13.2f}x")
    rows = sum(last.rows.values())
    print(f"\nrows written: {rows} (filtered {sum(last.filtered.values())}, rejected {last.rejected})")
    for fmt in ExportConfig().formats:
        size = sum(p.stat().st_size for p in (work / "out" / fmt).iterdir()) / 1e6
        print(f"  {fmt:<10}{size:>8.0f} MB")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    best = min(statistics.median(r.wall for r in results) for results in runs.values())
    print(f"peak RSS (main process): {peak_mb:,.0f} MB")
    print(f"goal: {args.traces} traces in <= 60 s: {'met' if best <= 60 else 'NOT met'} ({best:.1f} s)")
    if args.keep is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
