"""What `ise export` reports: the summary of a run (counts, timings, provenance, statistics per split, yield) that
becomes export.json, and the dataset card rendered from it."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ise.config import ExportConfig
from ise.stages.export_selection import Candidate
from ise.stages.sft_rows import APPROX_TOKENS
from ise.yields import YieldTally, table_rows

SPLITS = ("train", "validation")


@dataclass
class ExportSummary:
    out_dir: Path
    read: int = 0
    filtered: Counter[str] = field(default_factory=Counter)
    rejected: int = 0
    rows: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SPLITS, 0))
    token_counter: str = APPROX_TOKENS
    render_checked: int = 0
    render_failed: int = 0
    sharegpt_dropped_texts: int = 0
    stats: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    """Seconds per phase (for bench/export_bench.py)."""
    task_files: dict[str, int] = field(default_factory=dict)
    """harbor / atif: how many task directories / trajectories were written."""
    attempts: YieldTally = field(default_factory=YieldTally)
    yields: dict[str, Any] = field(default_factory=dict)
    """pass@1, pass@k and yield per domain x complexity cell, of every trace read (ise/yields.py)."""

    @contextmanager
    def timed(self, phase: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.timings[phase] = self.timings.get(phase, 0.0) + time.perf_counter() - started

    def as_dict(self, cfg: ExportConfig) -> dict[str, Any]:
        return {
            "read": self.read,
            "filtered": dict(self.filtered),
            "rejected": self.rejected,
            "rows": self.rows,
            "token_counter": self.token_counter,
            "render_check": {"checked": self.render_checked, "failed": self.render_failed},
            "sharegpt_dropped_texts": self.sharegpt_dropped_texts,
            "filters": cfg.model_dump(mode="json"),
            "provenance": self.provenance,
            "stats": self.stats,
            "task_files": self.task_files,
            "yield": self.yields,
        }


def split_stats(candidates: Sequence[Candidate]) -> dict[str, Any]:
    metas = [c.metadata for c in candidates]
    return {
        "rows": len(candidates),
        "messages": _describe([c.messages for c in candidates]),
        "user_turns": _describe([m["user_turns"] for m in metas]),
        "tool_calls": _describe([m["tool_calls"] for m in metas]),
        "tokens": _describe([c.tokens for c in candidates]),
        "with_recovery": sum(m["recoveries"] > 0 for m in metas),
        "failed_checks": sum(not m["passed"] for m in metas),
        "subagent_rows": sum(m["subagent"] for m in metas),
        "domains": dict(Counter(m["domain"] for m in metas).most_common()),
        "complexity": dict(Counter(m["complexity"] for m in metas).most_common()),
        "termination": dict(Counter(m["termination"] for m in metas).most_common()),
    }


def _describe(values: list[int]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)
    return {
        "min": ordered[0],
        "median": ordered[len(ordered) // 2],
        "mean": round(sum(ordered) / len(ordered), 2),
        "max": ordered[-1],
    }


class ProvenanceTally:
    """What the traces were made with: models per role, sandbox images, config hashes, ise versions."""

    def __init__(self) -> None:
        self.models: dict[str, Counter[str]] = {}
        self.images: Counter[str] = Counter()
        self.configs: Counter[str] = Counter()
        self.versions: Counter[str] = Counter()

    def add(self, models: Iterable[tuple[str, str]], image: str, config_hash: str, version: str) -> None:
        for role, model in models:
            self.models.setdefault(role, Counter())[model] += 1
        self.images[image] += 1
        self.configs[config_hash] += 1
        self.versions[version] += 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "models": {role: dict(counts) for role, counts in sorted(self.models.items())},
            "images": dict(self.images),
            "config_hashes": dict(self.configs),
            "ise_versions": dict(self.versions),
        }


def render_card(summary: ExportSummary, cfg: ExportConfig) -> str:
    from jinja2 import Environment, PackageLoader, StrictUndefined

    env = Environment(loader=PackageLoader("ise", "templates"), undefined=StrictUndefined, keep_trailing_newline=True)
    return env.get_template("dataset_card.md.jinja").render(
        summary=summary, cfg=cfg, manifest=summary.as_dict(cfg), splits=SPLITS, yield_table=table_rows(summary.yields)
    )
