"""pass@1, pass@k and yield per domain x complexity cell: what `ise report` shows and export.json and the dataset card
carry, computed here once from the traces read.

Attempts. `execute.attempts: k` runs up to k trajectories per plan (`Trace.plan_id`, `Trace.env.attempt`). An attempt
that errored (`Trace.errored`: infrastructure, or the plan's own setup) measured nobody: it is left out of n and out
of every pass rate, and counted apart. A plan's measured attempts are taken in attempt order.

Estimators. With `execute.stop_at_success` (the default) the attempts after a plan's first success never ran, so the
number of attempts a plan has depends on its outcomes, and `ise eval`'s estimator (ise.evalstats.pass_at_k, c of n
attempts, which for pass@1 is the mean of c/n) is biased upwards: a plan that passes half the time reads as 0.625
at k = 2 (S; F S; F F -> 1, 1/2, 0 with chances 1/2, 1/4, 1/4). What stopping leaves intact is each plan's prefix:
its first j measured attempts up to and including the first success. So both figures are read from the prefix:

- pass@1: the share of plans whose first measured attempt passed (unbiased whether or not later attempts ran);
- pass@k: the share of plans with a verified success within their first k measured attempts, k being the most
  attempts any plan had (execute.attempts once the run finished).

A plan that failed every measured attempt but had fewer than k of them (an errored slot, a run stopped between
rounds) is censored, not a failure at k: pass@j is the discrete-time Kaplan-Meier estimate 1 - prod_{i<=j}(1 -
d_i / r_i), d_i the plans whose first success is their i-th measured attempt and r_i the plans that reached an i-th
one. When every plan passed or had k measured attempts (a finished run without errors) this is exactly the plain
share. When every measured plan has all k attempts and none stopped at success (`Trace.env.stop_at_success` false:
a run without stopping, finished, without errors), the number of attempts no longer depends on outcomes and the
figures are `ise eval`'s: the unbiased c-of-n estimator (ise.evalstats.pass_at_k; c/n for pass@1), which uses every
attempt and is more precise than the prefix.
Intervals are Wilson's (ise.evalstats.wilson) over the plans measured (exact for pass@1, approximate for pass@k
under censoring).

Yield. Verified trajectories (measured, every check passed) per plan, per hour and per million LLM tokens. Cost
counts every attempt, errored ones too: they were paid for. Plans are all plans with an attempt in the cell. Hours
are trajectory time, the sum of `Trace.timing.wall_s`, not the run's elapsed time: episodes run concurrently, so a
run with 8 workers makes about 8 trajectory-hours per hour (the run folder does not record the elapsed time).
Tokens are prompt + completion over every role (agent and user simulator). Export adds, per cell, the verified rows
it exported (after its filters, validation and token limits).

Cells are every domain x complexity pair of the traces read, empty ones included (plans 0, figures None).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, get_args

from ise.evalstats import pass_at_k, wilson
from ise.records import Trace
from ise.records.plan import Complexity

Cell = tuple[str, str]
"""(domain, complexity)."""
LEVELS: tuple[str, ...] = get_args(Complexity)


def tokens_of(trace: Trace) -> int:
    """LLM tokens a trajectory spent: prompt + completion over every role."""
    return sum(u.prompt_tokens + u.completion_tokens for u in trace.usage)


@dataclass(frozen=True)
class AttemptRecord:
    """What the figures need of one trace (small, so export's workers can send it back with each line)."""

    plan_id: str
    attempt: int
    domain: str
    complexity: str
    measured: bool
    verified: bool
    tokens: int
    wall_s: float
    stopping: bool = False
    """Its plan's attempts stopped at the first success (Trace.env.stop_at_success)."""

    @classmethod
    def of(cls, trace: Trace) -> AttemptRecord:
        measured = not trace.errored
        return cls(
            plan_id=trace.plan_id,
            attempt=trace.env.attempt,
            domain=trace.intent.domain,
            complexity=trace.intent.complexity,
            measured=measured,
            verified=measured and trace.outcome.passed,
            tokens=tokens_of(trace),
            wall_s=trace.timing.wall_s,
            stopping=trace.env.stop_at_success,
        )

    @property
    def cell(self) -> Cell:
        return self.domain, self.complexity


@dataclass(frozen=True)
class History:
    """One plan's measured attempts, in order: where the first success came (1-based) and how many there were."""

    first_success: int | None
    measured: int
    passed: int = 0
    stopping: bool = False

    @classmethod
    def of(cls, attempts: Sequence[AttemptRecord]) -> History:
        measured = [a for a in sorted(attempts, key=lambda a: a.attempt) if a.measured]
        first = next((i for i, a in enumerate(measured, 1) if a.verified), None)
        return cls(first, len(measured), sum(a.verified for a in measured), any(a.stopping for a in attempts))

    def reached(self, i: int) -> bool:
        """Had an i-th measured attempt with no success before it (at risk at i)."""
        return self.measured >= i and (self.first_success is None or self.first_success >= i)


def pass_within(histories: Sequence[History], j: int, k: int) -> float | None:
    """The chance of a verified success within j measured attempts (see the module docstring: c of n when every
    measured plan has all k attempts, else Kaplan-Meier over the prefixes); None if no plan was measured."""
    if not any(h.reached(1) for h in histories):
        return None
    measured = [h for h in histories if h.measured]
    if k > 1 and j <= k and all(h.measured == k and not h.stopping for h in measured):
        return sum(pass_at_k(k, h.passed, j) for h in measured) / len(measured)
    still_failing = 1.0
    for i in range(1, j + 1):
        at_risk = sum(h.reached(i) for h in histories)
        if at_risk:
            still_failing *= 1 - sum(h.first_success == i for h in histories) / at_risk
    return 1 - still_failing


def _rate(histories: Sequence[History], j: int, k: int) -> dict[str, float] | None:
    value = pass_within(histories, j, k)
    if value is None:
        return None
    plans = sum(h.measured > 0 for h in histories)
    low, high = wilson(value, plans)
    return {"value": _round(value), "low": _round(low), "high": _round(high), "plans": plans}


def _round(value: float) -> float:
    return round(value, 4)


def _per(verified: int, amount: float, unit: float = 1.0) -> float | None:
    return _round(verified / (amount / unit)) if amount else None


def figures(plans: Sequence[Sequence[AttemptRecord]], k: int) -> dict[str, Any]:
    """The figures of a group of plans (each given as its attempts), pass@k at this k."""
    attempts = [a for plan in plans for a in plan]
    histories = [History.of(plan) for plan in plans]
    verified = sum(a.verified for a in attempts)
    hours = sum(a.wall_s for a in attempts) / 3600
    tokens = sum(a.tokens for a in attempts)
    return {
        "plans": len(plans),
        "attempts": len(attempts),
        "errored": sum(not a.measured for a in attempts),
        "verified": verified,
        "pass@1": _rate(histories, 1, k),
        "pass@k": _rate(histories, k, k),
        "verified_per_plan": _per(verified, len(plans)),
        "hours": _round(hours),
        "verified_per_hour": _per(verified, hours),
        "tokens": tokens,
        "verified_per_million_tokens": _per(verified, tokens, 1e6),
    }


class YieldTally:
    """Attempt records gathered by plan as they are read, in any order; `table()` gives the figures."""

    def __init__(self) -> None:
        self.plans: dict[str, list[AttemptRecord]] = {}

    def add(self, record: AttemptRecord) -> None:
        self.plans.setdefault(record.plan_id, []).append(record)

    def table(self, exported: Mapping[Cell, int] | None = None) -> dict[str, Any]:
        """k, the overall figures and one entry per cell; with `exported` (verified rows exported per cell), each
        entry also says how many of its verified trajectories made it into the dataset."""
        plans = list(self.plans.values())
        k = max((a.attempt + 1 for plan in plans for a in plan), default=1)
        by_cell: dict[Cell, list[list[AttemptRecord]]] = {}
        for plan in plans:
            by_cell.setdefault(plan[0].cell, []).append(plan)
        cells = []
        for domain, complexity in _grid(by_cell):
            entry = {"domain": domain, "complexity": complexity, **figures(by_cell.get((domain, complexity), []), k)}
            cells.append(entry)
        overall = figures(plans, k)
        if exported is not None:
            for entry in cells:
                entry["exported"] = exported.get((entry["domain"], entry["complexity"]), 0)
            overall["exported"] = sum(exported.values())
        return {"k": k, "hours_basis": "trajectory time (sum of wall_s)", "overall": overall, "cells": cells}


def _grid(cells: Iterable[Cell]) -> list[Cell]:
    """Every domain x complexity pair of those seen: domains by name, levels simple to complex."""
    seen = list(cells)
    domains = sorted({d for d, _ in seen})
    levels = {c for _, c in seen}
    ordered = [lvl for lvl in LEVELS if lvl in levels] + sorted(levels - set(LEVELS))
    return [(d, c) for d in domains for c in ordered]


def verified_rows(metadata: Iterable[Mapping[str, Any]]) -> dict[Cell, int]:
    """Verified trajectories per cell among exported rows (their metadata); a sub-agent's row is part of its
    trajectory's, not one more."""
    counts: dict[Cell, int] = {}
    for meta in metadata:
        if meta["passed"] and not meta.get("subagent"):
            cell = (meta["domain"], meta["complexity"])
            counts[cell] = counts.get(cell, 0) + 1
    return counts


def yield_table(traces: Iterable[Trace]) -> dict[str, Any]:
    tally = YieldTally()
    for trace in traces:
        tally.add(AttemptRecord.of(trace))
    return tally.table()


# --- presentation (terminal, HTML, dataset card) ----------------------------------------------------------------


def table_rows(table: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Headers and text rows of a yield table, one per cell and `all` last; `exported` only when the table has it."""
    exported = "exported" in table["overall"]
    headers = ["domain", "complexity", "plans", "attempts (errored)", "pass@1", f"pass@{table['k']}", "verified"]
    headers += ["exported"] * exported + ["per plan", "per hour", "per M tokens"]
    entries = [*table["cells"], {"domain": "all", "complexity": "all", **table["overall"]}]
    return headers, [_row(entry, exported) for entry in entries]


def _row(entry: Mapping[str, Any], exported: bool) -> list[str]:
    row = [entry["domain"], entry["complexity"], str(entry["plans"]), f"{entry['attempts']} ({entry['errored']})"]
    row += [_percent(entry["pass@1"]), _percent(entry["pass@k"]), str(entry["verified"])]
    if exported:
        row.append(str(entry["exported"]))
    return row + [_number(entry[key]) for key in YIELD_KEYS]


YIELD_KEYS = ("verified_per_plan", "verified_per_hour", "verified_per_million_tokens")


def _percent(rate: Mapping[str, float] | None) -> str:
    return f"{rate['value']:.0%}" if rate else "n/a"


def _number(value: float | None) -> str:
    return f"{value:.2f}" if value is not None else "n/a"
