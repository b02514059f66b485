"""Diversity and coverage of an intent pool: Vendi score, distinct-n, and counts per matrix cell and persona facet.

Vendi score (Friedman & Dieng) with the cosine kernel and order q=1: exp of the Shannon entropy of the eigenvalues
of K/n, where K[i,j] = cos(x_i, x_j). It reads as "the effective number of distinct items": n identical items give
1, n mutually orthogonal ones give n. K/n = X X^T / n shares its non-zero eigenvalues with the d x d matrix
X^T X / n, so a pool of 50k intents with 384-d embeddings costs one 384 x 384 eigendecomposition.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from rich.table import Table

from ise.records import Record

_WORD = re.compile(r"\w+")


def vendi_score(vectors: NDArray[Any], method: Literal["auto", "kernel", "dual"] = "auto") -> float:
    """Effective number of distinct items among the rows of `vectors` (cosine similarity, q=1)."""
    x = np.asarray(vectors, dtype=np.float64)  # float64 so that n identical rows give exactly 1
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    x = x / np.where(norms == 0, 1.0, norms)
    n, d = x.shape
    if n == 0:
        return 0.0
    if method == "kernel" or (method == "auto" and n <= d):
        eigenvalues = np.linalg.eigvalsh(x @ x.T / n)
    else:
        eigenvalues = np.linalg.eigvalsh(x.T @ x / n)
    positive = eigenvalues[eigenvalues > 1e-12]
    return float(np.exp(-np.sum(positive * np.log(positive))))


def distinct_n(texts: Iterable[str], n: int) -> float:
    """Unique word n-grams over all n-grams in the pool (case-insensitive); 0 for an empty pool."""
    total = 0
    seen: set[tuple[str, ...]] = set()
    for text in texts:
        words = _WORD.findall(text.lower())
        grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
        total += len(grams)
        seen.update(grams)
    return len(seen) / total if total else 0.0


class CellCoverage(Record):
    domain: str
    complexity: str
    sampled: int
    """Cells the sampler allotted (the stratified target)."""
    kept: int
    """Intents in the final pool (after realisation failures and dedup)."""


class FacetCoverage(Record):
    values: int
    """Values the taxonomy defines for this facet."""
    covered: int
    """Values that appear at least once in the final pool."""
    counts: dict[str, int]


def cell_coverage(
    domains: Sequence[str], levels: Sequence[str], sampled: Iterable[tuple[str, str]], kept: Iterable[tuple[str, str]]
) -> list[CellCoverage]:
    """One row per (domain, complexity) cell, including the empty ones."""
    targets, finals = Counter(sampled), Counter(kept)
    return [
        CellCoverage(domain=d, complexity=c, sampled=targets[(d, c)], kept=finals[(d, c)])
        for d in domains
        for c in levels
    ]


def facet_coverage(values: Sequence[str], observed: Iterable[str]) -> FacetCoverage:
    counts = Counter(observed)
    return FacetCoverage(
        values=len(values), covered=sum(counts[v] > 0 for v in values), counts={v: counts[v] for v in values}
    )


def coverage_table(cells: Sequence[CellCoverage], levels: Sequence[str]) -> Table:
    """Domains down, complexity levels across; each entry is kept/sampled."""
    table = Table(title="coverage (kept/sampled) per domain x complexity")
    table.add_column("domain")
    for level in levels:
        table.add_column(level, justify="right")
    table.add_column("total", justify="right")
    by_domain: dict[str, dict[str, CellCoverage]] = {}
    for cell in cells:
        by_domain.setdefault(cell.domain, {})[cell.complexity] = cell
    for domain, row in by_domain.items():
        kept = sum(cell.kept for cell in row.values())
        sampled = sum(cell.sampled for cell in row.values())
        entries = [f"{row[level].kept}/{row[level].sampled}" for level in levels]
        table.add_row(domain, *entries, f"{kept}/{sampled}")
    return table
