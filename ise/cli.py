"""The `ise` command line: one subcommand per stage, plus `llm` and `sandbox` tools."""

from __future__ import annotations

import sys
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


def main() -> None:
    """Entry point: user-facing errors become one line on stderr and exit code 2."""
    try:
        app()  # typer reports usage errors and Ctrl-C itself (exit 2 and 1)
    except IseError as exc:
        console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)
