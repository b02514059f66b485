"""The user simulator's role guard on the labelled drafts of tests/data/user_turns.yaml: precision and recall of
drift (the positive class), the confusion counts and every misclassified draft, per batch and over all of them.

Batch 1 was written before the guard's patterns; batches 2, 3 and 4 were each written, scored as they stood, and
only then used to generalise the patterns. What each scored before its own round is the guard's held-out
performance, recorded here because the patterns now fit them all:
  batch 2 (after batch 1's round)  precision 0.90  recall 0.45   (46 drafts)
  batch 3 (after batch 2's round)  precision 0.80  recall 0.27   (35 drafts)
  batch 4 (after batch 3's round)  precision 1.00  recall 0.64   (29 drafts)

.venv/bin/python bench/role_guard_bench.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from role_guard_support import Score, load_cases, score


def report(name: str, cases: list[dict[str, Any]]) -> Score:
    result = score(cases)
    print(
        f"{name:8} n={len(cases):3}  precision {result.precision:.3f}  recall {result.recall:.3f}  "
        f"(tp {result.true_pos}, fp {result.false_pos}, fn {result.false_neg}, tn {result.true_neg})"
    )
    for case, reason in result.misclassified:
        verdict = f"flagged: {reason}" if reason else "let through"
        print(f"    {'drift' if case['drift'] else 'in role'} [{case['kind']}], {verdict}: {case['draft']!r}")
    return result


def main() -> None:
    batches = load_cases()
    for name, cases in batches.items():
        report(name, cases)
    everything = [case for cases in batches.values() for case in cases]
    started = time.perf_counter()
    report("all", everything)
    per_draft_us = (time.perf_counter() - started) / len(everything) * 1e6
    print(f"judging one draft: {per_draft_us:.0f} us")


if __name__ == "__main__":
    main()
