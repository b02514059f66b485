"""`ise export`: traces -> filtered, validated, split SFT datasets in several formats, written atomically.

The output folder holds (each format only if selected):

    openai/{train,validation}.jsonl      canonical: messages + tools, tool-call arguments as JSON strings
    trl/{train,validation}.jsonl         messages + tools, arguments as objects (what HF chat templates read)
    sharegpt/{train,validation}.jsonl    conversations (human/gpt/function_call/observation) + system + tools
    parquet/{train,validation}.parquet   the canonical rows; arguments stay JSON strings (as dicts, Arrow merges keys)
    filtered.jsonl                       traces the filters left out, with the reason
    rejects.jsonl                        rows that failed validation or the render check, with every reason
    export.json                          counts, filters, provenance, statistics (also marks the folder as ours)
    README.md                            the dataset card

Everything is written into a temporary folder beside the target and renamed into place at the end, so a failure
(bad input line, full disk, Ctrl-C) leaves either the previous export or nothing, never half of one.

Speed: parsing/validation and the format writers are CPU-bound Python, so both run in forked worker processes
(one per core); bench/export_bench.py measures it.
"""

from __future__ import annotations

import gc
import hashlib
import itertools
import json
import random
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, get_args

from pydantic_core import from_json
from rich.console import Console

from ise.config import Config, ExportConfig, TaskFormat
from ise.errors import InputError, IseError
from ise.llm.config import EmbeddedBackend
from ise.outputs import current_umask, make_folder, refuse_inputs, within, writable_folder
from ise.records import Trace
from ise.stages.delegation import WHOLE_DELEGATION, delegated_whole_request, subagent_rows
from ise.stages.sft_files import (
    JSONL_FORMATS,
    arrow_rows,
    available_cores,
    jsonl_lines,
    ordered_map,
    parquet_schemas,
    replace_dir,
    write_jsonl,
    write_lines,
    write_parquet,
)
from ise.stages.sft_rows import (
    APPROX_TOKENS,
    Row,
    approx_tokens,
    check_rendered,
    message_records,
    openai_messages,
    openai_tools,
    tool_records,
    validate_conversation,
)
from ise.tasks.sinks import write_task_formats
from ise.trace_file import Span, TraceIds, file_spans, parse_trace, read_span
from ise.yields import AttemptRecord, YieldTally, table_rows, verified_rows

if TYPE_CHECKING:
    from ise.llm.embedded import EmbeddedServer

SPLITS = ("train", "validation")
MANIFEST = "export.json"


# --- the chat template ---------------------------------------------------------------------------------------


class ChatTemplate(Protocol):
    """A model's real chat template and tokenizer."""

    name: str

    def render(self, messages: list[Row], tools: list[Row]) -> str: ...

    def count_tokens(self, messages: list[Row], tools: list[Row]) -> int: ...


class EmbeddedTemplate:
    """The embedded model server's /apply-template and /tokenize, for rows in any of our message shapes.

    The server starts on first use, so bad input fails fast without loading a model; close() releases it."""

    def __init__(self, backend: EmbeddedBackend) -> None:
        self.backend = backend
        self.name = f"{backend.model} tokenizer, chat template applied (embedded server)"
        self._server: EmbeddedServer | None = None
        self._stack = ExitStack()

    @property
    def server(self) -> EmbeddedServer:
        if self._server is None:
            from ise.llm.embedded import embedded_server

            self._server = self._stack.enter_context(embedded_server(self.backend))
        return self._server

    def render(self, messages: list[Row], tools: list[Row]) -> str:
        return self.server.apply_template(message_records(messages), tool_records(tools))

    def count_tokens(self, messages: list[Row], tools: list[Row]) -> int:
        return len(self.server.tokenize(self.render(messages, tools)))

    def close(self) -> None:
        self._stack.close()


@contextmanager
def chat_template_for(cfg: ExportConfig, backend: EmbeddedBackend) -> Iterator[ChatTemplate | None]:
    """The template server the export needs, or None when it needs none or may do without one and the embedded
    model is not fetched. (Both Qwen2.5-Coder sizes share one tokenizer and chat template.)"""
    counting = cfg.max_tokens is not None and cfg.token_counter != "approx"
    required = counting and cfg.token_counter == "embedded"
    if not (counting or cfg.render_samples) or not (required or embedded_model_ready(backend.model)):
        yield None
        return
    template = EmbeddedTemplate(backend)
    try:
        yield template
    finally:
        template.close()


