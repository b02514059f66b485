"""The labelled user turns (tests/data/user_turns.yaml) and the role guard's score on them, for
tests/test_role_guard.py and bench/role_guard_bench.py."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ise.role_guard import judge_draft

CASES_FILE = Path(__file__).parent / "data" / "user_turns.yaml"


def load_cases() -> dict[str, list[dict[str, Any]]]:
    """The labelled drafts by batch."""
    data: dict[str, list[dict[str, Any]]] = yaml.safe_load(CASES_FILE.read_text(encoding="utf-8"))
    return data


@dataclass
class Score:
    """Drift is the positive class: precision is how many rejected drafts had drifted, recall how many drifted
    drafts were rejected."""

    true_pos: int = 0
    false_pos: int = 0
    false_neg: int = 0
    true_neg: int = 0
    misclassified: list[tuple[dict[str, Any], str | None]] = field(default_factory=list)
    """Each case the guard got wrong, with the reason it gave (None: it let a drifted draft through)."""

    @property
    def precision(self) -> float:
        flagged = self.true_pos + self.false_pos
        return self.true_pos / flagged if flagged else 1.0

    @property
    def recall(self) -> float:
        drifted = self.true_pos + self.false_neg
        return self.true_pos / drifted if drifted else 1.0


def score(cases: list[dict[str, Any]]) -> Score:
    result = Score()
    for case in cases:
        _, _, reason = judge_draft(case["draft"])
        flagged = reason is not None
        if flagged and case["drift"]:
            result.true_pos += 1
        elif flagged:
            result.false_pos += 1
        elif case["drift"]:
            result.false_neg += 1
        else:
            result.true_neg += 1
        if flagged != case["drift"]:
            result.misclassified.append((case, reason))
    return result
