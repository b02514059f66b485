"""Export throughput: N synthetic trajectories of ~70 messages into every format (goal: 25,000 in <= 60 s on 2 cores).

    .venv/bin/python bench/export_bench.py [--traces 25000] [--turns 6] [--calls 5] [--keep DIR]

Prints the input size, the time of each phase of `export()` (read+validate, count, split, each format, card) and
the total, with rows/s and MB/s. The render check and tokenizer are off: they need the model server and are
sampled/optional in real use (`render_samples` rows; real token counts only with --max-tokens).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import tempfile
import time
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", type=int, default=25_000)
    parser.add_argument("--turns", type=int, default=6)
    parser.add_argument("--calls", type=int, default=5, help="tool calls per user turn")
    parser.add_argument("--processes", type=int, default=None, help="worker processes (default: all cores)")
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

    out = work / "out"
    shutil.rmtree(out, ignore_errors=True)
    cfg = ExportConfig(render_samples=0, token_counter="approx", include_failed=False)
    cpu_before = _cpu_seconds()
    started = time.perf_counter()
    summary = export(traces, out, cfg, processes=args.processes)
    total = time.perf_counter() - started
    cpu = _cpu_seconds() - cpu_before
    rows = sum(summary.rows.values())
    print(f"processes: {args.processes or 'all cores'}; indented phases ran in parallel inside the one above")
    print(f"{'phase':<24}{'seconds':>9}{'share':>8}")
    for phase, seconds in summary.timings.items():
        print(f"{phase:<24}{seconds:>9.2f}{seconds / total:>8.0%}")
    print(f"{'total (wall)':<24}{total:>9.2f}{1:>8.0%}")
    print(f"{'CPU, all processes':<24}{cpu:>9.2f}{cpu / total:>8.0%}")
    print(f"rows written: {rows} (filtered {sum(summary.filtered.values())}, rejected {summary.rejected})")
    print(f"throughput: {args.traces / total:,.0f} traces/s read, {size_mb / total:.0f} MB/s of input")
    for fmt in cfg.formats:
        size = sum(p.stat().st_size for p in (out / fmt).iterdir()) / 1e6
        print(f"  {fmt:<10}{size:>8.0f} MB")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS: {peak_mb:,.0f} MB; goal <= 60 s for 25,000 traces: {'met' if total <= 60 else 'NOT met'}")
    if args.keep is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