def embedded_model_ready(model: str) -> bool:
    from ise.llm.weights import cached_model

    try:
        import xllamacpp  # noqa: F401
    except ImportError:
        return False
    return cached_model(model) is not None


# --- records of the export -----------------------------------------------------------------------------------


@dataclass
class Judged:
    """One input line after parsing, filtering and validation, with its finished output lines if it is kept:
    what a reading worker sends back."""

    line: int
    id: str
    provenance: tuple[tuple[tuple[str, str], ...], str, str, str]
    """((role, model), ...), image id, config hash, ise version."""
    filtered: str | None = None
    problems: list[str] = field(default_factory=list)
    metadata: Row = field(default_factory=dict)
    messages: int = 0
    tokens: int = 0
    """Approximate (see approx_tokens) until a limit asks for a real count."""
    lines: dict[str, bytes] = field(default_factory=dict)
    """Format -> JSON line; "openai" (the canonical row) is always there."""
    dropped_texts: int = 0
    """Assistant texts the ShareGPT line could not hold."""
    attempt: AttemptRecord | None = None
    """What pass@k and yield need of the trace (ise/yields.py)."""
    part: int = -1
    """Which Arrow table holds its Parquet row (-1: none), and at which index."""
    index: int = -1
    parent: str | None = None
    """A sub-agent row's trace (None: the trace's own row)."""
    subagents: list[Judged] = field(default_factory=list)
    """Its sub-agent rows (export.subagent_rows), each validated on its own."""

    def row(self) -> Row:
        """The canonical row, parsed back (only the render check and real token counts need it)."""
        return dict(from_json(self.lines["openai"]))


Candidate = Judged
"""A Judged line that passed the filters and validation."""


