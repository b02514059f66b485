"""What `ise eval` reports: the summary of a suite's attempts (written as `<name>.summary.json`), a terminal table
and a self-contained HTML page. Figures are ise/evalstats.py's; this module groups the traces and says why each
task that missed, missed."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field
from rich.console import Console
from rich.table import Table

from ise.evalstats import mean, suite_figure
from ise.outputs import write_text_atomic
from ise.records import CheckResult, Plan, Record, Trace
from ise.recovery import flatten

if TYPE_CHECKING:
    from ise.tasks import TaskSet, Unimportable


class TaskResult(Record):
    """One task's attempts."""

    id: str
    category: str
    attempts: int
    """Attempts that measured the agent (setup and infra errors left out)."""
    passed: int
    setup_errors: int = 0
    infra_errors: int = 0
    cause: str | None = None
    """For a task with a failed attempt: why its first failed attempt failed (a check's reason and output)."""


class Figures(Record):
    """The suite's figures over a set of tasks (all, or one category)."""

    tasks: int
    pass_at_1: dict[str, float] | None
    pass_at_k: dict[str, float] | None
    pass_hat_k: dict[str, float] | None
    setup_errors: int
    infra_errors: int
    mean_steps: float | None
    mean_tokens: float | None
    mean_seconds: float | None


class EvalSummary(Record):
    suite: str
    agent: str
    model: str
    attempts: int
    """k: attempts per task."""
    multi_turn: bool
    overall: Figures
    categories: dict[str, Figures]
    tasks: list[TaskResult]
    unimportable: list[dict[str, str]] = Field(default_factory=list)
    """Tasks the source could not express, with the reason."""
    not_run: list[dict[str, str]] = Field(default_factory=list)
    """Tasks this agent could not be run on (the oracle without a reference solution), with the reason."""
    elapsed_s: float = 0.0

    def missed(self) -> list[TaskResult]:
        return [t for t in self.tasks if t.passed < t.attempts]


def category_of(plan: Plan) -> str:
    return plan.origin.category if plan.origin and plan.origin.category else plan.intent.domain


def summarise(
    tasks: TaskSet,
    plans: Sequence[Plan],
    traces: Sequence[Trace],
    *,
    agent: str,
    model: str,
    attempts: int,
    multi_turn: bool,
    not_run: Sequence[Unimportable],
    elapsed_s: float,
) -> EvalSummary:
    by_plan: dict[str, list[Trace]] = defaultdict(list)
    known = {p.id for p in plans}
    for trace in traces:
        plan_id = _plan_id(trace.id, known)
        if plan_id is not None:
            by_plan[plan_id].append(trace)
    results = [_task_result(plan, by_plan.get(plan.id, [])) for plan in plans]
    categories: dict[str, list[tuple[TaskResult, list[Trace]]]] = defaultdict(list)
    for plan, result in zip(plans, results, strict=True):
        categories[result.category].append((result, by_plan.get(plan.id, [])))
    everything = [(r, by_plan.get(p.id, [])) for p, r in zip(plans, results, strict=True)]
    return EvalSummary(
        suite=tasks.suite,
        agent=agent,
        model=model,
        attempts=attempts,
        multi_turn=multi_turn,
        overall=_figures(everything, attempts),
        categories={name: _figures(group, attempts) for name, group in sorted(categories.items())},
        tasks=results,
        unimportable=[u.model_dump() for u in tasks.unimportable],
        not_run=[u.model_dump() for u in not_run],
        elapsed_s=round(elapsed_s, 2),
    )


def _plan_id(trace_id: str, known: set[str]) -> str | None:
    """The task a trace id belongs to: the id itself, or `<task>.a<i>`."""
    if trace_id in known:
        return trace_id
    base, _, suffix = trace_id.rpartition(".a")
    return base if base in known and suffix.isdigit() else None


def _task_result(plan: Plan, traces: list[Trace]) -> TaskResult:
    measured = [t for t in traces if not t.errored]
    failed = next((t for t in measured if not t.outcome.passed), None)
    return TaskResult(
        id=plan.id,
        category=category_of(plan),
        attempts=len(measured),
        passed=sum(t.outcome.passed for t in measured),
        setup_errors=sum(t.verdict == "setup_error" for t in traces),
        infra_errors=sum(t.verdict == "infra_error" for t in traces),
        cause=_cause(failed) if failed else _error_cause(traces),
    )


