"""ise's verified seed library: hand-written plans over the taxonomy's domains, shipped with the package.

Each `ise/seeds/<domain>.yaml` holds a `seeds` list in a compact form (`Seed` below): the intent's facets, the
request, the fixtures, the user card and the milestones, each milestone carrying its own checks and reference
solution. It is expanded into a full Plan: id and intent id `seed/<name>`, origin (suite "seeds", the name, the
domain, the file), budgets from the complexity (the rule simulate uses), and every check named by exactly one
milestone. The seeds are the built-in eval set (`ise eval --tasks seeds`), worked examples for the plan writer
(`seed_examples`) and extra plans `simulate.seeds` adds to a run; tests/test_seeds.py proves every one in a real
sandbox. A seed file that does not read is one InputError naming the file, the line and the seed.

Conventions (as in bench/data/verifiable_tasks.yaml): a milestone's solution runs as the agent (root under admin)
in a persistent shell, so it uses absolute paths, never `exit` or `set -e`, keeps stderr quiet, and prints its
answer on stdout when the milestone asks a question.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError

from ise.config import SimulateConfig
from ise.errors import InputError
from ise.plan_static import static_problems
from ise.records import (
    Check,
    Complexity,
    DirFixture,
    FileFixture,
    Fixtures,
    HiddenFact,
    Intent,
    Milestone,
    Origin,
    Persona,
    Perturbation,
    Plan,
    Profile,
    Record,
    UserCard,
)
from ise.stages.plan_drafts import budgets_for
from ise.tasks import SEEDS, TaskSet

SEED_DIR = Path(__file__).resolve().parent
ALL = "all"
"""The domain list that means every seed file."""


class SeedMilestone(Record):
    ask: str
    """What the user asks at this step (one line, their own words)."""
    checks: list[Check] = Field(min_length=1)
    """The checks that prove this milestone."""
    solution: str
    """The reference shell for this milestone; what it prints is the reference answer."""


class Seed(Record):
    """One hand-written task in the compact form of the seed files."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    persona: Persona
    tasks: list[str] = Field(min_length=1)
    """Taxonomy task template ids (configs/taxonomy/tasks.yaml)."""
    tools: list[str] = Field(min_length=1)
    complexity: Complexity
    profile: Profile = "user"
    request: str
    deliverable: str
    workspace: list[str] = Field(min_length=1)
    files: list[FileFixture] = Field(default_factory=list)
    dirs: list[DirFixture] = Field(default_factory=list)
    setup: str | None = None
    """Run as root after files and dirs are in place; must exit 0."""
    voice: str
    """The user simulator's persona: voice and manner."""
    goal: str
    facts: list[HiddenFact] = Field(default_factory=list)
    milestones: list[SeedMilestone] = Field(min_length=1, max_length=3)
    perturbations: list[Perturbation] = Field(default_factory=list)
    watch: list[str] = Field(default_factory=list)


def plan_of(seed: Seed, domain: str, path: str) -> Plan:
    """The full Plan a seed stands for."""
    seed_id = f"seed/{seed.name}"
    intent = Intent(
        id=seed_id,
        persona=seed.persona,
        domain=domain,
        tasks=seed.tasks,
        tools=seed.tools,
        complexity=seed.complexity,
        expected_turns=len(seed.milestones),
        request=seed.request,
        deliverable=seed.deliverable,
        workspace=seed.workspace,
        model="hand-written",
    )
    milestones = [
        Milestone(id=f"m{i}", ask=m.ask, checks=[c.id for c in m.checks]) for i, m in enumerate(seed.milestones, 1)
    ]
    return Plan(
        id=seed_id,
        intent=intent,
        fixtures=Fixtures(files=seed.files, dirs=seed.dirs, setup_script=seed.setup),
        user=UserCard(persona=seed.voice, goal=seed.goal, milestones=milestones, hidden_facts=seed.facts),
        perturbations=seed.perturbations,
        checks=[check for m in seed.milestones for check in m.checks],
        budgets=budgets_for(seed.complexity, len(milestones), SimulateConfig()),
        solution=[m.solution for m in seed.milestones],
        profile=seed.profile,
        watch=seed.watch,
        model="hand-written",
        origin=Origin(suite=SEEDS, task_id=seed.name, category=domain, path=path),
    )


