"""Seed-library yield of the embedded models as agents: how many of ise's verified seeds each one solves.

For each agent model, `ise eval` runs the seeds of the chosen domains multi-turn (the plan's user card, the
demo's 0.5B user simulator) with k attempts per seed on the real Docker backend, and the figures come side by side:
pass@1 and pass@k with 95% intervals, verified trajectories per seed, seconds per trajectory and the run's wall
time. This is how the demo's agent model is chosen (configs/demo.yaml).

    .venv/bin/python bench/seed_yield_bench.py [--models qwen2.5-coder-0.5b,qwen2.5-coder-1.5b]
        [--domains files,text,data,logs,backup,documents] [--complexity simple] [--attempts 2] [--limit N]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from ise.config import load_config
from ise.eval_report import EvalSummary, rate
from ise.stages.evaluate import run_eval
from ise.tasks import TaskSet, load_tasks

DEMO_DOMAINS = "files,text,data,logs,backup,documents"


def _tasks(domains: str, complexity: str | None, limit: int | None, config_sources: list[str]) -> TaskSet:
    tasks = load_tasks(f"seeds:{domains}", load_config(config_sources))
    plans = [p for p in tasks.plans if complexity is None or p.intent.complexity in complexity.split(",")]
    return TaskSet(suite=tasks.suite, plans=plans[:limit] if limit else plans)


def _run(model: str, tasks: TaskSet, attempts: int, workdir: Path, console: Console) -> tuple[EvalSummary, float]:
    config = load_config(["configs/demo.yaml", f"llm.model={model}", "workers=1"])
    started = time.monotonic()
    summary = run_eval(tasks, workdir / f"{model}.jsonl", config, attempts=attempts, multi_turn=True, console=console)
    return summary, time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="qwen2.5-coder-0.5b,qwen2.5-coder-1.5b")
    parser.add_argument("--domains", default=DEMO_DOMAINS)
    parser.add_argument("--complexity", default=None, help="e.g. simple or simple,medium")
    parser.add_argument("--attempts", type=int, default=2)
    parser.add_argument("--limit", type=int, default=None, help="at most this many seeds")
    parser.add_argument("--out", type=Path, default=None, help="keep the traces here (default: a temp folder)")
    args = parser.parse_args()
    console = Console(stderr=True)
    tasks = _tasks(args.domains, args.complexity, args.limit, ["configs/demo.yaml"])
    workdir = args.out or Path(tempfile.mkdtemp(prefix="seed-yield-"))
    table = Table(title=f"seed yield: {len(tasks.plans)} seeds ({args.domains}), {args.attempts} attempts, multi-turn")
    for column in ("agent", "pass@1 [95% CI]", f"pass@{args.attempts}", "verified / seed", "s / trajectory", "wall"):
        table.add_column(column, justify="left" if column == "agent" else "right")
    for model in args.models.split(","):
        summary, wall = _run(model, tasks, args.attempts, workdir, console)
        attempts = sum(t.attempts for t in summary.tasks)
        verified = sum(t.passed for t in summary.tasks)
        table.add_row(
            model,
            rate(summary.overall.pass_at_1),
            rate(summary.overall.pass_at_k),
            f"{verified / max(1, len(summary.tasks)):.2f}",
            "-" if summary.overall.mean_seconds is None else f"{summary.overall.mean_seconds:.0f}",
            f"{wall / 60:.1f} min ({attempts} trajectories)",
        )
        solved = [t.id for t in summary.tasks if t.passed]
        console.print(f"{model}: solved {', '.join(solved) or 'none'}")
    Console().print(table)
    console.print(f"traces in {workdir}")


if __name__ == "__main__":
    main()
