"""Typed JSONL I/O. Appends are whole lines, flushed and fsynced, so an interrupt never leaves half a record."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from ise.errors import InputError

M = TypeVar("M", bound=BaseModel)


def read_records(path: Path, model: type[M]) -> Iterator[M]:
    """Yield validated records; a bad line raises InputError naming the file and line number."""
    for lineno, raw in _lines(path):
        try:
            yield model.model_validate_json(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "record"
            raise InputError(f"{path}:{lineno}: invalid {model.__name__}: {where}: {first['msg']}") from None


def read_dicts(path: Path) -> Iterator[dict[str, Any]]:
    """Yield raw JSON objects (for outputs we only need ids from)."""
    for lineno, raw in _lines(path):
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}:{lineno}: not valid JSON: {exc.msg}") from None
        if not isinstance(obj, dict):
            raise InputError(f"{path}:{lineno}: expected a JSON object")
        yield obj


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    try:
        handle = path.open(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from None
    with handle:
        for lineno, line in enumerate(handle, start=1):
            if line.strip():
                yield lineno, line


def done_ids(path: Path) -> set[str]:
    """Ids already written to an output file; a torn last line (from kill -9) is ignored and later repaired."""
    if not path.exists():
        return set()
    ids: set[str] = set()
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(obj, dict) and isinstance(obj.get("id"), str):
                ids.add(obj["id"])
    return ids


def repair_tail(path: Path) -> None:
    """Drop a trailing partial line so that appends after a hard kill start on a clean line."""
    if not path.exists():
        return
    data = path.read_bytes()
    if not data or data.endswith(b"\n"):
        return
    keep = data.rfind(b"\n") + 1
    with path.open("r+b") as handle:
        handle.truncate(keep)


class JsonlWriter:
    """Appends one JSON object per line; each write is a single os.write of a complete line."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        repair_tail(path)
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def write(self, record: BaseModel | dict[str, Any]) -> None:
        line = record.model_dump_json() if isinstance(record, BaseModel) else json.dumps(record, ensure_ascii=False)
        data = (line + "\n").encode("utf-8")
        while data:  # os.write may write less than asked (signals, full disks); finish the line
            data = data[os.write(self._fd, data) :]

    def close(self) -> None:
        os.fsync(self._fd)
        os.close(self._fd)

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_atomic(path: Path, records: list[BaseModel] | list[dict[str, Any]]) -> None:
    """Write a whole file at once via a temp file + rename: readers never see a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with JsonlWriter(tmp) as writer:
        for record in records:
            writer.write(record)
    tmp.replace(path)