@dataclass
class ExportSummary:
    out_dir: Path
    read: int = 0
    filtered: Counter[str] = field(default_factory=Counter)
    rejected: int = 0
    rows: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SPLITS, 0))
    token_counter: str = APPROX_TOKENS
    render_checked: int = 0
    render_failed: int = 0
    sharegpt_dropped_texts: int = 0
    stats: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    """Seconds per phase (for bench/export_bench.py)."""
    task_files: dict[str, int] = field(default_factory=dict)
    """harbor / atif: how many task directories / trajectories were written."""
    attempts: YieldTally = field(default_factory=YieldTally)
    yields: dict[str, Any] = field(default_factory=dict)
    """pass@1, pass@k and yield per domain x complexity cell, of every trace read (ise/yields.py)."""

    @contextmanager
    def timed(self, phase: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.timings[phase] = self.timings.get(phase, 0.0) + time.perf_counter() - started

    def as_dict(self, cfg: ExportConfig) -> dict[str, Any]:
        return {
            "read": self.read,
            "filtered": dict(self.filtered),
            "rejected": self.rejected,
            "rows": self.rows,
            "token_counter": self.token_counter,
            "render_check": {"checked": self.render_checked, "failed": self.render_failed},
            "sharegpt_dropped_texts": self.sharegpt_dropped_texts,
            "filters": cfg.model_dump(mode="json"),
            "provenance": self.provenance,
            "stats": self.stats,
            "task_files": self.task_files,
            "yield": self.yields,
        }


# --- reading -------------------------------------------------------------------------------------------------


# Reading and validating the traces file is ise/trace_file.py's job: report and view read with it too.


# --- selection -----------------------------------------------------------------------------------------------


def is_infra_error(trace: Trace) -> bool:
    return trace.infra_error is not None or trace.termination == "infra_error" or "infra_error" in trace.tags


def filter_reason(trace: Trace, cfg: ExportConfig) -> str | None:
    """Why the filters leave this trace out, or None to keep it (then it still has to pass validation)."""
    if cfg.exclude_infra_errors and is_infra_error(trace):
        return "infra_error"
    if not cfg.include_failed and not trace.outcome.passed:
        return "checks_failed"
    if not cfg.include_unproven and not trace.env.plan_proven:
        return "unproven"
    if cfg.require_recovery and not any(f.recovered_by is not None for f in trace.failures):
        return "no_recovery"
    if trace.turns < cfg.min_user_turns:
        return "too_few_user_turns"
    if cfg.max_user_turns is not None and trace.turns > cfg.max_user_turns:
        return "too_many_user_turns"
    if not cfg.include_whole_delegation and delegated_whole_request(trace.steps):
        return WHOLE_DELEGATION  # checked last: only this reason still lets the sub-agent rows through
    return None


def canonical_row(trace: Trace) -> Row:
    """The OpenAI-format row plus the metadata a trainer may filter or weight by."""
    return {
        "id": trace.id,
        "messages": openai_messages(trace.messages),
        "tools": openai_tools(trace.tools),
        "metadata": {
            "intent_id": trace.plan_id,  # attempts at one plan stay in one split
            "domain": trace.intent.domain,
            "complexity": trace.intent.complexity,
            "persona": trace.intent.persona.role,
            "passed": trace.outcome.passed,
            "termination": str(trace.termination),
            "user_turns": trace.turns,
            "tool_calls": sum(len(m.tool_calls) for m in trace.messages),
            "recoveries": trace.recoveries,
            "tags": list(trace.tags),
            "subagent": False,
            "parent_id": None,
        },
    }


def judge_lines(job: tuple[Span, ExportConfig]) -> tuple[list[Judged], Any]:
    """Parse, filter and validate a span of input lines and render the kept ones in every format (runs in a
    worker process). Returns the verdicts and, if Parquet is wanted, an Arrow table of the kept rows."""
    span, cfg = job
    path = span[0]
    judged: list[Judged] = []
    rows: list[Row] = []
    for lineno, raw in read_span(span):
        trace = parse_trace(path, lineno, raw)
        env = trace.env
        models = tuple((usage.role, usage.model) for usage in trace.usage)
        verdict = Judged(lineno, trace.id, (models, env.image_id, env.config_hash, env.ise_version))
        judged.append(verdict)
        verdict.attempt = AttemptRecord.of(trace)
        verdict.filtered = filter_reason(trace, cfg)
        if verdict.filtered is None or (cfg.subagent_rows and verdict.filtered == WHOLE_DELEGATION):
            row = canonical_row(trace)
            if verdict.filtered is None:
                _judge_row(verdict, row, cfg, rows)
            if cfg.subagent_rows:
                sub_rows = subagent_rows(trace, row["metadata"])
                verdict.subagents = [
                    _judge_row(Judged(lineno, sub["id"], verdict.provenance, parent=trace.id), sub, cfg, rows)
                    for sub in sub_rows
                ]
    return judged, (arrow_rows(rows) if rows else None)


def _judge_row(verdict: Judged, row: Row, cfg: ExportConfig, rows: list[Row]) -> Judged:
    """Validate one row and, if it is legal, render it in every format (its Parquet row goes into `rows`)."""
    verdict.problems = validate_conversation(row["messages"], row["tools"])
    if verdict.problems:
        return verdict
    verdict.metadata, verdict.messages = row["metadata"], len(row["messages"])
    verdict.tokens = approx_tokens(row["messages"], row["tools"])
    verdict.lines, verdict.dropped_texts = jsonl_lines(row, cfg.formats)
    if "parquet" in cfg.formats:
        verdict.index = len(rows)
        rows.append(row)
    return verdict


def split_intents(intent_ids: Iterable[str], fraction: float, seed: int) -> set[str]:
    """The intents held out for validation: the round(fraction * n) intents that rank first under a seeded hash
    (at least one when fraction > 0 and there are two or more intents). Deterministic, order-independent."""
    unique = sorted(set(intent_ids))
    if fraction <= 0 or len(unique) < 2:
        return set()
    count = min(len(unique) - 1, max(1, round(fraction * len(unique))))
    ranked = sorted(unique, key=lambda i: hashlib.sha256(f"{seed}:{i}".encode()).digest())
    return set(ranked[:count])


# --- the export ----------------------------------------------------------------------------------------------


def export(
    traces_path: Path,
    out_dir: Path,
    cfg: ExportConfig,
    *,
    template: ChatTemplate | None = None,
    processes: int | None = None,
) -> ExportSummary:
    """Read, filter, validate, count, check, split and write; see the module docstring for the layout.
    `processes` defaults to the number of cores; 1 runs everything in this process."""
    _check_target(out_dir, traces_path)
    # Millions of small dicts and strings, none in reference cycles: the cyclic GC would rescan them over and
    # over (measured: 3x slower reading and Parquet conversion). Reference counting still frees everything.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _export(traces_path, out_dir, cfg, template, processes or available_cores())
    finally:
        if gc_was_enabled:
            gc.enable()


def _export(
    traces_path: Path, out_dir: Path, cfg: ExportConfig, template: ChatTemplate | None, processes: int
) -> ExportSummary:
    summary = ExportSummary(out_dir=out_dir)
    filtered: list[Row] = []
    rejects: list[Row] = []
    if "parquet" in cfg.formats:
        parquet_schemas()  # imports `datasets` once, before the workers fork
    with summary.timed("read, validate, format"):
        candidates, tables = _select(traces_path, cfg, summary, filtered, rejects, processes)
    with summary.timed("count tokens"):
        summary.token_counter = _count_tokens(candidates, cfg, template)
        if cfg.max_tokens is not None:
            candidates = _drop_long(candidates, cfg.max_tokens, summary, filtered)
    with summary.timed("render check"):
        candidates = _render_check(candidates, cfg, template, summary, rejects)
    summary.rejected = len(rejects)
    with summary.timed("split and stats"):
        intents = (c.metadata["intent_id"] for c in candidates)
        held_out = split_intents(intents, cfg.validation_fraction, cfg.seed)
        splits = {
            "train": [c for c in candidates if c.metadata["intent_id"] not in held_out],
            "validation": [c for c in candidates if c.metadata["intent_id"] in held_out],
        }
        summary.rows = {name: len(rows) for name, rows in splits.items()}
        summary.stats = {name: split_stats(rows) for name, rows in splits.items()}
        summary.yields = summary.attempts.table(exported=verified_rows(c.metadata for c in candidates))
    _write_all(out_dir, splits, tables, filtered, rejects, cfg, summary, traces_path)
    return summary


def _check_target(out_dir: Path, traces_path: Path) -> None:
    """Refuse to replace a folder we did not write (`-o .` must never wipe someone's work), or one holding the
    input; and prove the folder beside it takes the staging folder, before any work."""
    refuse_inputs(out_dir, [traces_path])
    if within(traces_path, out_dir):
        raise InputError(f"output {out_dir} holds the input {traces_path}: replacing it would destroy the input")
    if out_dir.exists() and (not out_dir.is_dir() or (any(out_dir.iterdir()) and not (out_dir / MANIFEST).exists())):
        raise IseError(f"{out_dir} exists and is not an ise export folder (no {MANIFEST}); choose another -o")
    writable_folder(out_dir.parent, out_dir)


def _select(
    traces_path: Path,
    cfg: ExportConfig,
    summary: ExportSummary,
    filtered: list[Row],
    rejects: list[Row],
    processes: int,
) -> tuple[list[Candidate], list[Any]]:
    """Read every trace; keep those the filters pass whose conversation is legal; note the rest with reasons.
    Workers handle a chunk of lines each; results come back in file order. Returns the kept lines and the Arrow
    tables their Parquet rows are in."""
    candidates: list[Candidate] = []
    tables: list[Any] = []
    ids = TraceIds(traces_path)
    provenance = _Provenance()
    jobs = ((span, cfg) for span in file_spans(traces_path))
    for chunk, table in ordered_map(judge_lines, jobs, processes):
        if table is not None:
            tables.append(table)
        for judged in chunk:
            ids.add(judged.id, judged.line)
            summary.read += 1
            provenance.add(*judged.provenance)
            if judged.attempt is not None:
                summary.attempts.add(judged.attempt)
            if judged.filtered is not None:
                summary.filtered[judged.filtered] += 1
                filtered.append({"id": judged.id, "line": judged.line, "reason": judged.filtered})
            for row in ([] if judged.filtered else [judged]) + judged.subagents:
                if row.problems:
                    reject = {"id": row.id, "line": row.line, "stage": "validation", "reasons": row.problems}
                    rejects.append(reject)
                else:
                    row.part = len(tables) - 1 if row.index >= 0 else -1
                    candidates.append(row)
    if not summary.read:
        raise InputError(f"{traces_path}: no traces in the file, nothing to export")
    summary.provenance = provenance.as_dict()
    return candidates, tables


def _count_tokens(candidates: list[Candidate], cfg: ExportConfig, template: ChatTemplate | None) -> str:
    """Real counts when a limit asks for them and a tokenizer is at hand; else the workers' approximations."""
    if template is None or cfg.token_counter == "approx" or cfg.max_tokens is None:
        return APPROX_TOKENS
    for candidate in candidates:
        row = candidate.row()
        candidate.tokens = template.count_tokens(row["messages"], row["tools"])
    return template.name


def _drop_long(candidates: list[Candidate], limit: int, summary: ExportSummary, filtered: list[Row]) -> list[Candidate]:
    kept = []
    for candidate in candidates:
        if candidate.tokens > limit:
            summary.filtered["too_many_tokens"] += 1
            filtered.append({"id": candidate.id, "line": candidate.line, "reason": "too_many_tokens"})
        else:
            kept.append(candidate)
    return kept


def _render_check(
    candidates: list[Candidate],
    cfg: ExportConfig,
    template: ChatTemplate | None,
    summary: ExportSummary,
    rejects: list[Row],
) -> list[Candidate]:
    """Render a seeded sample through the real chat template; rows whose parts are misplaced are rejected."""
    if template is None or cfg.render_samples == 0 or not candidates:
        return candidates
    sample = random.Random(cfg.seed).sample(candidates, min(cfg.render_samples, len(candidates)))
    failed: set[str] = set()
    for candidate in sample:
        row = candidate.row()
        messages, tools = row["messages"], row["tools"]
        try:
            problems = check_rendered(template.render(messages, tools), messages)
        except IseError as exc:
            problems = [f"the template server refused it: {exc}"]
        if problems:
            failed.add(candidate.id)
            rejects.append({"id": candidate.id, "line": candidate.line, "stage": "render", "reasons": problems})
    summary.render_checked, summary.render_failed = len(sample), len(failed)
    return [c for c in candidates if c.id not in failed]


# --- statistics and provenance -------------------------------------------------------------------------------


def split_stats(candidates: Sequence[Candidate]) -> dict[str, Any]:
    metas = [c.metadata for c in candidates]
    return {
        "rows": len(candidates),
        "messages": _describe([c.messages for c in candidates]),
        "user_turns": _describe([m["user_turns"] for m in metas]),
        "tool_calls": _describe([m["tool_calls"] for m in metas]),
        "tokens": _describe([c.tokens for c in candidates]),
        "with_recovery": sum(m["recoveries"] > 0 for m in metas),
        "failed_checks": sum(not m["passed"] for m in metas),
        "subagent_rows": sum(m["subagent"] for m in metas),
        "domains": dict(Counter(m["domain"] for m in metas).most_common()),
        "complexity": dict(Counter(m["complexity"] for m in metas).most_common()),
        "termination": dict(Counter(m["termination"] for m in metas).most_common()),
    }


def _describe(values: list[int]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)
    return {
        "min": ordered[0],
        "median": ordered[len(ordered) // 2],
        "mean": round(sum(ordered) / len(ordered), 2),
        "max": ordered[-1],
    }


class _Provenance:
    """What the traces were made with: models per role, sandbox images, config hashes, ise versions."""

    def __init__(self) -> None:
        self.models: dict[str, Counter[str]] = {}
        self.images: Counter[str] = Counter()
        self.configs: Counter[str] = Counter()
        self.versions: Counter[str] = Counter()

    def add(self, models: Iterable[tuple[str, str]], image: str, config_hash: str, version: str) -> None:
        for role, model in models:
            self.models.setdefault(role, Counter())[model] += 1
        self.images[image] += 1
        self.configs[config_hash] += 1
        self.versions[version] += 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "models": {role: dict(counts) for role, counts in sorted(self.models.items())},
            "images": dict(self.images),
            "config_hashes": dict(self.configs),
            "ise_versions": dict(self.versions),
        }


# --- writing -------------------------------------------------------------------------------------------------


def _write_all(
    out_dir: Path,
    splits: dict[str, list[Candidate]],
    tables: list[Any],
    filtered: list[Row],
    rejects: list[Row],
    cfg: ExportConfig,
    summary: ExportSummary,
    traces_path: Path,
) -> None:
    make_folder(out_dir.parent, out_dir)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        staging.chmod(0o777 & ~current_umask())  # mkdtemp makes it 0700; the export is a folder like any other
        for split, candidates in splits.items():
            _write_split(staging, split, candidates, tables, cfg, summary)
        if task_formats := [f for f in cfg.formats if f in get_args(TaskFormat)]:
            with summary.timed("write " + ", ".join(task_formats)):
                exported = {
                    split: [c.id for c in candidates if c.parent is None] for split, candidates in splits.items()
                }
                summary.task_files = write_task_formats(staging, exported, traces_path, cfg)
        with summary.timed("write card"):
            write_jsonl(staging / "filtered.jsonl", filtered)
            write_jsonl(staging / "rejects.jsonl", rejects)
            (staging / MANIFEST).write_text(json.dumps(summary.as_dict(cfg), indent=2) + "\n", encoding="utf-8")
            (staging / "README.md").write_text(render_card(summary, cfg), encoding="utf-8")
        replace_dir(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _write_split(
    staging: Path, split: str, candidates: list[Candidate], tables: list[Any], cfg: ExportConfig, summary: ExportSummary
) -> None:
    for fmt in JSONL_FORMATS:
        if fmt in cfg.formats:
            with summary.timed(f"write {fmt}"):
                write_lines(staging / fmt / f"{split}.jsonl", (c.lines[fmt] for c in candidates))
    if "sharegpt" in cfg.formats:
        summary.sharegpt_dropped_texts += sum(c.dropped_texts for c in candidates)
    if "parquet" in cfg.formats:
        with summary.timed("write parquet"):
            # Candidates are in file order, so each worker table's rows form one run: take them run by run.
            runs = [(part, [c.index for c in group]) for part, group in itertools.groupby(candidates, lambda c: c.part)]
            write_parquet(staging / "parquet" / f"{split}.parquet", [(tables[part], rows) for part, rows in runs])


def render_card(summary: ExportSummary, cfg: ExportConfig) -> str:
    from jinja2 import Environment, PackageLoader, StrictUndefined

    env = Environment(loader=PackageLoader("ise", "templates"), undefined=StrictUndefined, keep_trailing_newline=True)
    return env.get_template("dataset_card.md.jinja").render(
        summary=summary, cfg=cfg, manifest=summary.as_dict(cfg), splits=SPLITS, yield_table=table_rows(summary.yields)
    )


# --- command -------------------------------------------------------------------------------------------------


def run_export(traces_path: Path, out_dir: Path, config: Config, *, console: Console) -> ExportSummary:
    """`ise export`: start the template server if the settings need one, export, print what happened."""
    cfg = config.export
    agent = config.llm_for("agent")
    backend = agent if isinstance(agent, EmbeddedBackend) else EmbeddedBackend()
    with chat_template_for(cfg, backend) as template:
        summary = export(traces_path, out_dir, cfg, template=template)
    total = sum(summary.rows.values())
    console.print(
        f"exported {total} rows (train {summary.rows['train']}, validation {summary.rows['validation']}) "
        f"from {summary.read} traces to {out_dir}"
    )
    if summary.filtered:
        reasons = ", ".join(f"{reason} {n}" for reason, n in sorted(summary.filtered.items()))
        console.print(f"left out by filters: {reasons} (see {out_dir / 'filtered.jsonl'})")
    if summary.rejected:
        console.print(f"[yellow]rejected {summary.rejected} rows[/] (reasons in {out_dir / 'rejects.jsonl'})")
    if summary.render_checked:
        ok = summary.render_checked - summary.render_failed
        console.print(f"render check: {ok}/{summary.render_checked} rows rendered correctly by {backend.model}")
    elif cfg.render_samples and total:
        console.print("render check skipped: the embedded model is not fetched (`ise llm fetch`)")
    return summary
