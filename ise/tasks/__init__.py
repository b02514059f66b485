"""Task sources and sinks: the field's task formats in and out of ise. Plans stay the one internal currency.

A source turns a suite into Plans (validated like any plan) plus the tasks it could not express, each with its
reason, so nothing is dropped silently. Sources, by the spelling `--tasks` takes:
- a `.jsonl` file: ise plans (`ise simulate`'s output);
- a folder: Harbor task directories (ise/tasks/harbor.py), the folder itself when it holds `task.toml` or
  `instruction.md`, else each sub-folder that does;
- `agentbench-os`, `agentbench-os:dev`, `agentbench-os:test`: AgentBench-OS from the installed inspect-evals package
  (ise/tasks/agentbench.py; no network);
- `seeds` or `seeds:<domain or seed id>[,…]`: ise's verified seed library (ise/seeds).
Sinks: Harbor task directories (ise/tasks/harbor_export.py) and ATIF trajectories (ise/tasks/atif.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ise.config import Config
from ise.errors import InputError
from ise.jsonl import read_records
from ise.records import Plan, Record

AGENTBENCH = "agentbench-os"
SEEDS = "seeds"


class Unimportable(Record):
    """A task a source could not express as a plan, and why."""

    task_id: str
    path: str
    reason: str


@dataclass
class TaskSet:
    suite: str
    plans: list[Plan] = field(default_factory=list)
    unimportable: list[Unimportable] = field(default_factory=list)


def load_tasks(source: str, config: Config) -> TaskSet:
    """Every task of `source` (see the module docstring); an unknown source is an InputError naming it."""
    name, _, part = source.partition(":")
    if name == AGENTBENCH:
        from ise.tasks.agentbench import load_agentbench

        return load_agentbench(part or "dev", config)
    if name == SEEDS and not Path(source).exists():
        from ise.seeds import load_seed_tasks

        return load_seed_tasks([d for d in part.split(",") if d])
    path = Path(source)
    if path.is_dir():
        from ise.tasks.harbor import load_harbor

        return load_harbor(path, config)
    if path.is_file():
        plans = list(read_records(path, Plan, unique_ids=True))
        if not plans:
            raise InputError(f"{path}: no plans in the file")
        return TaskSet(suite=f"plans:{path.name}", plans=plans)
    raise InputError(
        f"unknown task source {source!r}: not a plans .jsonl file, a folder of Harbor tasks, "
        f"{AGENTBENCH}[:dev|test] or {SEEDS}[:domain,...]"
    )
