"""Typed JSONL I/O. Appends are whole lines, flushed and fsynced, so an interrupt never leaves half a record.

Reading is strict and names what it cannot read: a line that is not UTF-8 or not JSON stops with one InputError
naming the file and the line (the byte, for bad UTF-8). The one exception is the torn last line a hard kill can
leave in an output (no newline at the end): resume ignores it and the next append repairs it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from ise.errors import InputError
from ise.outputs import atomic_file

M = TypeVar("M", bound=BaseModel)


def read_records(path: Path, model: type[M], *, unique_ids: bool = False) -> Iterator[M]:
    """Yield validated records; a bad line raises InputError naming the file and line number. With `unique_ids`,
    so does a record whose `id` an earlier line already had (a stage's input: resume goes by id)."""
    first_line: dict[Any, int] = {}
    for lineno, raw in _lines(path):
        try:
            record = model.model_validate_json(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "record"
            raise InputError(f"{path}:{lineno}: invalid {model.__name__}: {where}: {first['msg']}") from None
        if unique_ids:
            key = getattr(record, "id", None)
            if first_line.setdefault(key, lineno) != lineno:
                raise InputError(f"{path}:{lineno}: duplicate id {key!r} (first on line {first_line[key]})")
        yield record


def read_dicts(path: Path) -> Iterator[dict[str, Any]]:
    """Yield raw JSON objects (for outputs we only need ids from)."""
    for lineno, raw in _lines(path):
        yield _object(path, lineno, raw)


def _object(path: Path, lineno: int, raw: str) -> dict[str, Any]:
    try:
        obj = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}:{lineno}: not valid JSON: {exc.msg}") from None
    except RecursionError:
        raise InputError(f"{path}:{lineno}: not valid JSON: nested too deeply") from None
    if not isinstance(obj, dict):
        raise InputError(f"{path}:{lineno}: expected a JSON object")
    return obj


def decode_line(path: Path, lineno: int, raw: bytes) -> str:
    """A line as text; InputError naming the file, line and byte when it is not UTF-8."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}:{lineno}: not valid UTF-8 (byte {exc.start + 1} of the line)") from None


def _raw_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from None
    with handle:
        try:
            yield from enumerate(handle, start=1)
        except OSError as exc:
            raise InputError(f"cannot read {path}: {exc.strerror}") from None


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    for lineno, raw in _raw_lines(path):
        if raw.strip():
            yield lineno, decode_line(path, lineno, raw)


def done_ids(path: Path) -> set[str]:
    """Ids already written to an output file. A torn last line (from kill -9) is ignored and later repaired; any
    other line that is not UTF-8 or not a JSON object means the file was damaged: one error naming it."""
    if not path.exists():
        return set()
    ids: set[str] = set()
    for lineno, raw in _raw_lines(path):
        if not raw.endswith(b"\n") or not raw.strip():
            continue  # a torn last line, or a blank one
        try:
            obj = _object(path, lineno, decode_line(path, lineno, raw))
        except InputError as exc:
            raise InputError(f"{exc} (in an existing output: fix or move it, then rerun)") from None
        if isinstance(obj.get("id"), str):
            ids.add(obj["id"])
    return ids


def repair_tail(path: Path) -> None:
    """Drop a trailing partial line so that appends after a hard kill start on a clean line."""
    if not path.exists():
        return
    with path.open("r+b") as handle:
        size = handle.seek(0, os.SEEK_END)
        if size == 0:
            return
        handle.seek(size - 1)
        if handle.read(1) == b"\n":
            return
        keep, chunk = size, 1 << 16
        while keep > 0:  # find the last newline, reading backwards
            start = max(0, keep - chunk)
            handle.seek(start)
            cut = handle.read(keep - start).rfind(b"\n")
            if cut >= 0:
                keep = start + cut + 1
                break
            keep = start
        handle.truncate(keep)


class JsonlWriter:
    """Appends one JSON object per line; each write is a single os.write of a complete line."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        repair_tail(path)
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)

    def write(self, record: BaseModel | dict[str, Any]) -> None:
        line = record.model_dump_json() if isinstance(record, BaseModel) else json.dumps(record, ensure_ascii=False)
        data = (line + "\n").encode("utf-8")
        while data:  # os.write may write less than asked (signals, full disks); finish the line
            data = data[os.write(self._fd, data) :]

    def close(self) -> None:
        try:
            os.fsync(self._fd)
        finally:
            os.close(self._fd)

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_atomic(path: Path, records: list[BaseModel] | list[dict[str, Any]]) -> None:
    """Write a whole file at once via a temp file + rename: readers never see a partial file."""
    with atomic_file(path) as handle:
        for record in records:
            line = record.model_dump_json() if isinstance(record, BaseModel) else json.dumps(record, ensure_ascii=False)
            handle.write((line + "\n").encode("utf-8"))
