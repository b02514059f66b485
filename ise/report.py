"""`ise report RUN_DIR`: one self-contained HTML page about a run, and its key numbers as a table in the terminal.

A run folder holds intents.jsonl, intents.stats.json, plans.jsonl, traces.jsonl and sft/ (export.json); any of
them may be missing (a run stopped early, or stages run by hand), and the report shows what is there.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar, get_args

from pydantic import BaseModel, ConfigDict, ValidationError
from rich.console import Console
from rich.table import Table

from ise.charts import bar_chart, heatmap, histogram
from ise.errors import InputError
from ise.jsonl import read_records
from ise.outputs import check_page_output, write_text_atomic
from ise.records import Intent, Plan, Trace, Verdict
from ise.trace_file import load_traces
from ise.yields import table_rows, tokens_of, yield_table

LEVELS = ("simple", "medium", "complex")
M = TypeVar("M", bound=BaseModel)


@dataclass
class RunData:
    """Everything a run folder holds; None for a stage whose output is missing."""

    run_dir: Path
    intents: list[Intent] | None = None
    stats: dict[str, Any] | None = None
    plans: list[Plan] | None = None
    traces: list[Trace] | None = None
    export: dict[str, Any] | None = None
    errors: dict[str, int] = field(default_factory=dict)
    """Records each stage could not produce (its .errors.jsonl)."""


STAGE_FILES = ("intents.jsonl", "plans.jsonl", "traces.jsonl", "intents.stats.json", "sft/export.json")
ERROR_FILES = ("intents.errors.jsonl", "plans.errors.jsonl", "traces.errors.jsonl")


def check_run_dir(run_dir: Path) -> None:
    if not run_dir.is_dir():
        raise InputError(f"{run_dir} is not a run folder")


def load_run(run_dir: Path) -> RunData:
    """Every file of the run that is there, each read strictly (traces as export reads them); one error if not."""
    check_run_dir(run_dir)
    data = RunData(run_dir)
    data.intents = _records(run_dir / "intents.jsonl", Intent)
    data.plans = _records(run_dir / "plans.jsonl", Plan)
    traces = run_dir / "traces.jsonl"
    data.traces = load_traces(traces, allow_empty=True) if traces.exists() else None
    data.stats = _json(run_dir / "intents.stats.json", _PoolStats)
    data.export = _json(run_dir / "sft" / "export.json", _Manifest)
    for name in ERROR_FILES:
        errors = run_dir / name
        if errors.exists():
            data.errors[name.split(".")[0]] = sum(1 for line in _read_bytes(errors).splitlines() if line.strip())
    return data


def _records(path: Path, model: type[M]) -> list[M] | None:
    return list(read_records(path, model)) if path.exists() else None


class _Cell(BaseModel):
    model_config = ConfigDict(extra="allow")
    domain: str
    complexity: str
    kept: int
    sampled: int


class _PoolStats(BaseModel):
    """What the report reads of intents.stats.json (present keys must have these types; others are ignored)."""

    model_config = ConfigDict(extra="allow")
    sampled: int = 0
    kept: int = 0
    vendi: float = 0.0
    distinct: dict[str, float] = {}
    cells: list[_Cell] = []


class _Manifest(BaseModel):
    """What the report reads of sft/export.json."""

    model_config = ConfigDict(extra="allow")
    rows: dict[str, int] = {}
    filtered: dict[str, int] = {}
    rejected: int = 0


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from None


def _json(path: Path, shape: type[BaseModel]) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:
        data = json.loads(_read_bytes(path).decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not valid UTF-8 (byte {exc.start + 1})") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON ({exc.msg}, line {exc.lineno})") from None
    except RecursionError:
        raise InputError(f"{path}: not valid JSON (nested too deeply)") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object")
    try:
        shape.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "record"
        raise InputError(f"{path}: {where}: {first['msg']}") from None
    return data


# --- numbers -------------------------------------------------------------------------------------------------


def _share(part: float, whole: float) -> str:
    return f"{part:g} / {whole:g} ({part / whole:.0%})" if whole else "n/a"


def _mean(values: Sequence[float], unit: str = "") -> str:
    return f"{statistics.fmean(values):.1f}{unit}" if values else "n/a"


def key_numbers(data: RunData) -> list[tuple[str, str]]:
    """The run's headline figures, in reading order: pipeline funnel, outcomes, behaviour, diversity, cost."""
    numbers: list[tuple[str, str]] = []
    stats, traces = data.stats or {}, data.traces
    if data.intents is not None:
        sampled = stats.get("sampled")
        numbers.append(("intents kept", f"{len(data.intents)}" + (f" of {sampled} sampled" if sampled else "")))
    if data.plans is not None:
        numbers.append(("plans", f"{len(data.plans)} (failed: {data.errors.get('plans', 0)})"))
        numbers.append(("plans not proven solvable", _share(sum(not p.proven for p in data.plans), len(data.plans))))
    if traces is not None:
        passed = sum(t.outcome.passed for t in traces)
        failures = [f for t in traces for f in t.failures]
        user_turns = sum(t.user.turns for t in traces)
        drift = sum(t.user.drift_detected for t in traces)
        numbers += [
            ("trajectories", f"{len(traces)} (errors: {data.errors.get('traces', 0)})"),
            ("verified success (checks passed)", _share(passed, len(traces))),
            ("infra errors", _share(sum(t.verdict == "infra_error" for t in traces), len(traces))),
            ("setup errors (plan at fault)", _share(sum(t.verdict == "setup_error" for t in traces), len(traces))),
            ("of unproven plans (left out of export)", _share(sum(not t.env.plan_proven for t in traces), len(traces))),
            ("answer checks passed", _share(*_checks_passed(traces, "answer"))),
            ("shell checks passed", _share(*_checks_passed(traces, "shell"))),
            ("unverified success claims", _share(sum(t.outcome.unverified_claim for t in traces), len(traces))),
            ("user turns per trajectory", _mean([t.turns for t in traces])),
            ("tool calls per trajectory", _mean([len(t.steps) for t in traces])),
            ("trajectories with a failed step or check", _share(sum(bool(t.failures) for t in traces), len(traces))),
            ("failures recovered", _share(sum(f.recovered_by is not None for f in failures), len(failures))),
            ("user-simulator drift (drafts rejected / user turns)", _share(drift, user_turns)),
            ("tokens per trajectory", _mean([tokens_of(t) for t in traces])),
            ("time per trajectory", _mean([t.timing.wall_s for t in traces], " s")),
        ]
    if "vendi" in stats:
        numbers.append(("Vendi score (intents)", f"{stats['vendi']:.2f}"))
    if "distinct" in stats:
        distinct = stats["distinct"]
        numbers.append(("distinct-1 / -2 / -3", " / ".join(f"{distinct.get(n, 0):.3f}" for n in ("1", "2", "3"))))
    if data.export is not None:
        rows = data.export.get("rows", {})
        filtered = sum(data.export.get("filtered", {}).values())
        numbers.append(("SFT rows (train / validation)", f"{rows.get('train', 0)} / {rows.get('validation', 0)}"))
        numbers.append(("left out by export filters / rejected", f"{filtered} / {data.export.get('rejected', 0)}"))
    return numbers


