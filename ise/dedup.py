"""Deduplicate a pool of intents, keeping the first occurrence of each.

Three passes, cheapest first, each over the survivors of the one before:
  exact     the same text after normalisation (case, punctuation, spacing)
  near      character 5-gram Jaccard at or above a threshold; MinHash + LSH banding finds the candidates, the
            exact Jaccard of the shingle sets confirms them, so the pass stays near-linear at 50k texts
  semantic  embedding cosine at or above a threshold; a blocked greedy scan compares each block with the rows
            kept so far by matrix products, never materialising the n x n matrix
Every removed item is reported with the kept item it duplicates and the score.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from numpy.typing import NDArray

from ise.embeddings import normalize_rows
from ise.records import Record

Method = Literal["exact", "near", "semantic"]
Matches = dict[int, tuple[int, float]]
"""Removed position -> (position of the earlier kept item it duplicates, score)."""


class Duplicate(Record):
    """An intent removed from the pool, and the kept intent it duplicates."""

    id: str
    duplicate_of: str
    method: Method
    score: float
    """1.0 for exact; shingle Jaccard for near; embedding cosine for semantic."""
    request: str
    duplicate_of_request: str


@dataclass
class DedupResult:
    kept: list[int]
    """Positions of the kept items, in input order."""
    duplicates: list[Duplicate]
    embeddings: NDArray[np.float32]
    """Embeddings of the kept items, row i for kept[i]."""
    removed: dict[str, int] = field(default_factory=dict)
    """Count per method."""


def deduplicate(
    ids: Sequence[str],
    texts: Sequence[str],
    embed: Callable[[Sequence[str]], NDArray[np.float32]],
    *,
    threshold: float,
    near_threshold: float = 0.8,
) -> DedupResult:
    """Run the three passes; only the survivors of the text passes are embedded."""
    alive = list(range(len(texts)))
    duplicates: list[Duplicate] = []

    def apply(method: Method, matches: Matches) -> None:
        nonlocal alive
        for pos, (first, score) in sorted(matches.items()):
            i, j = alive[pos], alive[first]
            duplicates.append(
                Duplicate(
                    id=ids[i],
                    duplicate_of=ids[j],
                    method=method,
                    score=round(score, 4),
                    request=texts[i],
                    duplicate_of_request=texts[j],
                )
            )
        alive = [index for pos, index in enumerate(alive) if pos not in matches]

    apply("exact", exact_duplicates([texts[i] for i in alive]))
    apply("near", near_duplicates([texts[i] for i in alive], near_threshold))
    vectors = embed([texts[i] for i in alive])
    semantic = semantic_duplicates(vectors, threshold)
    survivors = [pos for pos in range(len(alive)) if pos not in semantic]
    apply("semantic", semantic)
    counts = {method: sum(d.method == method for d in duplicates) for method in ("exact", "near", "semantic")}
    return DedupResult(kept=alive, duplicates=duplicates, embeddings=vectors[survivors], removed=counts)


# --- exact --------------------------------------------------------------------------------------------------------

_NON_WORD = re.compile(r"[^\w]+")


def normalise(text: str) -> str:
    """Case-, accent-width- and punctuation-insensitive form of a text."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(_NON_WORD.sub(" ", folded).split())


def exact_duplicates(texts: Sequence[str]) -> Matches:
    first: dict[str, int] = {}
    matches: Matches = {}
    for pos, text in enumerate(texts):
        key = normalise(text)
        if key in first:
            matches[pos] = (first[key], 1.0)
        else:
            first[key] = pos
    return matches


# --- near-exact: MinHash LSH over character shingles ----------------------------------------------------------------

SHINGLE = 5
_BANDS, _ROWS = 16, 5  # candidate probability: > 0.998 at Jaccard 0.8, 0.40 at 0.5, 0.04 at 0.3
_PERMUTATIONS = _BANDS * _ROWS
_ESTIMATE_MARGIN = 0.2  # 80 hashes estimate Jaccard to +-0.05 (1 sd): a candidate this far below is no match
_rng = np.random.default_rng(20240501)  # fixed: signatures must not change between runs
_MULTIPLIERS = _rng.integers(1, 2**63, size=_PERMUTATIONS, dtype=np.uint64) | np.uint64(1)
_OFFSETS = _rng.integers(0, 2**63, size=_PERMUTATIONS, dtype=np.uint64)
_BASE = np.uint64(257) ** np.arange(SHINGLE, dtype=np.uint64)


