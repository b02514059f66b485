"""Verifiable tasks through the execute stage: do the checks of each hand-written task tell done work from no work?

Every task of bench/data/verifiable_tasks.jsonl runs twice through `run_execute` on the real Docker backend, with
the reference agent (it replays the plan's reference solution, one bash call per milestone, and answers with what
it printed) and with the do-nothing agent (it answers "I do not know." and never acts); the user simulator relays
each milestone's ask word for word (ise/controls.py). Per group (information seeking: user profile; system
administration: admin profile) it prints side by side how many pass with the reference (target 100%) and with
nothing done (target 0%), and the median seconds per episode of each; then every task where the reference fails
or doing nothing passes, with the failing (or passing) checks.

    .venv/bin/python bench/verifiable_bench.py [--workers 2] [--only SUBSTRING]
    .venv/bin/python bench/verifiable_bench.py --convert      # bench/data/verifiable_tasks.yaml -> .jsonl
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel
from rich.console import Console

from ise.config import load_config
from ise.controls import null_llm, oracle_llm, relay_user_llm
from ise.jsonl import read_records, write_atomic
from ise.llm.scripted import ScriptedLLM
from ise.records import Plan, Trace
from ise.stages.execute import run_execute

DATA = Path(__file__).resolve().parent / "data"
SOURCE = DATA / "verifiable_tasks.yaml"
TASKS = DATA / "verifiable_tasks.jsonl"
GROUPS = {"user": "information seeking", "admin": "system administration"}
"""Group of a task by its sandbox profile: answers are sought as a user, system work is done as root."""


def load_source(path: Path = SOURCE) -> list[Plan]:
    """The tasks as written (YAML: a `tasks` list of Plan records; anchors allowed)."""
    data: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    return [Plan.model_validate(task) for task in data["tasks"]]


def convert(source: Path = SOURCE, target: Path = TASKS) -> list[Plan]:
    plans = load_source(source)
    records: list[BaseModel] = list(plans)
    write_atomic(target, records)
    return plans


@dataclass
class Run:
    traces: dict[str, Trace]
    seconds: float


def run_all(plans: list[Plan], agent: ScriptedLLM, workers: int, workdir: Path, name: str) -> Run:
    """Every plan through the execute stage with this agent and the relay user."""
    source, output = workdir / f"{name}-plans.jsonl", workdir / f"{name}-traces.jsonl"
    records: list[BaseModel] = list(plans)
    write_atomic(source, records)
    config = load_config(["llm.kind=scripted", f"workers={workers}", "execute.retry_infra_errors=false"])
    started = time.monotonic()
    run_execute(source, output, config, llms=(agent, relay_user_llm()), console=Console(stderr=True, quiet=True))
    traces = {trace.id: trace for trace in read_records(output, Trace)} if output.exists() else {}
    return Run(traces=traces, seconds=time.monotonic() - started)


def _percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.0f}%" if whole else "-"


def _median(values: list[float]) -> str:
    return f"{statistics.median(values):.1f}" if values else "-"


def table(plans: list[Plan], reference: Run, nothing: Run) -> list[str]:
    header = f"{'group':<24}{'tasks':>6}{'ref pass':>10}{'null pass':>11}{'ref s/ep':>10}{'null s/ep':>11}"
    lines = [header, "-" * len(header)]
    groups = [(label, [p for p in plans if p.profile == profile]) for profile, label in GROUPS.items()]
    for label, members in [*groups, ("all", plans)]:
        ids = [p.id for p in members]
        ref = [reference.traces[i] for i in ids if i in reference.traces]
        null = [nothing.traces[i] for i in ids if i in nothing.traces]
        lines.append(
            f"{label:<24}{len(ids):>6}"
            f"{_percent(sum(t.verdict == 'passed' for t in ref), len(ids)):>10}"
            f"{_percent(sum(t.verdict == 'passed' for t in null), len(ids)):>11}"
            f"{_median([t.timing.wall_s for t in ref]):>10}{_median([t.timing.wall_s for t in null]):>11}"
        )
    return lines


def _why(trace: Trace | None, *, passed: bool) -> str:
    if trace is None:
        return "no trace (the episode raised; see the stage's errors file)"
    if trace.errored:
        detail = trace.infra_error.message if trace.infra_error else ""
        return f"{trace.verdict}: {detail[:300]}"
    checks = [c for c in trace.outcome.checks if c.passed == passed]
    parts = [f"{c.id}" + (f" ({c.reason})" if c.reason else f" (exit {c.exit_code})") for c in checks]
    return f"{'passing' if passed else 'failing'} checks: {', '.join(parts) or 'none'}; termination {trace.termination}"


def exceptions(plans: list[Plan], reference: Run, nothing: Run) -> list[str]:
    lines = []
    for plan in plans:
        ref, null = reference.traces.get(plan.id), nothing.traces.get(plan.id)
        if ref is None or ref.verdict != "passed":
            lines.append(f"reference fails  {plan.id}: {_why(ref, passed=False)}")
        if null is None or null.verdict != "failed":
            lines.append(f"nothing passes   {plan.id}: {_why(null, passed=True)}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--only", default="", help="run only the tasks whose id contains this")
    parser.add_argument("--convert", action="store_true", help=f"write {TASKS.name} from {SOURCE.name} and stop")
    args = parser.parse_args(argv)
    if args.convert:
        plans = convert()
        print(f"wrote {len(plans)} plans to {TASKS}")
        return 0
    plans = [p for p in read_records(TASKS, Plan, unique_ids=True) if args.only in p.id]
    if not plans:
        print("no tasks match", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="verifiable-bench-") as tmp:
        reference = run_all(plans, oracle_llm(plans), args.workers, Path(tmp), "reference")
        nothing = run_all(plans, null_llm(), args.workers, Path(tmp), "nothing")
    print(f"verifiable tasks through the execute stage (real Docker backend, {args.workers} workers)")
    print(f"reference run {reference.seconds:.0f} s, do-nothing run {nothing.seconds:.0f} s; s/ep: median wall s")
    print()
    print("\n".join(table(plans, reference, nothing)))
    problems = exceptions(plans, reference, nothing)
    print()
    print("\n".join(problems) if problems else "every task: the reference passes and doing nothing fails")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