# --- charts --------------------------------------------------------------------------------------------------


def _counted(values: Sequence[str], order: Sequence[str] = ()) -> list[tuple[str, float]]:
    counts = Counter(values)
    keys = [k for k in order if k in counts] + sorted(k for k in counts if k not in order)
    return [(key, counts[key]) for key in keys]


def coverage_chart(data: RunData) -> str | None:
    """Domain x complexity: intents kept per cell (of those sampled, when the stats say), and pass rates."""
    cells = (data.stats or {}).get("cells")
    if cells:
        values = {(c["domain"], c["complexity"]): float(c["kept"]) for c in cells}
        labels = {(c["domain"], c["complexity"]): f"{c['kept']}/{c['sampled']}" for c in cells}
        title = "matrix coverage: intents kept / sampled"
    elif data.intents:
        counts = Counter((i.domain, i.complexity) for i in data.intents)
        values, labels, title = {k: float(v) for k, v in counts.items()}, {}, "matrix coverage: intents"
    else:
        return None
    domains = sorted({d for d, _ in values})
    levels = [lvl for lvl in LEVELS if any(c == lvl for _, c in values)] + sorted({c for _, c in values} - set(LEVELS))
    return heatmap(title, domains, levels, values, labels)


def pass_rate_chart(traces: Sequence[Trace]) -> str:
    totals: Counter[tuple[str, str]] = Counter((t.intent.domain, t.intent.complexity) for t in traces)
    passed: Counter[tuple[str, str]] = Counter(
        (t.intent.domain, t.intent.complexity) for t in traces if t.outcome.passed
    )
    values = {key: passed[key] / total for key, total in totals.items()}
    labels = {key: f"{passed[key]}/{total}" for key, total in totals.items()}
    domains = sorted({d for d, _ in totals})
    levels = [lvl for lvl in LEVELS if any(c == lvl for _, c in totals)]
    return heatmap("verified success per cell: passed / run", domains, levels, values, labels)


