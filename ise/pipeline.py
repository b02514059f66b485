"""`ise run`: every stage in one run folder, each resuming what an earlier, interrupted run already did."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from rich.console import Console
from rich.table import Table

from ise.config import Config
from ise.llm.base import LLM

Role = Literal["intents", "simulate", "agent", "user"]


class RunLayout:
    """Where each stage reads and writes inside a run folder (the names report and view look for)."""

    def __init__(self, run_dir: Path) -> None:
        self.dir = run_dir
        self.intents = run_dir / "intents.jsonl"
        self.plans = run_dir / "plans.jsonl"
        self.traces = run_dir / "traces.jsonl"
        self.dataset = run_dir / "sft"
        self.report = run_dir / "report.html"
        self.viewer = run_dir / "viewer.html"


def run_pipeline(
    config: Config, run_dir: Path, *, console: Console, llms: Mapping[Role, LLM] | None = None
) -> RunLayout:
    """Run every stage; `llms` replaces the configured client of a role (tests, or clients built elsewhere)."""
    from ise.report import run_report
    from ise.stages.execute import run_execute
    from ise.stages.export import run_export
    from ise.stages.intents import run_intents
    from ise.stages.simulate import run_simulate
    from ise.viewer import run_viewer

    given = dict(llms or {})
    layout = RunLayout(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    console.rule("1/4 intents")
    run_intents(config, layout.intents, llm=given.get("intents"), console=console)
    console.rule("2/4 simulate")
    run_simulate(layout.intents, layout.plans, config, llm=given.get("simulate"), console=console)
    console.rule("3/4 execute")
    pair = (given["agent"], given["user"]) if "agent" in given and "user" in given else None
    run_execute(layout.plans, layout.traces, config, llms=pair, console=console)
    console.rule("4/4 export, report, viewer")
    if _stale(layout.dataset / "README.md", layout.traces):
        run_export(layout.traces, layout.dataset, config, console=console)
    run_report(run_dir, layout.report, console=console)
    run_viewer(run_dir, layout.viewer, console=console)
    console.print(_summary(layout))
    return layout


def _stale(product: Path, source: Path) -> bool:
    """Redo a derived output only when its source changed since it was written."""
    return not product.exists() or product.stat().st_mtime < source.stat().st_mtime


def _summary(layout: RunLayout) -> Table:
    table = Table(title=f"ise run: {layout.dir}", show_header=False)
    for name, path in [
        ("intents", layout.intents),
        ("plans", layout.plans),
        ("traces", layout.traces),
        ("dataset", layout.dataset),
        ("report", layout.report),
        ("viewer", layout.viewer),
    ]:
        table.add_row(name, str(path))
    return table
