"""The `ise` command line: one subcommand per stage, plus `llm` and `sandbox` tools."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from ise.config import Config, load_config
from ise.errors import InputError, IseError
from ise.llm.cli import app as llm_app
from ise.outputs import refuse_inputs, within
from ise.sandbox.cli import app as sandbox_app

console = Console(stderr=True)


def fail(message: str) -> NoReturn:
    """The one way a command fails on something the user can fix: one line on stderr, exit code 2."""
    console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


def os_error_line(exc: OSError) -> str:
    """An OSError no check foresaw, still as one line naming the path and the cause."""
    paths = [str(p) for p in (exc.filename, exc.filename2) if p is not None]
    cause = exc.strerror or str(exc) or type(exc).__name__
    return f"cannot use {' -> '.join(paths)}: {cause}" if paths else f"{type(exc).__name__}: {cause}"


class _Commands(TyperGroup):
    """Runs a subcommand; an IseError (bad input, path, config, endpoint) or an OSError becomes one line and exit
    code 2, under `ise` and under typer's CliRunner alike."""

    def invoke(self, ctx: Any) -> Any:  # typer's own (vendored) click Context
        try:
            return super().invoke(ctx)
        except IseError as exc:
            fail(str(exc))
        except OSError as exc:
            fail(os_error_line(exc))


