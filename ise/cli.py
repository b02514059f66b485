"""The `ise` command line: one subcommand per stage, plus `llm` and `sandbox` tools."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from ise.config import Config, load_config
from ise.errors import IseError
from ise.llm.cli import app as llm_app
from ise.sandbox.cli import app as sandbox_app

app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
app.add_typer(llm_app, name="llm")
app.add_typer(sandbox_app, name="sandbox")
console = Console(stderr=True)

ConfigOption = Annotated[
    list[str] | None,
    typer.Option("-c", "--config", help="YAML file or dotted.key=value override; repeatable, applied in order."),
]


def config_from(sources: list[str] | None) -> Config:
    return load_config(sources or [])


@app.command()
def intents(
    output: Annotated[Path, typer.Option("-o", "--output", help="intents.jsonl to write (resumed if it exists).")],
    config: ConfigOption = None,
    count: Annotated[int | None, typer.Option("-n", "--count", min=1, help="Cells to sample (intents.count).")] = None,
    workers: Annotated[int | None, typer.Option("--workers", help="Intents realised at once.")] = None,
) -> None:
    """Sample persona x domain x task x complexity, realise each cell with the LLM, dedup, and report diversity."""
    from ise.stages.intents import run_intents

    cfg = config_from(config)
    if workers is not None:
        cfg = cfg.model_copy(update={"workers": workers})
    run_intents(cfg, output, count=count, console=console)


@app.command()
def simulate(
    input_path: Annotated[Path, typer.Option("-i", "--input", help="intents.jsonl from `ise intents`.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="plans.jsonl to write (resumed if it exists).")],
    config: ConfigOption = None,
    workers: Annotated[int | None, typer.Option("--workers", help="Intents planned at once.")] = None,
) -> None:
    """Write an executable plan per intent, each dry-run in a fresh sandbox; failures go to *.errors.jsonl."""
    from ise.stages.simulate import run_simulate

    run_simulate(input_path, output, config_from(config), workers=workers, console=console)


@app.command()
def execute(
    input_path: Annotated[Path, typer.Option("-i", "--input", help="plans.jsonl from `ise simulate`.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="traces.jsonl to write (resumed if it exists).")],
    config: ConfigOption = None,
    workers: Annotated[
        int | None, typer.Option("--workers", help="Episodes run at once, each in its own sandbox.")
    ] = None,
) -> None:
    """Run each plan as a live episode (agent + user simulator + real sandbox) and record one trace per plan."""
    from ise.stages.execute import run_execute

    run_execute(input_path, output, config_from(config), workers=workers, console=console)


def main() -> None:
    """Entry point: user-facing errors become one line on stderr and exit code 2."""
    try:
        app()  # typer reports usage errors and Ctrl-C itself (exit 2 and 1)
    except IseError as exc:
        console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)