def domains() -> list[str]:
    """The domains that have a seed file, sorted."""
    return sorted(path.stem for path in SEED_DIR.glob("*.yaml"))


@functools.cache
def _load_domain(domain: str) -> tuple[Plan, ...]:
    path = SEED_DIR / f"{domain}.yaml"
    shown = f"ise/seeds/{path.name}"
    text = path.read_text(encoding="utf-8")
    try:
        data: Any = yaml.safe_load(text)
        lines = _seed_lines(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise InputError(f"{shown}{where}: not YAML: {getattr(exc, 'problem', None) or exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("seeds"), list):
        raise InputError(f"{shown}: expected a mapping with a `seeds` list")
    if extra := [str(k) for k in data if k != "seeds" and not str(k).startswith("x-")]:
        raise InputError(f"{shown}: unknown top-level key {extra[0]!r} (only `seeds`, and `x-*` for anchors)")
    plans = [_read_seed(raw, domain, shown, line) for raw, line in zip(data["seeds"], lines, strict=True)]
    _check_unique(plans, shown)
    return tuple(plans)


def _read_seed(raw: Any, domain: str, shown: str, line: int) -> Plan:
    name = raw.get("name", "?") if isinstance(raw, dict) else "?"
    where = f"{shown}:{line}: seed {name}"
    try:
        plan = plan_of(Seed.model_validate(raw), domain, shown)
    except ValidationError as exc:
        raise InputError(f"{where}: {_first_error(exc)}") from None
    if problems := static_problems(plan, SimulateConfig()):
        raise InputError(f"{where}: {problems[0]}")
    return plan


def _seed_lines(text: str) -> list[int]:
    """The 1-based line each item of the top-level `seeds` list starts on."""
    root = yaml.compose(text)
    if isinstance(root, yaml.MappingNode):
        for key, value in root.value:
            if key.value == "seeds" and isinstance(value, yaml.SequenceNode):
                return [item.start_mark.line + 1 for item in value.value]
    return []


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"])
    return f"{where}: {error['msg']}" if where else str(error["msg"])


def _check_unique(plans: list[Plan], shown: str) -> None:
    seen: set[str] = set()
    for plan in plans:
        if plan.id in seen:
            raise InputError(f"{shown}: seed {plan.id.removeprefix('seed/')} is defined twice")
        seen.add(plan.id)


def load_seeds(wanted: list[str] | None = None) -> list[Plan]:
    """The seeds of these domains, or single seeds by id (`seed/<name>`); every seed when None, empty or ["all"].
    An unknown domain or seed is an InputError that lists the known domains."""
    known = domains()
    if not wanted or ALL in wanted:
        return [plan for domain in known for plan in _load_domain(domain)]
    every = {plan.id: plan for domain in known for plan in _load_domain(domain)}
    chosen: dict[str, Plan] = {}
    for item in dict.fromkeys(wanted):
        if item in every:
            chosen[item] = every[item]
        elif item in known:
            chosen.update((plan.id, plan) for plan in _load_domain(item))
        else:
            raise InputError(f"unknown seed domain or seed {item!r}; known domains: {', '.join(known)}")
    return list(chosen.values())


def load_seed_tasks(wanted: list[str]) -> TaskSet:
    """The seeds as a task source (`--tasks seeds[:domain,...]`)."""
    return TaskSet(suite=SEEDS, plans=load_seeds(wanted))


def seed_examples(domain: str, tasks: list[str], limit: int) -> list[Plan]:
    """The `limit` seeds closest to an intent: same domain first, then the most task templates in common, then
    the most templates of the intent's domain (ties by id, so the choice is stable)."""
    wanted = set(tasks)

    def distance(plan: Plan) -> tuple[bool, int, int, str]:
        same_family = sum(t.split(".")[0] == domain for t in plan.intent.tasks)
        return plan.intent.domain != domain, -len(wanted & set(plan.intent.tasks)), -same_family, plan.id

    return sorted(load_seeds(), key=distance)[: max(limit, 0)]