def shingles(text: str) -> NDArray[np.uint64]:
    """Sorted unique codes of the character 5-grams of the normalised text (exact: base 257 > any byte)."""
    data = np.frombuffer(normalise(text).encode("utf-8"), dtype=np.uint8).astype(np.uint64)
    if data.size < SHINGLE:
        data = np.pad(data, (0, SHINGLE - data.size))
    codes: NDArray[np.uint64] = sliding_window_view(data, SHINGLE) @ _BASE
    return np.unique(codes)


def minhash(codes: NDArray[np.uint64]) -> NDArray[np.uint64]:
    """One minimum per random multiply-add hash (uint64 arithmetic wraps, which is the intended modulus)."""
    hashed = codes[None, :] * _MULTIPLIERS[:, None] + _OFFSETS[:, None]
    result: NDArray[np.uint64] = hashed.min(axis=1)
    return result


def jaccard(a: NDArray[Any], b: NDArray[Any]) -> float:
    common = np.intersect1d(a, b, assume_unique=True).size
    return common / (a.size + b.size - common)


def near_duplicates(texts: Sequence[str], threshold: float) -> Matches:
    """Greedy in order: an item matches an earlier kept item whose shingle Jaccard is >= threshold.

    LSH buckets propose candidates; their MinHash agreement (one vectorised comparison) discards the clear
    misses; only the rest get an exact Jaccard of the shingle sets."""
    buckets: list[dict[bytes, list[int]]] = [{} for _ in range(_BANDS)]
    signatures = np.empty((len(texts), _PERMUTATIONS), dtype=np.uint64)
    kept_shingles: dict[int, NDArray[np.uint64]] = {}
    matches: Matches = {}
    for pos, text in enumerate(texts):
        codes = shingles(text)
        signature = signatures[pos] = minhash(codes)
        keys = [signature[b * _ROWS : (b + 1) * _ROWS].tobytes() for b in range(_BANDS)]
        candidates = sorted({other for band, key in enumerate(keys) for other in buckets[band].get(key, ())})
        best, best_score = -1, 0.0
        if candidates:
            estimates = np.mean(signatures[candidates] == signature, axis=1)
            for index in np.flatnonzero(estimates >= threshold - _ESTIMATE_MARGIN):
                other = candidates[index]
                score = jaccard(codes, kept_shingles[other])
                if score > best_score:
                    best, best_score = other, score
        if best >= 0 and best_score >= threshold:
            matches[pos] = (best, best_score)
            continue
        kept_shingles[pos] = codes
        for band, key in enumerate(keys):
            buckets[band].setdefault(key, []).append(pos)
    return matches


# --- semantic: blocked greedy cosine scan ---------------------------------------------------------------------------


def semantic_duplicates(vectors: NDArray[Any], threshold: float, *, block: int = 1024, chunk: int = 8192) -> Matches:
    """Greedy in order: row i is a duplicate if its cosine with some earlier *kept* row is >= threshold.

    Each block of rows is compared with the kept rows before it in `chunk`-sized matrix products (memory stays
    at block x chunk floats), then resolved row by row against the block's own earlier kept rows."""
    x = normalize_rows(vectors)
    n = x.shape[0]
    kept = np.empty_like(x)
    kept_index = np.empty(n, dtype=np.int64)
    n_kept = 0
    matches: Matches = {}
    for start in range(0, n, block):
        rows = x[start : start + block]
        best = np.full(rows.shape[0], -np.inf, dtype=np.float32)
        best_at = np.full(rows.shape[0], -1, dtype=np.int64)
        for c in range(0, n_kept, chunk):
            sims = rows @ kept[c : min(c + chunk, n_kept)].T
            col = sims.argmax(axis=1)
            top = sims[np.arange(len(col)), col]
            better = top > best
            best[better], best_at[better] = top[better], kept_index[c + col[better]]
        inside = rows @ rows.T
        for r in range(rows.shape[0]):
            if best[r] >= threshold:
                matches[start + r] = (int(best_at[r]), float(best[r]))
                continue
            kept[n_kept], kept_index[n_kept] = rows[r], start + r
            n_kept += 1
            later = inside[r, r + 1 :]
            better = later > best[r + 1 :]
            best[r + 1 :][better] = later[better]
            best_at[r + 1 :][better] = start + r
    return matches
