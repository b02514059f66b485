"""`ise export`: traces -> filtered, validated, split SFT datasets in several formats, written atomically.

The output folder holds (each format only if selected):

    openai/{train,validation}.jsonl      canonical: messages + tools, tool-call arguments as JSON strings
    trl/{train,validation}.jsonl         messages + tools, arguments as objects (what HF chat templates read)
    sharegpt/{train,validation}.jsonl    conversations (human/gpt/function_call/observation) + system + tools
    parquet/{train,validation}.parquet   the canonical rows; arguments stay JSON strings, see FIELD_NOTES
    filtered.jsonl                       traces the filters left out, with the reason
    rejects.jsonl                        rows that failed validation or the render check, with every reason
    export.json                          counts, filters, provenance, statistics (also marks the folder as ours)
    README.md                            the dataset card

Everything is written into a temporary folder beside the target and renamed into place at the end, so a failure
(bad input line, full disk, Ctrl-C) leaves either the previous export or nothing, never half of one.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import ValidationError
from rich.console import Console

from ise.config import Config, ExportConfig
from ise.errors import InputError, IseError
from ise.llm.config import EmbeddedBackend
from ise.records import TRACE_SCHEMA_VERSION, Trace
from ise.stages.sft_rows import (
    Row,
    approx_tokens,
    check_rendered,
    message_records,
    openai_messages,
    openai_tools,
    sharegpt_row,
    tool_records,
    trl_messages,
    validate_conversation,
)

if TYPE_CHECKING:
    from ise.llm.embedded import EmbeddedServer

SPLITS = ("train", "validation")
MANIFEST = "export.json"


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


@dataclass
class Candidate:
    """A trace that passed the filters and validation, as its canonical row."""

    id: str
    line: int
    row: Row
    tokens: int | None = None


@dataclass
class ExportSummary:
    out_dir: Path
    read: int = 0
    filtered: Counter[str] = field(default_factory=Counter)
    rejected: int = 0
    rows: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SPLITS, 0))
    token_counter: str = "none"
    render_checked: int = 0
    render_failed: int = 0
    sharegpt_dropped_texts: int = 0
    stats: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)

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
        }


# --- reading -------------------------------------------------------------------------------------------------


def read_traces(path: Path) -> Iterator[tuple[int, Trace]]:
    """Yield (line number, Trace); any bad line stops the export with one error naming it."""
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from None
    with handle:
        for lineno, raw in enumerate(handle, start=1):
            if raw.strip():
                yield lineno, _parse_trace(path, lineno, raw)


def _parse_trace(path: Path, lineno: int, raw: bytes) -> Trace:
    try:
        return Trace.model_validate_json(raw)
    except ValidationError as exc:
        error = exc
    # Only failures pay for a second parse, to say *why* in the user's terms.
    try:
        obj = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as decode_error:
        raise InputError(f"{path}:{lineno}: not valid JSON ({decode_error})") from None
    version = obj.get("schema_version") if isinstance(obj, dict) else None
    if isinstance(version, int) and version != TRACE_SCHEMA_VERSION:
        raise InputError(
            f"{path}:{lineno}: trace schema version {version}, but this ise reads version {TRACE_SCHEMA_VERSION}"
        )
    first = error.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "record"
    raise InputError(f"{path}:{lineno}: not a Trace (schema v{TRACE_SCHEMA_VERSION}): {where}: {first['msg']}")


# --- selection -----------------------------------------------------------------------------------------------


def is_infra_error(trace: Trace) -> bool:
    return trace.infra_error is not None or trace.termination == "infra_error" or "infra_error" in trace.tags


def filter_reason(trace: Trace, cfg: ExportConfig) -> str | None:
    """Why the filters leave this trace out, or None to keep it (then it still has to pass validation)."""
    if cfg.exclude_infra_errors and is_infra_error(trace):
        return "infra_error"
    if not cfg.include_failed and not trace.outcome.passed:
        return "checks_failed"
    if cfg.require_recovery and not any(f.recovered_by is not None for f in trace.failures):
        return "no_recovery"
    if trace.turns < cfg.min_user_turns:
        return "too_few_user_turns"
    if cfg.max_user_turns is not None and trace.turns > cfg.max_user_turns:
        return "too_many_user_turns"
    return None


def canonical_row(trace: Trace) -> Row:
    """The OpenAI-format row plus the metadata a trainer may filter or weight by."""
    messages = openai_messages(trace.messages)
    return {
        "id": trace.id,
        "messages": messages,
        "tools": openai_tools(trace.tools),
        "metadata": {
            "intent_id": trace.id,
            "domain": trace.intent.domain,
            "complexity": trace.intent.complexity,
            "persona": trace.intent.persona.role,
            "passed": trace.outcome.passed,
            "termination": str(trace.termination),
            "user_turns": trace.turns,
            "tool_calls": sum(len(m.tool_calls) for m in trace.messages),
            "recoveries": trace.recoveries,
            "tags": list(trace.tags),
        },
    }


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
    traces_path: Path, out_dir: Path, cfg: ExportConfig, *, template: ChatTemplate | None = None
) -> ExportSummary:
    """Read, filter, validate, count, split, check and write; see the module docstring for the layout."""
    _check_target(out_dir)
    summary = ExportSummary(out_dir=out_dir)
    filtered: list[Row] = []
    rejects: list[Row] = []
    candidates: list[Candidate] = []
    seen: dict[str, int] = {}
    provenance = _Provenance()
    for lineno, trace in read_traces(traces_path):
        if trace.id in seen:
            raise InputError(
                f"{traces_path}:{lineno}: duplicate trace id {trace.id!r} (first on line {seen[trace.id]})"
            )
        seen[trace.id] = lineno
        summary.read += 1
        provenance.add(trace)
        reason = filter_reason(trace, cfg)
        if reason is not None:
            summary.filtered[reason] += 1
            filtered.append({"id": trace.id, "line": lineno, "reason": reason})
            continue
        row = canonical_row(trace)
        problems = validate_conversation(row["messages"], row["tools"])
        if problems:
            rejects.append({"id": trace.id, "line": lineno, "stage": "validation", "reasons": problems})
            continue
        candidates.append(Candidate(trace.id, lineno, row))

    summary.token_counter = _count_tokens(candidates, cfg, template)
    if cfg.max_tokens is not None:
        candidates = _drop_long(candidates, cfg.max_tokens, summary, filtered)
    candidates = _render_check(candidates, cfg, template, summary, rejects)
    summary.rejected = len(rejects)
    summary.provenance = provenance.as_dict()

    held_out = split_intents((c.row["metadata"]["intent_id"] for c in candidates), cfg.validation_fraction, cfg.seed)
    splits = {
        "train": [c for c in candidates if c.row["metadata"]["intent_id"] not in held_out],
        "validation": [c for c in candidates if c.row["metadata"]["intent_id"] in held_out],
    }
    summary.rows = {name: len(rows) for name, rows in splits.items()}
    summary.stats = {name: split_stats(rows) for name, rows in splits.items()}
    _write_all(out_dir, splits, filtered, rejects, cfg, summary)
    return summary


def _check_target(out_dir: Path) -> None:
    """Refuse to replace a folder we did not write: `-o .` must never wipe someone's work."""
    if out_dir.exists() and (not out_dir.is_dir() or (any(out_dir.iterdir()) and not (out_dir / MANIFEST).exists())):
        raise IseError(f"{out_dir} exists and is not an ise export folder (no {MANIFEST}); choose another -o")