app = typer.Typer(cls=_Commands, no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
app.add_typer(llm_app, name="llm")
app.add_typer(sandbox_app, name="sandbox")

ConfigOption = Annotated[
    list[str] | None,
    typer.Option("-c", "--config", help="YAML file or dotted.key=value override; repeatable, applied in order."),
]


def workers_option(help_text: str) -> Any:
    return typer.Option("--workers", min=1, help=help_text)


def config_from(sources: list[str] | None) -> Config:
    return load_config(sources or [])


def refuse_config_as_output(sources: list[str] | None, output: Path) -> None:
    """A config file given with -c is an input too: -o may neither name it nor a folder holding it (export)."""
    files = [Path(source) for source in sources or [] if Path(source).is_file()]
    refuse_inputs(output, files)
    for path in files:
        if output.is_dir() and within(path, output):
            raise InputError(f"output {output} holds the config file {path}; choose another -o")


@app.command()
def intents(
    output: Annotated[Path, typer.Option("-o", "--output", help="intents.jsonl to write (resumed if it exists).")],
    config: ConfigOption = None,
    count: Annotated[int | None, typer.Option("-n", "--count", min=1, help="Cells to sample (intents.count).")] = None,
    workers: Annotated[int | None, workers_option("Intents realised at once")] = None,
) -> None:
    """Sample persona x domain x task x complexity, realise each cell with the LLM, dedup, and report diversity."""
    from ise.stages.intents import run_intents

    cfg = config_from(config)
    refuse_config_as_output(config, output)
    if workers is not None:
        cfg = cfg.model_copy(update={"workers": workers})
    run_intents(cfg, output, count=count, console=console)


@app.command()
def simulate(
    input_path: Annotated[Path, typer.Option("-i", "--input", help="intents.jsonl from `ise intents`.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="plans.jsonl to write (resumed if it exists).")],
    config: ConfigOption = None,
    workers: Annotated[int | None, workers_option("Intents planned at once")] = None,
) -> None:
    """Write an executable plan per intent, each dry-run in a fresh sandbox; failures go to *.errors.jsonl."""
    from ise.stages.simulate import run_simulate

    cfg = config_from(config)
    refuse_config_as_output(config, output)
    run_simulate(input_path, output, cfg, workers=workers, console=console)


@app.command()
def execute(
    input_path: Annotated[Path, typer.Option("-i", "--input", help="plans.jsonl from `ise simulate`.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="traces.jsonl to write (resumed if it exists).")],
    config: ConfigOption = None,
    workers: Annotated[int | None, workers_option("Episodes run at once, each in its own sandbox")] = None,
    retry_setup_errors: Annotated[
        bool,
        typer.Option("--retry-setup-errors", help="Also rerun plans whose setup failed last time, changed or not."),
    ] = False,
) -> None:
    """Run each plan as a live episode (agent + user simulator + real sandbox) and record one trace per plan."""
    from ise.stages.execute import run_execute

    cfg = config_from(config)
    if retry_setup_errors:
        cfg = cfg.model_copy(update={"execute": cfg.execute.model_copy(update={"retry_setup_errors": True})})
    refuse_config_as_output(config, output)
    run_execute(input_path, output, cfg, workers=workers, console=console)


@app.command(name="eval")
def evaluate(
    tasks: Annotated[
        str,
        typer.Option(
            "--tasks", help="plans .jsonl | folder of Harbor tasks | agentbench-os[:dev|test] | seeds[:domain,...]"
        ),
    ],
    output: Annotated[Path, typer.Option("-o", "--output", help="eval.jsonl to write, one trace per attempt.")],
    config: ConfigOption = None,
    agent: Annotated[
        str, typer.Option("--agent", help="llm (the configured agent model) | oracle | null (the two controls).")
    ] = "llm",
    attempts: Annotated[int, typer.Option("--attempts", min=1, help="Attempts per task (pass@k, pass^k).")] = 1,
    multi_turn: Annotated[
        bool, typer.Option("--multi-turn", help="Run the plan's user card with the user simulator.")
    ] = False,
    workers: Annotated[int | None, workers_option("Attempts run at once, each in its own sandbox")] = None,
) -> None:
    """Run an agent on every task of a suite; write one trace per attempt, a summary, a table and an HTML page."""
    from ise.stages.evaluate import AGENTS, run_eval
    from ise.tasks import load_tasks

    if agent not in AGENTS:
        raise InputError(f"--agent must be one of {', '.join(AGENTS)}, not {agent!r}")
    cfg = config_from(config)
    refuse_config_as_output(config, output)
    task_set = load_tasks(tasks, cfg)
    run_eval(task_set, output, cfg, agent=agent, attempts=attempts, multi_turn=multi_turn, workers=workers)


@app.command()
def export(
    input_path: Annotated[Path, typer.Option("-i", "--input", help="traces.jsonl from `ise execute`.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Dataset folder to write (replaced atomically).")],
    config: ConfigOption = None,
    include_failed: Annotated[
        bool | None, typer.Option("--include-failed/--verified-only", help="Also export failed trajectories.")
    ] = None,
    require_recovery: Annotated[
        bool | None, typer.Option("--require-recovery/--any-recovery", help="Only trajectories that recovered.")
    ] = None,
    include_unproven: Annotated[
        bool | None,
        typer.Option("--include-unproven/--proven-only", help="Also export trajectories of unproven plans."),
    ] = None,
    include_whole_delegation: Annotated[
        bool | None,
        typer.Option(
            "--include-whole-delegation/--exclude-whole-delegation",
            help="Also export trajectories whose agent delegated the whole request at its first step.",
        ),
    ] = None,
    subagent_rows: Annotated[
        bool | None,
        typer.Option("--subagent-rows/--no-subagent-rows", help="Also export each sub-agent conversation as a row."),
    ] = None,
    min_user_turns: Annotated[int | None, typer.Option("--min-user-turns")] = None,
    max_user_turns: Annotated[int | None, typer.Option("--max-user-turns")] = None,
    include_infra_errors: Annotated[
        bool | None, typer.Option("--include-infra-errors/--exclude-infra-errors", help="Keep infra_error traces.")
    ] = None,
    max_tokens: Annotated[int | None, typer.Option("--max-tokens", help="Longest conversation, in tokens.")] = None,
    tokens: Annotated[str | None, typer.Option("--tokens", help="Token counter: auto | embedded | approx.")] = None,
    validation_fraction: Annotated[float | None, typer.Option("--validation-fraction")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Seed of the split and the render sample.")] = None,
    formats: Annotated[
        list[str] | None,
        typer.Option("--format", help="openai | trl | sharegpt | parquet (default: those four) | harbor | atif."),
    ] = None,
    plans: Annotated[
        Path | None, typer.Option("--plans", help="harbor: the plans the traces ran (default: plans.jsonl beside -i).")
    ] = None,
    render_samples: Annotated[int | None, typer.Option("--render-samples", help="Rows rendered as a check.")] = None,
    no_render_check: Annotated[bool, typer.Option("--no-render-check", help="Same as --render-samples 0.")] = False,
) -> None:
    """Turn traces into filtered, validated SFT datasets (OpenAI, TRL, ShareGPT, Parquet) with a dataset card."""
    from ise.stages.export import run_export

    flags = {
        "include_failed": include_failed,
        "require_recovery": require_recovery,
        "include_unproven": include_unproven,
        "include_whole_delegation": include_whole_delegation,
        "subagent_rows": subagent_rows,
        "min_user_turns": min_user_turns,
        "max_user_turns": max_user_turns,
        "exclude_infra_errors": None if include_infra_errors is None else not include_infra_errors,
        "max_tokens": max_tokens,
        "token_counter": tokens,
        "validation_fraction": validation_fraction,
        "seed": seed,
        "formats": formats,
        "plans": None if plans is None else str(plans),
        "render_samples": 0 if no_render_check else render_samples,
    }
    overrides = [f"export.{key}={json.dumps(value)}" for key, value in flags.items() if value is not None]
    cfg = config_from([*(config or []), *overrides])
    refuse_config_as_output(config, output)
    run_export(input_path, output, cfg, console=console)


@app.command()
def train(
    data: Annotated[Path, typer.Option("--data", help="An export's trl/ folder (train.jsonl, validation.jsonl).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Adapter (or model) folder to write.")],
    config: ConfigOption = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the latest checkpoint of -o.")] = False,
    merge: Annotated[bool | None, typer.Option("--merge/--no-merge", help="Also write the merged model.")] = None,
    max_steps: Annotated[
        int | None, typer.Option("--max-steps", min=1, help="Optimizer steps (train.max_steps).")
    ] = None,
    exclude_tasks: Annotated[
        list[str] | None,
        typer.Option("--exclude-tasks", help="Task source (as eval --tasks) no training row may overlap; repeatable."),
    ] = None,
) -> None:
    """Fine-tune a model on exported trajectories (TRL SFTTrainer, LoRA or full), loss on the assistant's tokens."""
    from ise.train.trainer import run_train

    flags = {"merge": merge, "max_steps": max_steps, "exclude_tasks": exclude_tasks}
    overrides = [f"train.{key}={json.dumps(value)}" for key, value in flags.items() if value is not None]
    cfg = config_from([*(config or []), *overrides])
    refuse_config_as_output(config, output)
    run_train(data, output, cfg, resume=resume, console=console)


@app.command()
def report(
    run_dir: Annotated[Path, typer.Argument(help="A run folder (intents.jsonl, plans.jsonl, traces.jsonl, sft/).")],
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="HTML file (default RUN_DIR/report.html).")
    ] = None,
) -> None:
    """Write one self-contained HTML report of a run and print its key numbers."""
    from ise.report import run_report

    run_report(run_dir, output, console=Console())


@app.command()
def view(
    run_dir: Annotated[Path, typer.Argument(help="A run folder holding traces.jsonl (or a traces.jsonl file).")],
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="HTML file (default RUN_DIR/viewer.html).")
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", min=0, help="Trajectories embedded (the first N); 0 for all.")
    ] = 2000,
) -> None:
    """Write a static HTML trace viewer: every trajectory, its dialogue, tool calls, diffs, events and checks."""
    from ise.viewer import run_viewer

    run_viewer(run_dir, output, console=console, limit=limit or None)


@app.command()
def run(
    config: ConfigOption = None,
    run_dir: Annotated[Path | None, typer.Option("-o", "--run-dir", help="Run folder (default: run_dir).")] = None,
) -> None:
    """Intents -> simulate -> execute -> export -> report in one run folder, resuming whatever is already done."""
    from ise.pipeline import run_pipeline

    cfg = config_from(config)
    run_pipeline(cfg, run_dir or cfg.run_dir, console=console)


def main() -> None:
    """Entry point: user-facing errors become one line on stderr and exit code 2 (see _Commands; this catches what
    is raised outside a command)."""
    try:
        app()  # typer reports usage errors and Ctrl-C itself (exit 2 and 1)
    except IseError as exc:
        console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(2)
