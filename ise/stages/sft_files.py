"""Turning canonical rows into file content, and the file/process plumbing of an export.

Each format is a function of one canonical row (see sft_rows.py): JSONL formats give a line of text, Parquet an
Arrow row batch. Export workers produce them per chunk of input, so the main process only routes finished lines
and tables to the files of their split.
"""

from __future__ import annotations

import functools
import itertools
import multiprocessing
import os
import shutil
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from pydantic_core import from_json, to_json

from ise.stages.sft_rows import Row, json_text, sharegpt_row, trl_messages

T = TypeVar("T")
R = TypeVar("R")

JSONL_FORMATS = ("openai", "trl", "sharegpt")


# --- JSONL formats -------------------------------------------------------------------------------------------


LINE_SEPARATORS = ((b"\xe2\x80\xa8", b"\\u2028"), (b"\xe2\x80\xa9", b"\\u2029"))


def dumps(obj: Any) -> bytes:
    """One JSONL line (UTF-8, no newline) by pydantic's Rust encoder, several times faster than the json module.
    U+2028/U+2029 are escaped: legal in JSON, but some line splitters (str.splitlines, JavaScript) break on them."""
    data = to_json(obj)
    for raw, escaped in LINE_SEPARATORS:
        if raw in data:
            data = data.replace(raw, escaped)
    return data


def jsonl_lines(row: Row, formats: Iterable[str]) -> tuple[dict[str, bytes], int]:
    """One line per selected JSONL format (the canonical one always), and how many assistant texts the ShareGPT
    line could not hold (see sharegpt_row)."""
    lines = {"openai": dumps(row)}
    dropped = 0
    if "trl" in formats:
        lines["trl"] = dumps({"messages": trl_messages(row["messages"]), "tools": row["tools"]})
    if "sharegpt" in formats:
        shared, dropped = sharegpt_row(row["messages"], row["tools"])
        lines["sharegpt"] = dumps({"id": row["id"], **shared})
    return lines, dropped


def write_lines(path: Path, lines: Iterable[bytes]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:
        handle.writelines(line + b"\n" for line in lines)


def write_jsonl(path: Path, rows: Iterable[Row]) -> None:
    write_lines(path, (dumps(row) for row in rows))


# --- Parquet -------------------------------------------------------------------------------------------------


def parquet_features(parameters: Any) -> Any:
    """The canonical row as `datasets` features. Tool-call arguments stay strings: as structs Arrow would merge
    every row's argument keys into one type and hand back keys a call never had. Tool
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
        "subagent": Value("bool"),
        "parent_id": string,
    }
    return Features({"id": string, "messages": List(message), "tools": List(tool), "metadata": metadata})


@functools.cache
def parquet_schemas() -> tuple[Any, Any]:
    """(build schema, file schema): pyarrow cannot build the Json extension type from Python objects, so rows
    are built with `parameters` as a string and cast to the file schema when written."""
    from datasets import Json, Value

    return parquet_features(Value("string")).arrow_schema, parquet_features(Json()).arrow_schema


def arrow_rows(rows: Sequence[Row]) -> Any:
    """The rows as an Arrow table in the build schema."""
    import pyarrow as pa

    build, _ = parquet_schemas()
    return pa.Table.from_pylist([_with_string_parameters(row) for row in rows], schema=build)


def write_parquet(path: Path, parts: Sequence[tuple[Any, list[int]]]) -> None:
    """Write the rows at the given indices of each table, in order, as one Parquet file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    build, schema = parquet_schemas()
    taken = [table.take(pa.array(indices, pa.int64())) for table, indices in parts if indices]
    table = pa.concat_tables(taken) if taken else build.empty_table()
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table.cast(schema), path)


def _with_string_parameters(row: Row) -> Row:
    tools = [
        {**tool, "function": {**tool["function"], "parameters": json_text(tool["function"]["parameters"])}}
        for tool in row["tools"]
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
    return from_json(value) if isinstance(value, str) else value


# --- folders and processes -----------------------------------------------------------------------------------


def replace_dir(staging: Path, out_dir: Path) -> None:
    """Swap a finished folder in: the old one (if any) is moved aside first and removed only afterwards."""
    old = None
    if out_dir.exists():
        old = out_dir.with_name(f".{out_dir.name}.old-{staging.name.rsplit('.', 1)[-1]}")
        out_dir.rename(old)
    staging.rename(out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def available_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def ordered_map(function: Callable[[T], R], items: Iterable[T], processes: int) -> Iterator[R]:
    """map() over forked worker processes, results in input order, at most 2 x processes items in flight (so a
    big input is never all queued in memory). Fork lets workers use what the parent already imported; one
    item, or one process, runs inline. An exception in a worker is raised here, for the first failing item."""
    iterator = iter(items)
    head = list(itertools.islice(iterator, 2))
    if processes <= 1 or len(head) < 2:
        yield from map(function, itertools.chain(head, iterator))
        return
    with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("fork")) as pool:
        pending: deque[Future[R]] = deque()
        try:
            for item in itertools.chain(head, iterator):
                pending.append(pool.submit(function, item))
                if len(pending) >= 2 * processes:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
