"""Vendi score on inputs with known answers, distinct-n, and the coverage tables."""

from __future__ import annotations

import numpy as np
import pytest
from rich.console import Console

from ise.diversity import cell_coverage, coverage_table, distinct_n, facet_coverage, vendi_score


def test_identical_items_count_once() -> None:
    assert vendi_score(np.tile([0.3, -1.2, 2.0, 0.5], (50, 1))) == pytest.approx(1.0)
    assert vendi_score(np.tile([1.0, 2.0], (5000, 1))) == pytest.approx(1.0)  # dual form (n > d)


@pytest.mark.parametrize("n", [1, 5, 32])
def test_orthogonal_items_count_n_times(n: int) -> None:
    assert vendi_score(np.eye(n, 64)) == pytest.approx(n)
    assert vendi_score(np.eye(n) * 7.0, method="dual") == pytest.approx(n)  # norms do not matter


def test_two_tight_clusters_count_about_two() -> None:
    rng = np.random.default_rng(1)
    a = np.array([1.0, 0, 0, 0]) + 0.01 * rng.normal(size=(100, 4))
    b = np.array([0, 1.0, 0, 0]) + 0.01 * rng.normal(size=(100, 4))
    assert vendi_score(np.vstack([a, b])) == pytest.approx(2.0, abs=0.05)


@pytest.mark.parametrize(("n", "d"), [(40, 8), (8, 40), (300, 16)])
def test_dual_form_equals_kernel_form(n: int, d: int) -> None:
    x = np.random.default_rng(n + d).normal(size=(n, d))
    assert vendi_score(x, method="dual") == pytest.approx(vendi_score(x, method="kernel"), rel=1e-9)


def test_vendi_of_empty_pool_is_zero() -> None:
    assert vendi_score(np.zeros((0, 8))) == 0.0


def test_distinct_n() -> None:
    assert distinct_n(["a b a b"], 1) == pytest.approx(2 / 4)
    assert distinct_n(["a b a b"], 2) == pytest.approx(2 / 3)
    assert distinct_n(["A b.", "a B"], 2) == pytest.approx(1 / 2)  # case and punctuation ignored
    assert distinct_n(["one"], 3) == 0.0
    assert distinct_n([], 1) == 0.0


def test_coverage_counts_every_cell_and_facet_value() -> None:
    sampled = [("files", "simple"), ("files", "complex"), ("logs", "complex"), ("logs", "complex")]
    kept = [("files", "simple"), ("logs", "complex")]
    cells = cell_coverage(["files", "logs"], ["simple", "complex"], sampled, kept)
    table = {(c.domain, c.complexity): (c.kept, c.sampled) for c in cells}
    assert table == {
        ("files", "simple"): (1, 1),
        ("files", "complex"): (0, 1),
        ("logs", "simple"): (0, 0),
        ("logs", "complex"): (1, 2),
    }
    facet = facet_coverage(["terse", "chatty", "formal"], ["terse", "terse", "formal"])
    assert (facet.values, facet.covered) == (3, 2)
    assert facet.counts == {"terse": 2, "chatty": 0, "formal": 1}

    console = Console(record=True, width=100)
    console.print(coverage_table(cells, ["simple", "complex"]))
    text = console.export_text()
    assert "logs" in text
    assert "1/2" in text