def _count_tokens(candidates: list[Candidate], cfg: ExportConfig, template: ChatTemplate | None) -> str:
    """Count every kept row when a limit asks for it (else only the stats need counts, so the cheap way)."""
    use_template = template is not None and cfg.token_counter != "approx" and cfg.max_tokens is not None
    for candidate in candidates:
        messages, tools = candidate.row["messages"], candidate.row["tools"]
        if use_template and template is not None:
            candidate.tokens = template.count_tokens(messages, tools)
        else:
            candidate.tokens = approx_tokens(messages, tools)
    return template.name if use_template and template is not None else "approx (UTF-8 bytes / 4)"


def _drop_long(candidates: list[Candidate], limit: int, summary: ExportSummary, filtered: list[Row]) -> list[Candidate]:
    kept = []
    for candidate in candidates:
        if candidate.tokens is not None and candidate.tokens > limit:
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
        messages, tools = candidate.row["messages"], candidate.row["tools"]
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
    metas = [c.row["metadata"] for c in candidates]
    tokens = [c.tokens for c in candidates if c.tokens is not None]
    return {
        "rows": len(candidates),
        "messages": _describe([len(c.row["messages"]) for c in candidates]),
        "user_turns": _describe([m["user_turns"] for m in metas]),
        "tool_calls": _describe([m["tool_calls"] for m in metas]),
        "tokens": _describe(tokens),
        "with_recovery": sum(m["recoveries"] > 0 for m in metas),
        "failed_checks": sum(not m["passed"] for m in metas),
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

    def add(self, trace: Trace) -> None:
        for usage in trace.usage:
            self.models.setdefault(usage.role, Counter())[usage.model] += 1
        self.images[trace.env.image_id] += 1
        self.configs[trace.env.config_hash] += 1
        self.versions[trace.env.ise_version] += 1

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
    filtered: list[Row],
    rejects: list[Row],
    cfg: ExportConfig,
    summary: ExportSummary,
) -> None:
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        for name, rows in splits.items():
            summary.sharegpt_dropped_texts += _write_split(staging, name, rows, cfg)
        _write_jsonl(staging / "filtered.jsonl", filtered)
        _write_jsonl(staging / "rejects.jsonl", rejects)
        (staging / MANIFEST).write_text(json.dumps(summary.as_dict(cfg), indent=2) + "\n", encoding="utf-8")
        (staging / "README.md").write_text(render_card(summary, cfg), encoding="utf-8")
        _replace_dir(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _write_split(staging: Path, split: str, rows: list[Candidate], cfg: ExportConfig) -> int:
    """Write one split in every selected format; returns the ShareGPT texts dropped (see sharegpt_row)."""
    writers = {
        fmt: _open(staging / fmt / f"{split}.jsonl") for fmt in ("openai", "trl", "sharegpt") if fmt in cfg.formats
    }
    dropped = 0
    try:
        for candidate in rows:
            row = candidate.row
            if "openai" in writers:
                writers["openai"].write(_dumps(row) + "\n")
            if "trl" in writers:
                writers["trl"].write(_dumps({"messages": trl_messages(row["messages"]), "tools": row["tools"]}) + "\n")
            if "sharegpt" in writers:
                shared, lost = sharegpt_row(row["messages"], row["tools"])
                dropped += lost
                writers["sharegpt"].write(_dumps({"id": row["id"], **shared}) + "\n")
    finally:
        for handle in writers.values():
            handle.close()
    if "parquet" in cfg.formats:
        write_parquet(staging / "parquet" / f"{split}.parquet", [c.row for c in rows])
    return dropped


def _open(path: Path) -> Any:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.open("w", encoding="utf-8")


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def _write_jsonl(path: Path, rows: list[Row]) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(_dumps(row) + "\n")


def _replace_dir(staging: Path, out_dir: Path) -> None:
    """Swap the finished folder in: the old export (if any) is moved aside first and removed only afterwards."""
    old = None
    if out_dir.exists():
        old = out_dir.with_name(f".{out_dir.name}.old-{staging.name.rsplit('.', 1)[-1]}")
        out_dir.rename(old)
    staging.rename(out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# --- Parquet -------------------------------------------------------------------------------------------------


def _parquet_features(parameters: Any) -> Any:
    """The canonical row as `datasets` features. Tool-call arguments stay strings: as structs Arrow would merge
    every row's argument keys into one type and hand back keys a call never had (FIELD_NOTES, Export). Tool
    parameters use the Json type: `datasets` gives back the exact object, other readers see a JSON string."""
    from datasets import Features, List, Value

    string, count = Value("string"), Value("int64")
    call = {"id": string, "type": string, "function": {"name": string, "arguments": string}}
    message = {"role": string, "content": string, "tool_calls": List(call), "tool_call_id": string}
    tool = {"type": string, "function": {"name": string, "description": string, "parameters": parameters}}
    metadata = {
        "intent_id": string,
        "domain": string,
        "complexity": string,
        "persona": string,
        "passed": Value("bool"),
        "termination": string,
        "user_turns": count,
        "tool_calls": count,
        "recoveries": count,
        "tags": List(string),
    }
    return Features({"id": string, "messages": List(message), "tools": List(tool), "metadata": metadata})


def write_parquet(path: Path, rows: Sequence[Row], batch_size: int = 1000) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq
    from datasets import Json, Value

    schema = _parquet_features(Json()).arrow_schema
    # pyarrow cannot build the Json extension type from Python objects: build with strings, then cast.
    plain = _parquet_features(Value("string")).arrow_schema
    path.parent.mkdir(parents=True, exist_ok=True)
    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, len(rows), batch_size):
            batch = [_with_string_parameters(row) for row in rows[start : start + batch_size]]
            writer.write_table(pa.Table.from_pylist(batch, schema=plain).cast(schema))
        if not rows:
            writer.write_table(plain.empty_table().cast(schema))


def _with_string_parameters(row: Row) -> Row:
    tools = [
        {**t, "function": {**t["function"], "parameters": _dumps(t["function"]["parameters"])}} for t in row["tools"]
    ]
    return {**row, "tools": tools}


def canonical_from_arrow(row: Row) -> Row:
    """A row read back from the Parquet file (with `datasets` or plain pyarrow) in the canonical JSONL shape:
    Arrow gives every message every field, so fields the canonical row leaves out come back as nulls."""
    messages = [{k: v for k, v in m.items() if v is not None or k == "content"} for m in row["messages"]]
    tools = [
        {**t, "function": {**t["function"], "parameters": _loads_if_str(t["function"]["parameters"])}}
        for t in row["tools"]
    ]
    return {**row, "messages": messages, "tools": tools}


def _loads_if_str(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


# --- the dataset card ----------------------------------------------------------------------------------------


def render_card(summary: ExportSummary, cfg: ExportConfig) -> str:
    from jinja2 import Environment, PackageLoader, StrictUndefined

    env = Environment(loader=PackageLoader("ise", "templates"), undefined=StrictUndefined, keep_trailing_newline=True)
    return env.get_template("dataset_card.md.jinja").render(
        summary=summary, cfg=cfg, manifest=summary.as_dict(cfg), splits=SPLITS
    )


# --- command ---------------------------------------------------------------------------------------------------


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
    elif cfg.render_samples:
        console.print("render check skipped: the embedded model is not fetched (`ise llm fetch`)")
    return summary
