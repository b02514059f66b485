"""The task formats `ise export` writes beside the SFT files, for the trajectories it exported:
`atif/<split>/<id>.json` (ATIF trajectories, ise/tasks/atif.py) and `harbor/<id>/` (each trajectory's plan as a
Harbor task directory, ise/tasks/harbor_export.py)."""

from __future__ import annotations

from pathlib import Path

from ise.config import ExportConfig
from ise.errors import InputError
from ise.jsonl import read_records
from ise.records import Plan, Trace
from ise.trace_file import read_traces


def plans_path(traces_path: Path, cfg: ExportConfig) -> Path:
    return cfg.plans or traces_path.with_name("plans.jsonl")


def write_task_formats(
    staging: Path, exported: dict[str, list[str]], traces_path: Path, cfg: ExportConfig
) -> dict[str, int]:
    """Write the task formats cfg.formats asks for into the staging folder; how many files of each."""
    wanted = {trace_id: split for split, ids in exported.items() for trace_id in ids}
    traces = [(wanted[t.id], t) for _, t in read_traces(traces_path) if t.id in wanted]
    written: dict[str, int] = {}
    if "atif" in cfg.formats:
        from ise.tasks.atif import write_atif

        written["atif"] = sum(
            write_atif([t for s, t in traces if s == split], staging / "atif" / split) for split in exported
        )
    if "harbor" in cfg.formats:
        from ise.tasks.harbor_export import write_harbor_tasks

        plans = _plans_for([t for _, t in traces], plans_path(traces_path, cfg))
        written["harbor"] = write_harbor_tasks([(t, plans[t.id]) for _, t in traces], staging / "harbor")
    return written


def _plans_for(traces: list[Trace], path: Path) -> dict[str, Plan]:
    """The plan of every trace, by id; a trace without one is an InputError (the export would be incomplete)."""
    if not path.is_file():
        raise InputError(f"{path}: no plans file for the harbor format (give export.plans)")
    wanted = {t.id for t in traces}
    plans = {p.id: p for p in read_records(path, Plan, unique_ids=True) if p.id in wanted}
    if missing := sorted(wanted - plans.keys()):
        raise InputError(f"{path}: no plan for the exported traces {', '.join(missing[:5])}")
    return plans
