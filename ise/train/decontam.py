"""Decontamination: no training row may be about a task the model is then evaluated on.

A training task overlaps an eval task when any of these hold (checked in this order, the first one is the reason):
- same plan id (attempts `<plan>.aN` count as their plan);
- same task text: any of its requests or user asks equals one of the eval task's, after case and whitespace are
  normalised (an exact rule: it catches a task copied into both sets, not a paraphrase);
- same fixtures: the same files (path and content) and setup script, when the training side knows its fixtures
  (a plan, or a row whose plan is given). Tasks without fixtures never match on this rule.
Overlapping rows are refused and counted per reason, never silently kept.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from ise.records import Fixtures, Plan
from ise.train.data import TrainRow

_SPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class TaskKey:
    """What identifies a task for overlap: its plan id, its texts, and a digest of its fixtures."""

    plan_id: str | None
    texts: frozenset[str]
    fixtures: str | None


def normalise(text: str) -> str:
    return _SPACE.sub(" ", text).strip().lower()


def fixture_digest(fixtures: Fixtures) -> str | None:
    """A digest of the files, folders and setup a task starts from; None when it starts from nothing."""
    if not (fixtures.files or fixtures.setup_script):
        return None
    files = sorted((f.path, f.encoding, f.content) for f in fixtures.files)
    dirs = sorted(d.path for d in fixtures.dirs)
    data = json.dumps([files, dirs, fixtures.setup_script or ""], ensure_ascii=False).encode()
    return hashlib.sha256(data).hexdigest()


def plan_key(plan: Plan) -> TaskKey:
    texts = [plan.intent.request, *(milestone.ask for milestone in plan.user.milestones)]
    return TaskKey(plan.id, frozenset(normalise(t) for t in texts if t.strip()), fixture_digest(plan.fixtures))


def row_key(row: TrainRow, plans: dict[str, Plan] | None = None) -> TaskKey:
    """A training row's key: its user turns as texts; plan id and fixtures when the export (or `plans`) says."""
    texts = frozenset(
        normalise(m["content"]) for m in row.messages if m["role"] == "user" and (m.get("content") or "").strip()
    )
    plan = (plans or {}).get(row.plan_id or "")
    return TaskKey(row.plan_id, texts, fixture_digest(plan.fixtures) if plan else None)


class Decontaminator:
    """Answers, for a training task, which eval task it overlaps and why (or None)."""

    def __init__(self, eval_plans: Iterable[Plan]) -> None:
        self._ids: dict[str, str] = {}
        self._texts: dict[str, str] = {}
        self._fixtures: dict[str, str] = {}
        for plan in eval_plans:
            key = plan_key(plan)
            self._ids.setdefault(key.plan_id or "", plan.id)
            for text in key.texts:
                self._texts.setdefault(text, plan.id)
            if key.fixtures:
                self._fixtures.setdefault(key.fixtures, plan.id)

    def overlap(self, key: TaskKey) -> str | None:
        if key.plan_id and key.plan_id in self._ids:
            return f"same plan id as eval task {self._ids[key.plan_id]}"
        for text in sorted(key.texts):
            if text in self._texts:
                return f"same task text as eval task {self._texts[text]}"
        if key.fixtures and key.fixtures in self._fixtures:
            return f"same fixtures as eval task {self._fixtures[key.fixtures]}"
        return None


def rule_of(reason: str) -> str:
    """The rule a reason names (for counting): 'same plan id', 'same task text' or 'same fixtures'."""
    return reason.split(" as eval task", 1)[0]


def refuse_overlaps(
    rows: list[TrainRow], decontaminator: Decontaminator, plans: dict[str, Plan] | None = None
) -> tuple[list[TrainRow], Counter[str]]:
    """The rows that overlap no eval task, and how many were refused under each rule."""
    kept, refused = [], Counter[str]()
    for row in rows:
        reason = decontaminator.overlap(row_key(row, plans))
        if reason is None:
            kept.append(row)
        else:
            refused[rule_of(reason)] += 1
    return kept, refused


def split_plans(plans: Iterable[Plan], decontaminator: Decontaminator) -> tuple[list[Plan], Counter[str]]:
    """Training plans that overlap no eval task, and the refusals per rule (for choosing what to run)."""
    kept, refused = [], Counter[str]()
    for plan in plans:
        reason = decontaminator.overlap(plan_key(plan))
        if reason is None:
            kept.append(plan)
        else:
            refused[rule_of(reason)] += 1
    return kept, refused
