"""The intent taxonomy: persona facets, domains, task templates and complexity levels, loaded from YAML.

A directory holds four files (personas.yaml, domains.yaml, tasks.yaml, complexity.yaml). Every problem is
reported as one InputError that names the file and the key, before any work starts.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import Field, ValidationError, model_validator

from ise.errors import InputError
from ise.records import Complexity, Record

M = TypeVar("M", bound=Record)


class Facet(Record):
    """One value of a persona facet, with a hint the model uses to write in that voice."""

    name: str = Field(min_length=1)
    hint: str = ""


class PersonaFacets(Record):
    roles: list[Facet] = Field(min_length=1)
    industries: list[str] = Field(min_length=1)
    experience: list[Facet] = Field(min_length=1)
    styles: list[Facet] = Field(min_length=1)

    @property
    def combinations(self) -> int:
        return len(self.roles) * len(self.industries) * len(self.experience) * len(self.styles)


class Domain(Record):
    id: str = Field(min_length=1)
    name: str
    description: str


class DomainsFile(Record):
    domains: list[Domain] = Field(min_length=1)


class TaskEntry(Record):
    """A task template as written in tasks.yaml, under its domain."""

    id: str = Field(min_length=1)
    summary: str = Field(min_length=1)
    tools: list[str] = Field(min_length=1)
    requires: list[str] = Field(min_length=1)
    """Terms a request for this task must mention; `a|b` accepts either."""


class Task(Record):
    id: str
    """`<domain>.<entry id>`, unique across the taxonomy."""
    domain: str
    summary: str
    tools: list[str]
    requires: list[str]


class Level(Record):
    description: str
    tasks: tuple[int, int]
    """Fewest and most tasks combined in one intent."""
    user_turns: tuple[int, int]
    """Fewest and most user turns expected."""

    @model_validator(mode="after")
    def _ranges(self) -> Level:
        for name, (low, high) in (("tasks", self.tasks), ("user_turns", self.user_turns)):
            if not 1 <= low <= high:
                raise ValueError(f"{name} must be [low, high] with 1 <= low <= high")
        return self


class ComplexityFile(Record):
    levels: dict[Complexity, Level]
    cross_domain: float = Field(default=0.0, ge=0.0, le=1.0)
    """Chance that a complex intent swaps one of its tasks for a task from another domain."""


class Taxonomy(Record):
    personas: PersonaFacets
    domains: list[Domain]
    tasks: list[Task]
    levels: dict[Complexity, Level]
    cross_domain: float

    def task(self, task_id: str) -> Task:
        return self._tasks_by_id()[task_id]

    def tasks_in(self, domain: str) -> list[Task]:
        return [task for task in self.tasks if task.domain == domain]

    def facet(self, kind: str, name: str) -> Facet:
        """The role, experience or style facet called `name` (for its hint)."""
        values: list[Facet] = getattr(self.personas, {"role": "roles", "style": "styles"}.get(kind, kind))
        return next(value for value in values if value.name == name)

    def restricted(self, domain_ids: Sequence[str]) -> Taxonomy:
        """Only these domains and their tasks (all of them when none are named)."""
        if not domain_ids:
            return self
        known = [domain.id for domain in self.domains]
        unknown = [name for name in domain_ids if name not in known]
        if unknown:
            raise InputError(f"config: intents.domains: unknown domain '{unknown[0]}' (known: {', '.join(known)})")
        domains = [domain for domain in self.domains if domain.id in domain_ids]
        tasks = [task for task in self.tasks if task.domain in domain_ids]
        return self.model_copy(update={"domains": domains, "tasks": tasks})

    def _tasks_by_id(self) -> dict[str, Task]:
        return {task.id: task for task in self.tasks}


FILES = ("personas.yaml", "domains.yaml", "tasks.yaml", "complexity.yaml")


def load_taxonomy(directory: Path) -> Taxonomy:
    """Read and cross-check the four taxonomy files in `directory`."""
    if not directory.is_dir():
        raise InputError(f"taxonomy directory {directory} does not exist")
    personas = _parse(directory / "personas.yaml", PersonaFacets)
    domains = _parse(directory / "domains.yaml", DomainsFile).domains
    complexity = _parse(directory / "complexity.yaml", ComplexityFile)
    tasks = _tasks(directory / "tasks.yaml", domains)
    _check_unique(directory / "domains.yaml", "domains", [d.id for d in domains])
    _check_levels(directory, complexity, tasks, domains)
    return Taxonomy(
        personas=personas, domains=domains, tasks=tasks, levels=complexity.levels, cross_domain=complexity.cross_domain
    )


def _tasks(path: Path, domains: list[Domain]) -> list[Task]:
    data = _read(path)
    known = {domain.id for domain in domains}
    tasks: list[Task] = []
    for domain, entries in data.items():
        if domain not in known:
            raise InputError(f"{path}: key '{domain}': unknown domain (domains.yaml has {', '.join(sorted(known))})")
        if not isinstance(entries, list):
            raise InputError(f"{path}: key '{domain}': expected a list of tasks")
        for index, entry in enumerate(entries):
            task = _validate(path, entry, TaskEntry, prefix=f"{domain}.{index}")
            tasks.append(Task(id=f"{domain}.{task.id}", domain=domain, **task.model_dump(exclude={"id"})))
    _check_unique(path, "task", [task.id for task in tasks])
    return tasks


def _check_levels(directory: Path, complexity: ComplexityFile, tasks: list[Task], domains: list[Domain]) -> None:
    path = directory / "complexity.yaml"
    missing = {"simple", "medium", "complex"} - set(complexity.levels)
    if missing:
        raise InputError(f"{path}: levels: missing {', '.join(sorted(missing))}")
    most = max(level.tasks[1] for level in complexity.levels.values())
    for domain in domains:
        count = sum(task.domain == domain.id for task in tasks)
        if count < most:
            raise InputError(
                f"{directory / 'tasks.yaml'}: domain '{domain.id}' has {count} tasks; complexity levels need {most}"
            )


def _check_unique(path: Path, what: str, ids: list[str]) -> None:
    seen: set[str] = set()
    for item in ids:
        if item in seen:
            raise InputError(f"{path}: duplicate {what} id '{item}'")
        seen.add(item)


def _parse(path: Path, model: type[M]) -> M:
    return _validate(path, _read(path), model)


def _validate(path: Path, data: Any, model: type[M], prefix: str = "") -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(part) for part in (prefix, *first["loc"]) if part != "")
        message = "unknown key" if first["type"] == "extra_forbidden" else first["msg"]
        raise InputError(f"{path}: key '{key or '(top level)'}': {message}") from None


def _read(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"cannot read taxonomy file {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"taxonomy file {path} is not UTF-8 text (byte {exc.start + 1}): is it a YAML file?") from None
    except yaml.YAMLError as exc:
        raise InputError(f"taxonomy file {path} is not valid YAML: {' '.join(str(exc).split())}") from None
    except RecursionError:
        raise InputError(f"taxonomy file {path} is not valid YAML: nested too deeply") from None
    except ValueError as exc:  # PyYAML's resolvers raise it for some malformed scalars (e.g. `0x_`)
        raise InputError(f"taxonomy file {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise InputError(f"taxonomy file {path} must be a mapping at the top level")
    return data