def _checks_passed(traces: list[Trace], kind: str) -> tuple[int, int]:
    results = [c for t in traces for c in t.outcome.checks if c.kind == kind]
    return sum(c.passed for c in results), len(results)


def charts(data: RunData) -> list[tuple[str, str]]:
    """(section, svg) in page order; sections with no data are left out."""
    out: list[tuple[str, str]] = []
    coverage = coverage_chart(data)
    if coverage:
        out.append(("Coverage", coverage))
    population: Sequence[Intent] | Sequence[Trace] = data.intents or []
    if data.intents:
        out.append(("Coverage", bar_chart("complexity mix", _counted([i.complexity for i in data.intents], LEVELS))))
        out.append(("Coverage", bar_chart("domain mix", _counted([i.domain for i in data.intents]))))
    out += [("Diversity", chart) for chart in diversity_charts(data.stats or {})]
    traces = data.traces or []
    if not traces:
        return out
    if not population:
        out.append(("Coverage", bar_chart("complexity mix", _counted([t.intent.complexity for t in traces], LEVELS))))
        out.append(("Coverage", bar_chart("domain mix", _counted([t.intent.domain for t in traces]))))
    out += [
        ("Outcomes", pass_rate_chart(traces)),
        ("Outcomes", bar_chart("verdict", _counted([t.verdict for t in traces], list(get_args(Verdict))))),
        ("Outcomes", bar_chart("termination reason", _counted([str(t.termination) for t in traces]))),
        ("Behaviour", histogram("user turns", [t.turns for t in traces])),
        ("Behaviour", histogram("tool calls", [len(t.steps) for t in traces])),
        ("Behaviour", _recovery_chart(traces)),
        ("Behaviour", _drift_chart(traces)),
        ("Cost", histogram("duration per trajectory", [t.timing.wall_s for t in traces], unit=" s")),
        ("Cost", histogram("tokens per trajectory", [tokens_of(t) for t in traces])),
        ("Cost", _time_split_chart(traces)),
    ]
    return out


def diversity_charts(stats: dict[str, Any]) -> list[str]:
    """distinct-n of the requests (share of unique n-grams) and the Vendi score against the pool size."""
    charts = []
    if "distinct" in stats:
        items = [(f"distinct-{n}", float(stats["distinct"][n])) for n in sorted(stats["distinct"])]
        charts.append(bar_chart("distinct-n of the requests (unique / all n-grams)", items))
    if "vendi" in stats and "kept" in stats:
        items = [("intents kept", float(stats["kept"])), ("Vendi score", float(stats["vendi"]))]
        charts.append(bar_chart("Vendi score: effective number of distinct intents", items))
    return charts


