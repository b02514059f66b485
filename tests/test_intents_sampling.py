"""Sampling of the 4D matrix: deterministic, stratified over (domain x complexity), well-formed cells."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from ise.errors import InputError
from ise.sampling import cell_id, largest_remainder, sample_cells
from ise.taxonomy import Taxonomy, load_taxonomy

PRIORS = {"simple": 0.1, "medium": 0.4, "complex": 0.5}


@pytest.fixture(scope="module")
def taxonomy() -> Taxonomy:
    return load_taxonomy(Path(__file__).resolve().parents[1] / "configs" / "taxonomy")


def test_largest_remainder_is_exact_and_proportional() -> None:
    assert largest_remainder(20, PRIORS) == {"simple": 2, "medium": 8, "complex": 10}
    assert largest_remainder(7, PRIORS) == {"simple": 1, "medium": 3, "complex": 3}  # 0.7, 2.8, 3.5
    assert largest_remainder(3, {"a": 1, "b": 1, "c": 1}) == {"a": 1, "b": 1, "c": 1}
    assert sum(largest_remainder(101, {"x": 0.33, "y": 0.33, "z": 0.34}).values()) == 101


def test_same_seed_same_cells_different_seed_different_cells(taxonomy: Taxonomy) -> None:
    first = sample_cells(taxonomy, 60, PRIORS, seed=3)
    again = sample_cells(taxonomy, 60, PRIORS, seed=3)
    other = sample_cells(taxonomy, 60, PRIORS, seed=4)
    assert [c.model_dump() for c in first] == [c.model_dump() for c in again]
    assert {c.id for c in first}.isdisjoint({c.id for c in other})


def test_ids_are_unique_and_derived_from_tuple_and_seed(taxonomy: Taxonomy) -> None:
    cells = sample_cells(taxonomy, 500, PRIORS, seed=0)
    assert len({cell.id for cell in cells}) == 500
    for cell in cells[:20]:
        assert cell.id == cell_id(cell.seed, cell.persona, cell.domain, cell.tasks, cell.complexity)


def test_every_domain_complexity_cell_gets_its_share(taxonomy: Taxonomy) -> None:
    n = 600
    cells = sample_cells(taxonomy, n, PRIORS, seed=11)
    per_level = Counter(cell.complexity for cell in cells)
    assert per_level == {"simple": 60, "medium": 240, "complex": 300}
    per_cell = Counter((cell.domain, cell.complexity) for cell in cells)
    domains = len(taxonomy.domains)
    for domain in taxonomy.domains:
        for level, quota in per_level.items():
            share = quota / domains
            assert int(share) <= per_cell[(domain.id, level)] <= int(share) + 1, (domain.id, level)
    per_domain = Counter(cell.domain for cell in cells)
    assert max(per_domain.values()) - min(per_domain.values()) <= 1


def test_small_runs_spread_over_domains(taxonomy: Taxonomy) -> None:
    cells = sample_cells(taxonomy, 20, PRIORS, seed=7)
    assert Counter(cell.complexity for cell in cells) == {"simple": 2, "medium": 8, "complex": 10}
    per_domain = Counter(cell.domain for cell in cells)
    assert len(per_domain) == len(taxonomy.domains)  # 20 cells over 12 domains: every domain at least once
    assert max(per_domain.values()) - min(per_domain.values()) <= 1


def test_task_combinations_follow_the_complexity_level(taxonomy: Taxonomy) -> None:
    cells = sample_cells(taxonomy, 400, PRIORS, seed=5)
    cross = 0
    for cell in cells:
        low, high = taxonomy.levels[cell.complexity].tasks
        assert low <= len(cell.tasks) <= high
        assert len(set(cell.tasks)) == len(cell.tasks)
        turns_low, turns_high = taxonomy.levels[cell.complexity].user_turns
        assert turns_low <= cell.expected_turns <= turns_high
        foreign = [t for t in cell.tasks if taxonomy.task(t).domain != cell.domain]
        assert len(foreign) <= (1 if cell.complexity == "complex" else 0)
        assert taxonomy.task(cell.tasks[0]).domain == cell.domain
        cross += bool(foreign)
    complex_count = sum(cell.complexity == "complex" for cell in cells)
    assert 0.15 * complex_count < cross < 0.45 * complex_count  # cross_domain is 0.3


def test_personas_cover_every_facet_value(taxonomy: Taxonomy) -> None:
    cells = sample_cells(taxonomy, 52, PRIORS, seed=1)
    roles = Counter(cell.persona.role for cell in cells)
    assert set(roles) == {role.name for role in taxonomy.personas.roles}  # dealt from a deck: 2 rounds of 26
    assert set(roles.values()) == {2}
    assert {cell.persona.style for cell in cells} == {s.name for s in taxonomy.personas.styles}
    assert len({cell.persona.model_dump_json() for cell in cells}) >= 45


def test_unknown_complexity_prior_is_an_input_error(taxonomy: Taxonomy) -> None:
    with pytest.raises(InputError, match="unknown level 'epic'"):
        sample_cells(taxonomy, 10, {"simple": 1, "epic": 1}, seed=0)
    with pytest.raises(InputError, match="positive sum"):
        sample_cells(taxonomy, 10, {"simple": 0}, seed=0)


def test_domain_selection_samples_only_those_domains_and_their_tasks(taxonomy: Taxonomy) -> None:
    chosen = taxonomy.restricted(["data", "logs"])
    cells = sample_cells(chosen, 40, PRIORS, seed=3)
    assert Counter(cell.domain for cell in cells) == {"data": 20, "logs": 20}
    assert {task.split(".")[0] for cell in cells for task in cell.tasks} == {"data", "logs"}
    assert taxonomy.restricted([]) is taxonomy
    with pytest.raises(InputError, match=r"intents\.domains: unknown domain 'cooking'"):
        taxonomy.restricted(["data", "cooking"])
