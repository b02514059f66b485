"""How well a model writes plans that survive the dry run: one-shot vs two-part drafting, side by side.

    .venv/bin/python bench/simulate_bench.py [--intents tests/data/simulate/demo_intents.jsonl] [--seeds 2]
        [--modes two_part,one_shot] [--seed-examples 0,1] [--attempts 4] [-c llm.max_tokens=2048 ...]

For each mode and number of seed plans shown as worked examples, every intent is planned once per seed (a fresh
Simulator each time) with the configured LLM (the embedded Qwen2.5-Coder-0.5B by default) and real Docker sandboxes.
Prints per column: intents planned, first-try rate, proven plans per intent and per LLM minute, mean attempts of kept
plans, problems met, LLM seconds per attempt, dry-run seconds per attempt. Don't run it next to other heavy work:
on 2 cores every other process shows up in the timings.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import Counter
from pathlib import Path

import yaml
from rich.console import Console
from rich.table import Table

from ise.config import Config, load_config
from ise.jsonl import read_records
from ise.llm.base import LLM
from ise.plan_static import static_problems
from ise.plan_validation import validate
from ise.records import Intent, Plan
from ise.sandbox.provider import SandboxFactory, open_provider
from ise.stages.simulate import PlanRejected, Simulator

GOOD_PLAN = Path("tests/data/simulate/good_plan.yaml")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--intents", type=Path, default=Path("tests/data/simulate/demo_intents.jsonl"))
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--modes", default="two_part,one_shot")
    parser.add_argument("--seed-examples", default="0", help="simulate.seed_examples values to compare, e.g. 0,1")
    parser.add_argument("--attempts", type=int, default=4)
    parser.add_argument("-c", "--config", action="append", default=[])
    parser.add_argument("--repeats", type=int, default=5, help="Validations of the hand-written plan to time.")
    parser.add_argument("--validation-only", action="store_true", help="Only time the validation of a known plan.")
    args = parser.parse_args()

    intents = list(read_records(args.intents, Intent))
    console = Console()
    console.print(validation_table(load_config(args.config), args.repeats))
    if args.validation_only:
        return
    columns: dict[str, dict[str, str]] = {}
    for mode in args.modes.split(","):
        for examples in args.seed_examples.split(","):
            settings = [f"simulate.two_part={mode == 'two_part'}", f"simulate.max_attempts={args.attempts}"]
            config = load_config([*args.config, *settings, f"simulate.seed_examples={examples}"])
            column = f"{mode}, {examples} seed example(s)"
            llm = config.llm_for("simulate").build()
            try:
                with open_provider(config.sandbox, run_id="simulate-bench") as sandboxes:
                    columns[column] = run_mode(column, intents, args.seeds, config, llm, sandboxes, console)
            finally:
                llm.close()
    table = Table(title=f"simulate bench: {len(intents)} intents x {args.seeds} seeds, {args.attempts} attempts")
    table.add_column("")
    for mode in columns:
        table.add_column(mode)
    for row in next(iter(columns.values())):
        table.add_row(row, *(columns[mode][row] for mode in columns))
    console.print(table)


def validation_table(config: Config, repeats: int) -> Table:
    """Seconds to validate the hand-written plan of the tests: the dry run alone, and with the solved run."""
    plan = Plan.model_validate(yaml.safe_load(GOOD_PLAN.read_text()))
    with open_provider(config.sandbox, run_id="simulate-bench") as sandboxes:
        return _validation_table(plan, config, sandboxes, repeats)


def _validation_table(plan: Plan, config: Config, sandboxes: SandboxFactory, repeats: int) -> Table:
    timings: dict[str, list[float]] = {"static checks": [], "dry run": [], "dry run + solved run": []}
    for _ in range(repeats):
        started = time.monotonic()
        static_problems(plan, config.simulate)
        timings["static checks"].append(time.monotonic() - started)
        timings["dry run"].append(
            validate(plan.model_copy(update={"solution": []}), sandboxes, config.simulate).seconds
        )
        timings["dry run + solved run"].append(validate(plan, sandboxes, config.simulate).seconds)
    table = Table(title=f"validating {GOOD_PLAN.name} ({repeats} runs)")
    for column in ("", "median s", "min s", "max s"):
        table.add_column(column)
    for name, values in timings.items():
        table.add_row(name, *(f"{fn(values):.4f}" for fn in (statistics.median, min, max)))
    return table


def run_mode(
    mode: str, intents: list[Intent], seeds: int, config: Config, llm: LLM, sandboxes: SandboxFactory, console: Console
) -> dict[str, str]:
    kept: list[int] = []
    problems: Counter[str] = Counter()
    llm_per_attempt: list[float] = []
    llm_total_s = 0.0
    dry_run: list[float] = []
    started = time.monotonic()
    runs = 0
    for seed in range(seeds):
        for intent in intents:
            runs += 1
            simulator = Simulator(llm, config.simulate, sandboxes, seed=seed * 100)
            try:
                plan = simulator(intent)
                kept.append(plan.attempts)
                verdict = f"kept after {plan.attempts} attempt(s)"
            except PlanRejected as exc:
                verdict = f"rejected: {str(exc)[:160]}"
            outcome = simulator.outcomes[0]
            for number, failure in enumerate(outcome.failures, start=1):
                console.print(f"    attempt {number}: {'; '.join(failure)[:400]}", highlight=False, markup=False)
            problems.update(outcome.problem_kinds)
            llm_per_attempt.append(outcome.llm_s / max(1, outcome.attempts))
            llm_total_s += outcome.llm_s
            dry_run += outcome.validation_s
            console.print(f"[{mode}] seed {seed} {intent.id}: {verdict}", highlight=False)
    return {
        "intents planned": f"{len(kept)}/{runs}",
        "first-try rate": f"{sum(a == 1 for a in kept) / runs:.2f}",
        "proven plans per intent": f"{len(kept) / runs:.2f}",
        "proven plans per LLM minute": f"{len(kept) / (llm_total_s / 60):.3f}" if llm_total_s else "-",
        "attempts of kept plans": f"{statistics.fmean(kept):.2f}" if kept else "-",
        "problems met": ", ".join(f"{k} {v}" for k, v in problems.most_common()) or "-",
        "LLM s per attempt (median)": f"{statistics.median(llm_per_attempt):.1f}",
        "dry run s (median)": f"{statistics.median(dry_run):.2f}" if dry_run else "-",
        "wall s": f"{time.monotonic() - started:.0f}",
    }


if __name__ == "__main__":
    main()
