"""The figures `ise eval` reports, from per-task counts: n attempts of a task, c of them passed.

- pass@k: the chance that at least one of k attempts passes, estimated without bias from n >= k attempts
  (1 - C(n-c, k) / C(n, k)), averaged over tasks.
- pass^k: the chance that all k attempts pass (C(c, k) / C(n, k)), averaged over tasks: how reliably, not whether.
- 95% intervals: Wilson's score interval for a proportion over the tasks (the unit of sampling is the task, so n
  is the task count; with one attempt per task this is the exact textbook case, with several it treats each task's
  estimate as one observation, which is what a reader comparing suites wants).
Attempts that ended in setup or infrastructure errors are nobody's outcome: they are left out of n (and counted
apart by the caller), never scored as failures of the agent.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

Z95 = 1.959963984540054


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of one task with n attempts of which c passed (requires n >= k >= 1)."""
    if not 1 <= k <= n or not 0 <= c <= n:
        raise ValueError(f"pass@k needs 1 <= k <= n and 0 <= c <= n (n={n}, c={c}, k={k})")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def pass_hat_k(n: int, c: int, k: int) -> float:
    """pass^k of one task: the chance that k attempts drawn from its n all pass."""
    if not 1 <= k <= n or not 0 <= c <= n:
        raise ValueError(f"pass^k needs 1 <= k <= n and 0 <= c <= n (n={n}, c={c}, k={k})")
    return math.comb(c, k) / math.comb(n, k)


def wilson(p: float, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion p observed over n units; (0, 1) when n is 0."""
    if n == 0:
        return 0.0, 1.0
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def suite_figure(counts: Sequence[tuple[int, int]], k: int, *, all_pass: bool = False) -> dict[str, float] | None:
    """pass@k (or pass^k with all_pass) over tasks given as (n, c), with its 95% interval; None when no task has
    k attempts that count."""
    scores = [(pass_hat_k if all_pass else pass_at_k)(n, c, k) for n, c in counts if n >= k]
    if not scores:
        return None
    value = sum(scores) / len(scores)
    low, high = wilson(value, len(scores))
    return {"value": round(value, 4), "low": round(low, 4), "high": round(high, 4), "tasks": len(scores)}
