"""AgentBench-OS in ise: what imports, and what the reference (oracle) and do-nothing (null) agents score on it,
through `ise eval`'s own run_eval on the real Docker engine; optionally pass@1 of an embedded model on dev.

    .venv/bin/python bench/agentbench_bench.py                      # oracle and null on dev + test
    .venv/bin/python bench/agentbench_bench.py --split dev --workers 2
    .venv/bin/python bench/agentbench_bench.py --model qwen2.5-coder-0.5b   # also the model on dev, single turn
    .venv/bin/python bench/agentbench_bench.py --split dev --no-controls --model qwen2.5-coder-0.5b -c seed=1

Prints, per split: tasks imported and not importable (by reason), each agent's pass rate and seconds per task, and
every task the oracle misses with its check's output (the reason, in the sandbox's words). s/task is the run's
wall time over its tasks (with --workers in parallel). Traces stay in --out.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from ise.config import Config, load_config
from ise.records import Trace
from ise.tasks import TaskSet, load_tasks
from ise.trace_file import read_traces

AGENTS = ("oracle", "null")
MODELS = ("qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b")


def reason_kind(reason: str) -> str:
    """An Unimportable reason with the task's particulars taken out, to count reasons by kind."""
    reason = re.sub(r"init/[\w.-]+", "init/<file>", reason)
    reason = re.sub(r"user '[^']*'", "user '...'", reason)
    reason = re.sub(r"\('[^']*'\)", "('...')", reason)
    return re.sub(r"check \w+ runs", "check runs", reason)


def run_agent(tasks: TaskSet, agent: str, out: Path, config: Config, workers: int) -> tuple[list[Trace], float]:
    from ise.stages.evaluate import run_eval

    path = out / f"{tasks.suite.replace(':', '-')}.{agent}.jsonl"
    path.unlink(missing_ok=True)
    started = time.monotonic()
    run_eval(tasks, path, config, agent=agent, workers=workers)  # type: ignore[arg-type]
    seconds = time.monotonic() - started
    return [trace for _, trace in read_traces(path)] if path.exists() else [], seconds


def why_failed(trace: Trace) -> str:
    if trace.infra_error is not None:
        return f"{trace.termination}: {trace.infra_error.message[:200]}"
    failed = [c for c in trace.outcome.checks if not c.passed]
    parts = []
    for check in failed:
        said = (check.stderr.strip() or check.stdout.strip())[-160:].replace("\n", " | ")
        got = f"answer {check.answer!r} vs expected {check.expected!r}" if check.kind == "answer" else ""
        parts.append(f"{check.id}: exit {check.exit_code} {got} {check.reason or ''} {said}".strip())
    return "; ".join(parts) or str(trace.termination)


def report_split(tasks: TaskSet, results: dict[str, tuple[list[Trace], float]]) -> None:
    total = len(tasks.plans) + len(tasks.unimportable)
    print(f"\n== {tasks.suite}: {total} tasks, {len(tasks.plans)} imported, {len(tasks.unimportable)} not importable")
    for kind, count in Counter(reason_kind(u.reason) for u in tasks.unimportable).most_common():
        print(f"   {count:3d}  {kind}")
    print(f"   {'agent':<22} {'passed':>9} {'rate':>7} {'s/task':>7}")
    for agent, (traces, seconds) in results.items():
        passed = sum(t.outcome.passed for t in traces)
        rate = passed / len(traces) if traces else 0.0
        per_task = seconds / len(traces) if traces else 0.0
        print(f"   {agent:<22} {passed:4d}/{len(traces):<4d} {rate:7.1%} {per_task:7.2f}")
    if "oracle" in results:
        misses = sorted((t for t in results["oracle"][0] if not t.outcome.passed), key=lambda t: t.id)
        print(f"   oracle misses ({len(misses)}):")
        for trace in misses:
            print(f"     {trace.id}: {why_failed(trace)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", choices=("dev", "test", "all"), default="all")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--model", choices=MODELS, help="also run this embedded model as the agent on dev")
    parser.add_argument("--no-controls", action="store_true", help="skip the oracle and null runs")
    parser.add_argument("--out", type=Path, help="folder for the traces (default: a temporary one)")
    parser.add_argument("-c", dest="overrides", action="append", default=[], help="config override, e.g. seed=1")
    args = parser.parse_args(argv)
    out = args.out or Path(tempfile.mkdtemp(prefix="agentbench-bench-"))
    out.mkdir(parents=True, exist_ok=True)
    config = load_config(args.overrides)
    splits = ["dev", "test"] if args.split == "all" else [args.split]
    for split in splits:
        tasks = load_tasks(f"agentbench-os:{split}", config)
        results = {} if args.no_controls else {a: run_agent(tasks, a, out, config, args.workers) for a in AGENTS}
        if args.model and split == "dev":
            model_config = load_config([*args.overrides, f"llm={{kind: embedded, model: {args.model}}}"])
            results[args.model] = run_agent(tasks, "llm", out, model_config, args.workers)
            print(f"{args.model} on dev: {results[args.model][1]:.0f} s wall", file=sys.stderr)
        report_split(tasks, results)
    print(f"\ntraces in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
