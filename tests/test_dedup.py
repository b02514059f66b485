"""Dedup: exact and near-verbatim copies, semantic paraphrases with real MiniLM embeddings, and the calibration of
the default thresholds on labelled intent pairs (tests/data/intent_pairs.yaml)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import yaml
from numpy.typing import NDArray

from ise.dedup import deduplicate, exact_duplicates, jaccard, near_duplicates, semantic_duplicates, shingles
from ise.embeddings import Embedder, HashingEmbedder, MiniLMEmbedder, build_embedder

PAIRS = yaml.safe_load((Path(__file__).parent / "data" / "intent_pairs.yaml").read_text())


@pytest.fixture(scope="module")
def minilm() -> MiniLMEmbedder:
    return MiniLMEmbedder()


def pair_scores(embedder: Embedder, label: str) -> NDArray[np.float32]:
    pairs = PAIRS[label]
    left = embedder.embed([a for a, _ in pairs])
    right = embedder.embed([b for _, b in pairs])
    return np.sum(left * right, axis=1)


def accuracy(duplicate: NDArray[np.float32], distinct: NDArray[np.float32], threshold: float) -> float:
    right = np.sum(duplicate >= threshold) + np.sum(distinct < threshold)
    return float(right / (len(duplicate) + len(distinct)))


def test_labelled_pairs_are_enough_to_calibrate() -> None:
    assert len(PAIRS["duplicate"]) >= 20
    assert len(PAIRS["distinct"]) >= 20
    assert all(len(pair) == 2 and all(isinstance(text, str) for text in pair) for pair in PAIRS["duplicate"])


@pytest.mark.parametrize("name", ["all-MiniLM-L6-v2", "hashing"])
def test_default_threshold_is_calibrated(name: str, minilm: MiniLMEmbedder) -> None:
    """The default removes no distinct intent, and no threshold on a fine grid classifies the pairs better."""
    embedder: Embedder = minilm if name == "all-MiniLM-L6-v2" else HashingEmbedder()
    duplicate, distinct = pair_scores(embedder, "duplicate"), pair_scores(embedder, "distinct")
    default = embedder.default_threshold
    assert np.max(distinct) < default, "a distinct pair would be removed"
    best = max(accuracy(duplicate, distinct, t) for t in np.arange(0.3, 0.99, 0.01))
    if name == "all-MiniLM-L6-v2":
        assert accuracy(duplicate, distinct, default) == pytest.approx(best)
        assert np.mean(duplicate >= default) >= 0.9
        assert np.max(distinct) <= default - 0.02  # a margin, not a knife edge
    else:  # the fallback trades recall for never removing a distinct intent
        assert np.mean(duplicate >= default) >= 0.5
    # 0.9, a common default, would miss most paraphrases of intents: the reason for calibrating at all
    assert np.mean(duplicate >= 0.9) < 0.5


def test_pool_dedup_removes_paraphrases_and_keeps_distinct_intents(minilm: MiniLMEmbedder) -> None:
    originals = list(dict.fromkeys(a for a, _ in PAIRS["duplicate"]))  # a few originals have two paraphrases
    paraphrases = [(b, originals.index(a)) for a, b in PAIRS["duplicate"]]
    # the first text of a distinct pair restates an original's job; the second is the different job
    distinct = list(dict.fromkeys(b for _, b in PAIRS["distinct"]))
    texts = originals + distinct + [text for text, _ in paraphrases]
    ids = [f"o{i}" for i in range(len(originals))] + [f"d{i}" for i in range(len(distinct))]
    ids += [f"p{i}" for i in range(len(paraphrases))]
    result = deduplicate(ids, texts, minilm.embed, threshold=minilm.default_threshold)
    kept = {ids[i] for i in result.kept}
    assert {f"o{i}" for i in range(len(originals))} <= kept  # first occurrences stay
    removed = {d.id: d for d in result.duplicates}
    assert sum(f"p{i}" in removed for i in range(len(paraphrases))) >= 0.9 * len(paraphrases)
    for i, (_, original) in enumerate(paraphrases):
        if f"p{i}" in removed:
            assert removed[f"p{i}"].duplicate_of == f"o{original}"
            assert removed[f"p{i}"].method == "semantic"
            assert removed[f"p{i}"].score >= minilm.default_threshold
    assert {f"d{i}" for i in range(len(distinct))} <= kept
    assert result.embeddings.shape == (len(result.kept), 384)


def test_exact_duplicates_ignore_case_spacing_and_punctuation() -> None:
    texts = ["Delete the .tmp files in /data!", "delete the TMP files in /data", "Delete the .log files in /data"]
    assert exact_duplicates(texts) == {1: (0, 1.0)}
    embedder = HashingEmbedder()
    result = deduplicate(["a", "b", "c"], texts, embedder.embed, threshold=0.99)
    assert [d.model_dump(include={"id", "duplicate_of", "method"}) for d in result.duplicates] == [
        {"id": "b", "duplicate_of": "a", "method": "exact"}
    ]


def test_near_duplicates_by_shingle_jaccard() -> None:
    base = (
        "Please go through /var/log/nginx/access.log from last week, count the 404 and 500 responses per day, "
        "and write the daily totals to ~/reports/errors_by_day.csv with a header row."
    )
    one_word = base.replace("last week", "this week")
    other = "Rename every .jpeg photo in ~/pictures/2023 to .jpg and keep the rest of each file name unchanged."
    matches = near_duplicates([base, other, one_word], threshold=0.8)
    assert list(matches) == [2]
    assert matches[2][0] == 0
    assert 0.8 <= matches[2][1] < 1.0
    assert shingles("abc").size == 1  # shorter than one shingle: still a comparable set


def test_lsh_pass_agrees_with_brute_force_jaccard() -> None:
    rng = random.Random(3)
    words = [
        "copy",
        "move",
        "the",
        "logs",
        "reports",
        "from",
        "to",
        "every",
        "day",
        "week",
        "old",
        "new",
        "files",
        "folder",
        "backup",
        "keep",
    ]
    texts: list[str] = []
    for i in range(400):
        if texts and rng.random() < 0.2:  # a near copy: one word changed in an earlier text
            parts = rng.choice(texts).split()
            parts[rng.randrange(len(parts))] = rng.choice(words)
            texts.append(" ".join(parts))
        else:
            texts.append(" ".join(rng.choices(words, k=20)) + f" in /data/{i}")
    codes = [shingles(text) for text in texts]
    expected: dict[int, int] = {}
    kept: list[int] = []
    for i in range(len(texts)):
        scores = [(jaccard(codes[i], codes[j]), j) for j in kept]
        best = max(scores, default=(0.0, -1))
        if best[0] >= 0.8:
            expected[i] = best[1]
        else:
            kept.append(i)
    got = near_duplicates(texts, 0.8)
    assert len(expected) > 40
    for i, (j, score) in got.items():  # every match is real: confirmed by the exact Jaccard
        assert j < i
        assert score == pytest.approx(jaccard(codes[i], codes[j]))
        assert score >= 0.8
    # MinHash is probabilistic: a true pair at J ~ 0.8 is missed with probability ~0.2%
    assert len(got.keys() & expected.keys()) >= 0.97 * len(expected)


def naive_greedy(vectors: NDArray[np.float32], threshold: float) -> dict[int, tuple[int, float]]:
    x = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    kept: list[int] = []
    matches: dict[int, tuple[int, float]] = {}
    for i in range(len(x)):
        if kept:
            sims = x[kept] @ x[i]
            j = int(np.argmax(sims))
            if sims[j] >= threshold:
                matches[i] = (kept[j], float(sims[j]))
                continue
        kept.append(i)
    return matches


def test_blocked_semantic_scan_equals_the_naive_greedy_scan() -> None:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(40, 24))
    vectors = (centres[rng.integers(0, 40, size=1500)] + 0.35 * rng.normal(size=(1500, 24))).astype(np.float32)
    expected = naive_greedy(vectors, 0.85)
    got = semantic_duplicates(vectors, 0.85, block=97, chunk=113)  # odd sizes: cross block and chunk edges
    assert 300 < len(expected) < 1400
    assert got.keys() == expected.keys()
    for i, (j, score) in expected.items():
        assert got[i][0] == j
        assert got[i][1] == pytest.approx(score, abs=1e-5)


def test_semantic_scan_compares_with_kept_items_only() -> None:
    """a~b and b~c but not a~c: b goes (duplicate of a), and c stays because b, its only match, was removed."""
    a = np.array([1.0, 0.0])
    b = np.array([np.cos(0.5), np.sin(0.5)])
    c = np.array([np.cos(1.0), np.sin(1.0)])
    matches = semantic_duplicates(np.stack([a, b, c]).astype(np.float32), threshold=np.cos(0.6))
    assert list(matches) == [1]
    assert matches[1][0] == 0


class CountingEmbedder:
    name = "counting"
    default_threshold = 0.9

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.inner = HashingEmbedder()

    def embed(self, texts: Sequence[str]) -> NDArray[np.float32]:
        self.seen += texts
        return self.inner.embed(texts)


def test_only_survivors_of_the_text_passes_are_embedded() -> None:
    texts = ["Back up /etc/nginx to /backups now.", "back up /etc/nginx to /backups now", "Count words in a.txt."]
    embedder = CountingEmbedder()
    result = deduplicate(["x", "y", "z"], texts, embedder.embed, threshold=0.99)
    assert embedder.seen == [texts[0], texts[2]]
    assert result.kept == [0, 2]
    assert result.removed == {"exact": 1, "near": 0, "semantic": 0}


def test_hashing_embedder_is_deterministic_and_normalised() -> None:
    embedder = build_embedder("hashing")
    first = embedder.embed(["Sort names.txt", "Sort names.txt", ""])
    assert np.allclose(first[0], first[1])
    assert np.allclose(np.linalg.norm(first[:2], axis=1), 1.0)
    assert not first[2].any()
    assert np.array_equal(first, HashingEmbedder().embed(["Sort names.txt", "Sort names.txt", ""]))