def _cause(trace: Trace) -> str:
    failing: list[CheckResult] = [c for c in trace.outcome.checks if not c.passed]
    if not failing:
        return f"no check passed ({trace.termination.value})"
    check = failing[0]
    detail = check.reason or f"exit {check.exit_code}"
    output = (check.stdout or check.stderr).strip().replace("\n", " | ")[-300:]
    return f"check {check.id}: {detail}" + (f"; output: {output}" if output else "")


def _error_cause(traces: list[Trace]) -> str | None:
    errored = next((t for t in traces if t.infra_error is not None), None)
    if errored is None or errored.infra_error is None:
        return None
    return f"{errored.verdict}: {errored.infra_error.message[:300]}"


def _figures(group: Sequence[tuple[TaskResult, list[Trace]]], k: int) -> Figures:
    counts = [(r.attempts, r.passed) for r, _ in group]
    measured = [t for _, traces in group for t in traces if not t.errored]
    return Figures(
        tasks=len(group),
        pass_at_1=suite_figure(counts, 1),
        pass_at_k=suite_figure(counts, k),
        pass_hat_k=suite_figure(counts, k, all_pass=True),
        setup_errors=sum(r.setup_errors for r, _ in group),
        infra_errors=sum(r.infra_errors for r, _ in group),
        mean_steps=_rounded(mean([float(len(list(flatten(t.steps)))) for t in measured])),
        mean_tokens=_rounded(
            mean([float(sum(u.prompt_tokens + u.completion_tokens for u in t.usage)) for t in measured])
        ),
        mean_seconds=_rounded(mean([t.timing.wall_s for t in measured])),
    )


def _tokens(trace: Trace) -> int:
    return sum(u.prompt_tokens + u.completion_tokens for u in trace.usage)


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


# --- output --------------------------------------------------------------------------------------------------


def write_reports(summary: EvalSummary, summary_file: Path, html_file: Path) -> None:
    write_text_atomic(summary_file, json.dumps(summary.model_dump(mode="json"), indent=2) + "\n")
    write_text_atomic(html_file, render_html(summary))


def render_html(summary: EvalSummary) -> str:
    from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

    env = Environment(
        loader=PackageLoader("ise", "templates"), undefined=StrictUndefined, autoescape=select_autoescape()
    )
    return env.get_template("eval.html.jinja").render(s=summary, rate=rate)


def rate(figure: dict[str, Any] | None) -> str:
    """A figure as 'value [low, high]', in percent."""
    if figure is None:
        return "-"
    return f"{100 * figure['value']:.1f}% [{100 * figure['low']:.1f}, {100 * figure['high']:.1f}]"


def print_table(summary: EvalSummary, console: Console) -> None:
    k = summary.attempts
    table = Table(title=f"ise eval: {summary.suite}, agent {summary.model}, {k} attempt(s) per task")
    columns = ["category", "tasks", "pass@1 [95% CI]", *([f"pass@{k}", f"pass^{k}"] if k > 1 else [])]
    for column in [*columns, "setup/infra errors", "steps", "s"]:
        table.add_column(column, justify="left" if column == "category" else "right", no_wrap=True)
    for name, f in [*summary.categories.items(), ("all", summary.overall)]:
        figures = [rate(f.pass_at_1), *([rate(f.pass_at_k), rate(f.pass_hat_k)] if k > 1 else [])]
        table.add_row(
            name,
            str(f.tasks),
            *figures,
            f"{f.setup_errors}/{f.infra_errors}",
            "-" if f.mean_steps is None else f"{f.mean_steps:.1f}",
            "-" if f.mean_seconds is None else f"{f.mean_seconds:.1f}",
        )
    console.print(table)
    for task in summary.missed():
        console.print(f"missed {task.id} ({task.passed}/{task.attempts}): {task.cause}", highlight=False)
    for entry in [*summary.unimportable, *summary.not_run]:
        console.print(f"not run {entry['task_id']}: {entry['reason']}", highlight=False)