def _recovery_chart(traces: Sequence[Trace]) -> str:
    failures = [f for t in traces for f in t.failures]
    items = [
        ("failed steps", sum(f.kind == "step" for f in failures)),
        ("failed probes", sum(f.kind == "probe" for f in failures)),
        ("recovered", sum(f.recovered_by is not None for f in failures)),
        ("trajectories with failures", sum(bool(t.failures) for t in traces)),
        ("trajectories that recovered", sum(t.recoveries > 0 for t in traces)),
    ]
    return bar_chart("failures and recoveries", [(label, float(n)) for label, n in items])


def _drift_chart(traces: Sequence[Trace]) -> str:
    items = [
        ("user turns", sum(t.user.turns for t in traces)),
        ("drafts rejected (drift)", sum(t.user.drift_detected for t in traces)),
        ("scripted fallbacks", sum(t.user.fallbacks for t in traces)),
    ]
    return bar_chart("user simulator: role drift", [(label, float(n)) for label, n in items])


def _time_split_chart(traces: Sequence[Trace]) -> str:
    mean: Callable[[Callable[[Trace], float]], float] = lambda f: statistics.fmean(f(t) for t in traces)  # noqa: E731
    items = [
        ("wall clock", mean(lambda t: t.timing.wall_s)),
        ("waiting for LLMs", mean(lambda t: t.timing.llm_s)),
        ("in the sandbox", mean(lambda t: t.timing.sandbox_s)),
    ]
    return bar_chart("mean time per trajectory", items, unit=" s")


# --- output --------------------------------------------------------------------------------------------------


def yield_rows(data: RunData) -> tuple[list[str], list[list[str]]] | None:
    """pass@1, pass@k and yield per domain x complexity cell (ise/yields.py); None without traces."""
    return table_rows(yield_table(data.traces)) if data.traces else None


def render_html(data: RunData) -> str:
    from jinja2 import Environment, PackageLoader, StrictUndefined

    env = Environment(loader=PackageLoader("ise", "templates"), undefined=StrictUndefined, autoescape=True)
    sections: dict[str, list[str]] = {}
    for section, svg in charts(data):
        sections.setdefault(section, []).append(svg)
    missing = [
        name
        for name, present in [
            ("intents.jsonl", data.intents is not None),
            ("intents.stats.json", data.stats is not None),
            ("plans.jsonl", data.plans is not None),
            ("traces.jsonl", data.traces is not None),
            ("sft/export.json", data.export is not None),
        ]
        if not present
    ]
    return env.get_template("report.html.jinja").render(
        run_dir=str(data.run_dir),
        generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        numbers=key_numbers(data),
        yields=yield_rows(data),
        sections=sections,
        missing=missing,
    )


def numbers_table(data: RunData) -> Table:
    table = Table(title=f"ise report: {data.run_dir}", show_header=False)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for label, value in key_numbers(data):
        table.add_row(label, value)
    return table


def cells_table(headers: list[str], rows: list[list[str]]) -> Table:
    table = Table(title="pass@k and yield per cell (verified trajectories per plan, trajectory-hour, M tokens)")
    for index, header in enumerate(headers):
        table.add_column(header, justify="left" if index < 2 else "right")
    for row in rows:
        table.add_row(*row)
    return table


def run_report(run_dir: Path, output: Path | None = None, *, console: Console) -> Path:
    """Write the HTML report (default RUN_DIR/report.html, atomically) and print the key numbers. The output may
    not be a data file's name, a folder, or an existing file other than an HTML page: it is checked first."""
    check_run_dir(run_dir)
    output = output or run_dir / "report.html"
    check_page_output(output, inputs=[run_dir / name for name in (*STAGE_FILES, *ERROR_FILES)])
    data = load_run(run_dir)
    write_text_atomic(output, render_html(data))
    console.print(numbers_table(data))
    if yields := yield_rows(data):
        console.print(cells_table(*yields))
    console.print(f"report: {output}")
    return output
