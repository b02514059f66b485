"""Seeded, stratified sampling of the 4D intent matrix: persona x domain x task combination x complexity.

Allocation: each complexity level gets its share of `count` by largest remainder over the priors; within a level
the slots go round-robin over a seeded shuffle of the domains, continuing across levels, so every
(domain x complexity) cell gets floor or ceil of its proportional share and domain totals differ by at most one.
Persona facets are dealt from shuffled decks (uniform, but every value appears before any repeats). The same
seed, count and taxonomy give the same cells with the same ids, which is what makes reruns resumable.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections.abc import Mapping, Sequence
from typing import Generic, TypeVar

from ise.errors import InputError, IseError
from ise.records import Complexity, Persona, Record
from ise.taxonomy import Taxonomy

T = TypeVar("T")

LEVELS: tuple[Complexity, ...] = ("simple", "medium", "complex")


class IntentCell(Record):
    """One sampled point of the matrix: the input record of the intents stage."""

    id: str
    seed: int
    persona: Persona
    domain: str
    tasks: list[str]
    """Task ids; all from `domain` except at most one cross-domain task for complex intents."""
    complexity: Complexity
    expected_turns: int


def largest_remainder(total: int, weights: Mapping[str, float]) -> dict[str, int]:
    """Split `total` in proportion to `weights`; leftover units go to the largest fractional parts."""
    scale = sum(weights.values())
    exact = {key: total * weight / scale for key, weight in weights.items()}
    shares = {key: math.floor(value) for key, value in exact.items()}
    leftover = total - sum(shares.values())
    by_remainder = sorted(exact, key=lambda key: exact[key] - shares[key], reverse=True)
    for key in by_remainder[:leftover]:
        shares[key] += 1
    return shares


def sample_cells(taxonomy: Taxonomy, count: int, priors: Mapping[str, float], seed: int) -> list[IntentCell]:
    """`count` distinct cells, stratified over (domain x complexity), in a seeded interleaved order."""
    check_priors(priors)
    rng = random.Random(seed)
    quotas = largest_remainder(count, {level: priors.get(level, 0.0) for level in LEVELS})
    domains = [domain.id for domain in taxonomy.domains]
    rng.shuffle(domains)
    decks = _PersonaDecks(taxonomy, rng)
    cells: list[IntentCell] = []
    seen: set[str] = set()
    slot = 0
    for level in LEVELS:
        for _ in range(quotas[level]):
            domain = domains[slot % len(domains)]
            slot += 1
            cells.append(_draw(taxonomy, domain, level, seed, rng, decks, seen))
    rng.shuffle(cells)  # interleave, so a partial run is already a stratified sample
    return cells


def cell_id(seed: int, persona: Persona, domain: str, tasks: Sequence[str], complexity: str) -> str:
    """A stable hash of the sampled tuple and the seed."""
    key = json.dumps([seed, persona.model_dump(), domain, list(tasks), complexity], sort_keys=True)
    return "int-" + hashlib.sha256(key.encode()).hexdigest()[:16]


def _draw(
    taxonomy: Taxonomy,
    domain: str,
    level: Complexity,
    seed: int,
    rng: random.Random,
    decks: _PersonaDecks,
    seen: set[str],
) -> IntentCell:
    spec = taxonomy.levels[level]
    own = [task.id for task in taxonomy.tasks_in(domain)]
    others = [task.id for task in taxonomy.tasks if task.domain != domain]
    for _ in range(1000):  # a repeat of an already drawn tuple is redrawn
        persona = decks.deal()
        tasks = rng.sample(own, rng.randint(*spec.tasks))
        if level == "complex" and len(tasks) > 1 and others and rng.random() < taxonomy.cross_domain:
            tasks[-1] = rng.choice(others)
        new_id = cell_id(seed, persona, domain, tasks, level)
        if new_id not in seen:
            seen.add(new_id)
            turns = rng.randint(*spec.user_turns)
            return IntentCell(
                id=new_id,
                seed=seed,
                persona=persona,
                domain=domain,
                tasks=tasks,
                complexity=level,
                expected_turns=turns,
            )
    raise IseError(f"cannot draw another distinct {level} intent for domain '{domain}': the taxonomy is too small")


def check_priors(priors: Mapping[str, float]) -> None:
    unknown = set(priors) - set(LEVELS)
    if unknown:
        raise InputError(f"config: intents.complexity_priors: unknown level '{sorted(unknown)[0]}'")
    if any(value < 0 for value in priors.values()) or sum(priors.values()) <= 0:
        raise InputError("config: intents.complexity_priors: weights must be >= 0 with a positive sum")


class _Deck(Generic[T]):
    """Deals values in seeded shuffled rounds: uniform per draw, and no value repeats before all have appeared."""

    def __init__(self, values: Sequence[T], rng: random.Random) -> None:
        self._values = list(values)
        self._rng = rng
        self._pile: list[T] = []

    def deal(self) -> T:
        if not self._pile:
            self._pile = self._values[:]
            self._rng.shuffle(self._pile)
        return self._pile.pop()


class _PersonaDecks:
    def __init__(self, taxonomy: Taxonomy, rng: random.Random) -> None:
        facets = taxonomy.personas
        self.roles = _Deck([f.name for f in facets.roles], rng)
        self.industries = _Deck(facets.industries, rng)
        self.experience = _Deck([f.name for f in facets.experience], rng)
        self.styles = _Deck([f.name for f in facets.styles], rng)

    def deal(self) -> Persona:
        return Persona(
            role=self.roles.deal(),
            industry=self.industries.deal(),
            experience=self.experience.deal(),
            style=self.styles.deal(),
        )
