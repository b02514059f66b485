"""The one reader of traces.jsonl that export, report and view share, so all three agree on what a valid file is.

A valid traces file: every non-blank line is a UTF-8 JSON object that validates as a Trace of a schema version this
ise reads (1 up to ise.records.TRACE_SCHEMA_VERSION; older traces are a subset of the current schema and read as
they are), and no trace id appears twice. The first line that breaks a rule stops the read with one InputError
naming the file, the line and the rule. Whether an empty file is acceptable is the command's call: export and view
refuse one (nothing to export or show), report shows a run whose execute stage produced nothing.

The file is read in spans of whole lines (see file_spans), so that export's worker processes each read their own.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from pydantic import ValidationError

from ise.errors import InputError
from ise.records import TRACE_SCHEMA_VERSION, Trace

Span = tuple[Path, int, int, int]
"""(file, byte offset, byte length, number of its first line): a run of whole lines a worker reads itself, so
the input never travels through a pipe."""

SPAN_BYTES = 4 << 20
"""Input read per worker job: big enough to amortise the hand-off, small enough to keep both cores busy."""


def read_traces(path: Path) -> Iterator[tuple[int, Trace]]:
    """Yield (line number, Trace) for every line of a valid traces file; the first bad line raises InputError."""
    ids = TraceIds(path)
    for span in file_spans(path):
        for lineno, raw in read_span(span):
            trace = parse_trace(path, lineno, raw)
            ids.add(trace.id, lineno)
            yield lineno, trace


def load_traces(path: Path, *, allow_empty: bool = False) -> list[Trace]:
    traces = [trace for _, trace in read_traces(path)]
    if not traces and not allow_empty:
        raise InputError(f"{path}: no traces in the file")
    return traces


class TraceIds:
    """Trace ids seen so far in one file: the second use of an id is an error naming both lines."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.first_line: dict[str, int] = {}

    def add(self, trace_id: str, lineno: int) -> None:
        first = self.first_line.setdefault(trace_id, lineno)
        if first != lineno:
            raise InputError(f"{self.path}:{lineno}: duplicate trace id {trace_id!r} (first on line {first})")


def parse_trace(path: Path, lineno: int, raw: bytes) -> Trace:
    """One line as a Trace, or InputError naming the line and why (encoding, JSON, schema version, field)."""
    try:
        trace = Trace.model_validate_json(raw)
    except ValidationError as exc:
        error = exc
    else:
        _check_version(path, lineno, trace.schema_version)
        return trace
    # Only failures pay for a second parse, to say *why* in the user's terms.
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as decode_error:
        raise InputError(f"{path}:{lineno}: not valid UTF-8 (byte {decode_error.start + 1} of the line)") from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as decode_error:
        raise InputError(f"{path}:{lineno}: not valid JSON ({decode_error})") from None
    except RecursionError:
        raise InputError(f"{path}:{lineno}: not valid JSON (nested too deeply)") from None
    version = obj.get("schema_version") if isinstance(obj, dict) else None
    if isinstance(version, int) and not isinstance(version, bool):
        _check_version(path, lineno, version)
    first = error.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "record"
    raise InputError(f"{path}:{lineno}: not a Trace (schema v{TRACE_SCHEMA_VERSION}): {where}: {first['msg']}")


def _check_version(path: Path, lineno: int, version: int) -> None:
    if version > TRACE_SCHEMA_VERSION:
        raise InputError(
            f"{path}:{lineno}: trace schema version {version} is newer than this ise reads "
            f"(up to {TRACE_SCHEMA_VERSION}): upgrade ise to read it"
        )
    if version < 1:
        raise InputError(f"{path}:{lineno}: trace schema version {version} does not exist (versions start at 1)")


def file_spans(path: Path, size: int | None = None) -> Iterator[Span]:
    """Cut a file into spans of whole lines of about `size` bytes (a longer line makes a longer span)."""
    size = size or SPAN_BYTES
    if path.is_dir():
        raise InputError(f"cannot read {path}: it is a directory; give a traces.jsonl file")
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from None
    offset, lineno = 0, 1
    with handle:
        while block := handle.read(size):
            while not block.endswith(b"\n") and (more := handle.read(size)):
                cut = more.find(b"\n")
                if cut >= 0:
                    handle.seek(cut + 1 - len(more), 1)
                    block += more[: cut + 1]
                    break
                block += more
            yield path, offset, len(block), lineno
            offset += len(block)
            lineno += block.count(b"\n")


def read_span(span: Span) -> Iterator[tuple[int, bytes]]:
    """The non-blank lines of a span with their line numbers."""
    path, offset, length, first = span
    with path.open("rb") as handle:
        handle.seek(offset)
        data = handle.read(length)
    for lineno, raw in enumerate(data.split(b"\n"), start=first):
        if raw.strip():
            yield lineno, raw
