"""Reading an export's `trl/` folder (or any JSONL of `messages` + `tools` rows) for training.

Rows are checked as they are read: a line that is not a JSON object, has no `messages` list, an unknown role, a
tool call whose arguments are not an object, or no assistant turn to learn from, is one InputError naming the file
and line. Tool-call arguments given as JSON strings (the `openai/` format) are decoded here, because Hugging Face
chat templates such as Qwen2.5's render them with `tojson` and need objects.

An export's folders are line-aligned (every format is written from the same row, in the same order), so the row
ids and plan ids that decontamination needs are read from the sibling `openai/` file when the TRL rows lack them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ise.errors import InputError
from ise.llm.toolcall import decode_arguments

Row = dict[str, Any]
ROLES = frozenset({"system", "user", "assistant", "tool"})


@dataclass
class TrainRow:
    """One conversation to train on, with where it came from."""

    messages: list[Row]
    tools: list[Row]
    where: str
    """file:line, for messages about this row."""
    row_id: str | None = None
    plan_id: str | None = None


@dataclass
class Dataset:
    train: list[TrainRow]
    validation: list[TrainRow] = field(default_factory=list)


def read_dataset(data: Path) -> Dataset:
    """`data` is a folder holding train.jsonl (and optionally validation.jsonl), or one .jsonl file."""
    if data.is_dir():
        train = data / "train.jsonl"
        if not train.is_file():
            raise InputError(f"{data}: no train.jsonl in the folder (give an export's trl/ folder)")
        validation = data / "validation.jsonl"
        return Dataset(read_rows(train), read_rows(validation) if validation.is_file() else [])
    if data.is_file():
        return Dataset(read_rows(data))
    raise InputError(f"{data}: no such file or folder")


def read_rows(path: Path) -> list[TrainRow]:
    rows = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if line.strip():
                rows.append(parse_row(line, f"{path}:{number}"))
    ids = _sibling_ids(path, len(rows))
    for row, (row_id, plan_id) in zip(rows, ids, strict=False):
        row.row_id = row.row_id or row_id
        row.plan_id = row.plan_id or plan_id
    return rows


def parse_row(line: str, where: str) -> TrainRow:
    try:
        value = json.loads(line)
    except json.JSONDecodeError as exc:
        raise InputError(f"{where}: not JSON ({exc.msg})") from None
    if not isinstance(value, dict):
        raise InputError(f"{where}: a row must be a JSON object")
    messages = value.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InputError(f"{where}: no 'messages' list (is this an export's trl/ or openai/ folder?)")
    tools = value.get("tools") or []
    if not isinstance(tools, list):
        raise InputError(f"{where}: 'tools' must be a list")
    parsed = [_message(message, f"{where}: message {index}") for index, message in enumerate(messages)]
    if not any(message["role"] == "assistant" for message in parsed):
        raise InputError(f"{where}: no assistant message to learn from")
    metadata = value.get("metadata")
    metadata = metadata if isinstance(metadata, dict) else {}
    return TrainRow(parsed, tools, where, _str(value.get("id")), _str(metadata.get("intent_id")))


def _message(message: Any, where: str) -> Row:
    if not isinstance(message, dict) or message.get("role") not in ROLES:
        raise InputError(f"{where}: not a message with a role of {', '.join(sorted(ROLES))}")
    calls = message.get("tool_calls")
    if not calls:
        return {key: value for key, value in message.items() if key != "tool_calls"}
    decoded = []
    for call in calls:
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict):
            raise InputError(f"{where}: a tool call without a function")
        arguments = decode_arguments(function.get("arguments"))
        if arguments is None or not isinstance(function.get("name"), str):
            raise InputError(f"{where}: a tool call without a name, or with arguments that are not an object")
        decoded.append({**call, "function": {**function, "arguments": arguments}})
    return {**message, "tool_calls": decoded}


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _sibling_ids(path: Path, count: int) -> list[tuple[str | None, str | None]]:
    """(row id, plan id) per line of the export's openai/ file of the same split, when it is there and has as
    many rows; otherwise nothing is known."""
    sibling = path.parent.parent / "openai" / path.name
    if path.parent.name != "trl" or not sibling.is_file():
        return []
    ids = []
    with sibling.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                value = json.loads(line)
                ids.append((_str(value.get("id")), _str((value.get("metadata") or {}).get("intent_id"))))
    return ids if len(ids) == count else []
