"""Tool calls carried in text: the constrained-decoding envelope and a tolerant parser for free-text calls.

Constrained mode (for small local models, which never emit structured `tool_calls`): the request's json_schema
is an anyOf over the tools, each `{"name": {"const": T}, "arguments": <T's parameters>}`, plus the pseudo-tool
`respond` whose arguments carry a plain answer (`{"content": str}`, or the caller's response schema). The model
can then only produce a well-formed call or an answer.

The tolerant parser reads calls that models write as text: bare JSON, ```json fences, `<tool_call>` tags, lists of
calls, `arguments` given as a JSON string, and the OpenAI `{"function": {...}}` shape.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from ise.records import ToolCall, ToolSpec

RESPOND = "respond"
"""The pseudo-tool a constrained model calls to answer in text instead of calling a tool."""

_TEXT_ANSWER: dict[str, Any] = {
    "type": "object",
    "properties": {"content": {"type": "string", "description": "Your reply to the user."}},
    "required": ["content"],
}
_TAG = re.compile(r"<tool_call>(.*?)(?:</tool_call>|$)", re.DOTALL)
_FENCE = re.compile(r"```[a-zA-Z]*[ \t]*\n?(.*?)(?:```|$)", re.DOTALL)
_NAME_KEYS = ("name", "tool", "tool_name", "function")
_ARGUMENT_KEYS = ("arguments", "parameters", "args", "input")


def new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


# --- constrained decoding -----------------------------------------------------------------------------------


def respond_tool(answer_schema: dict[str, Any] | None = None) -> ToolSpec:
    """The pseudo-tool offered next to the real ones; with a response schema its arguments are the answer."""
    if answer_schema is None:
        return ToolSpec(
            name=RESPOND,
            description="Reply to the user in plain text, without calling a tool.",
            parameters=_TEXT_ANSWER,
        )
    return ToolSpec(name=RESPOND, description="Give your final answer as JSON.", parameters=answer_schema)


def constrained_schema(tools: Sequence[ToolSpec], answer_schema: dict[str, Any] | None = None) -> dict[str, Any]:
    """The json_schema that lets the model produce exactly one call to one of `tools` or to `respond`.

    Sub-schemas' `$defs` are hoisted to the root, because `$ref: #/$defs/...` always resolves from the root."""
    if any(tool.name == RESPOND for tool in tools):
        raise ValueError(f"tool name {RESPOND!r} is reserved in constrained mode")
    defs: dict[str, Any] = {}
    options = []
    for tool in [*tools, respond_tool(answer_schema)]:
        parameters = _hoist_defs(tool.parameters, defs, tool.name)
        options.append(
            {
                "type": "object",
                "properties": {"name": {"const": tool.name}, "arguments": parameters},
                "required": ["name", "arguments"],
                "additionalProperties": False,
            }
        )
    schema: dict[str, Any] = {"anyOf": options}
    if defs:
        schema["$defs"] = defs
    return schema


def _hoist_defs(schema: dict[str, Any], defs: dict[str, Any], owner: str) -> dict[str, Any]:
    nested = schema.get("$defs")
    if not nested:
        return schema
    for name, definition in nested.items():
        if defs.setdefault(name, definition) != definition:
            raise ValueError(f"tool {owner!r}: schema definition {name!r} clashes with another tool's")
    return {key: value for key, value in schema.items() if key != "$defs"}


@dataclass(frozen=True)
class Envelope:
    """A decoded constrained answer: either a tool call or the `respond` pseudo-call's text."""

    call: ToolCall | None
    text: str | None


def read_envelope(content: str, answer_schema: dict[str, Any] | None = None) -> Envelope | None:
    """Decode `{"name": ..., "arguments": {...}}` produced under constrained_schema; None if it is not one."""
    try:
        value = json.loads(content)
    except json.JSONDecodeError:
        return None
    call = _as_call(value, strict=True)
    if call is None:
        return None
    if call.name != RESPOND:
        return Envelope(call=call, text=None)
    if answer_schema is not None:
        return Envelope(call=None, text=json.dumps(call.arguments))
    text = call.arguments.get("content")
    return Envelope(call=None, text=text if isinstance(text, str) else json.dumps(call.arguments))


# --- tolerant parsing of free text ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ParsedCalls:
    calls: list[ToolCall]
    text: str | None
    """What remains of the message once the calls are cut out (None if nothing but whitespace)."""


def parse_tool_calls(text: str, tool_names: Sequence[str]) -> ParsedCalls | None:
    """Tool calls written as text, or None when the text holds none.

    Looks inside `<tool_call>` tags first, then ``` fences, then anywhere in the text; the first place that holds
    a call wins. A JSON object counts as a call when it names one of `tool_names`; the canonical shape
    `{"name": str, "arguments": object}` counts even for an unknown name, so the agent can be told that the tool
    does not exist instead of the call silently becoming a text answer. Anything else stays text."""
    known = set(tool_names)
    bare = [(start, end, text[start:end]) for start, end, _ in _scan(text)]
    for blocks in (_blocks(_TAG, text), _blocks(_FENCE, text), bare):
        calls: list[ToolCall] = []
        spans: list[tuple[int, int]] = []
        for start, end, block in blocks:
            found = [
                call
                for _, _, value in _scan(block)
                for item in _flatten(value)
                if (call := _as_call(item, known=known)) is not None
            ]
            if found:
                calls += found
                spans.append((start, end))
        if calls:
            return ParsedCalls(calls=calls, text=_cut(text, spans))
    return None


def _blocks(pattern: re.Pattern[str], text: str) -> list[tuple[int, int, str]]:
    """(start, end, inner text) of each tag or fence; the span covers the markers so cutting it leaves prose."""
    return [(match.start(), match.end(), match.group(1)) for match in pattern.finditer(text)]


def _cut(text: str, spans: list[tuple[int, int]]) -> str | None:
    """What is left of `text` once `spans` are cut out."""
    pieces, cursor = [], 0
    for start, end in spans:
        pieces.append(text[cursor:start])
        cursor = end
    pieces.append(text[cursor:])
    return "".join(pieces).strip() or None


def _scan(text: str) -> Iterator[tuple[int, int, Any]]:
    decoder = json.JSONDecoder()
    position = 0
    while True:
        starts = [i for i in (text.find("{", position), text.find("[", position)) if i >= 0]
        if not starts:
            return
        start = min(starts)
        try:
            value, end = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            position = start + 1
            continue
        yield start, end, value
        position = end


def _flatten(value: Any) -> list[Any]:
    if isinstance(value, list):
        return [item for element in value for item in _flatten(element)]
    if isinstance(value, dict) and isinstance(value.get("tool_calls"), list):
        return _flatten(value["tool_calls"])
    return [value]


def _as_call(value: Any, *, known: set[str] | None = None, strict: bool = False) -> ToolCall | None:
    """A ToolCall from one JSON value, or None when it is not shaped like a call.

    strict: only the exact envelope `{"name", "arguments"}` (constrained output)."""
    if not isinstance(value, dict):
        return None
    if isinstance(value.get("function"), dict):  # OpenAI shape: {"type": "function", "function": {...}}
        inner = _as_call(value["function"], known=known, strict=strict)
        if inner is not None and isinstance(value.get("id"), str):
            inner = inner.model_copy(update={"id": value["id"]})
        return inner
    name_key = "name" if strict else next((key for key in _NAME_KEYS if isinstance(value.get(key), str)), None)
    name = value.get(name_key) if name_key else None
    if not isinstance(name, str) or not name:
        return None
    argument_key = "arguments" if strict else next((key for key in _ARGUMENT_KEYS if key in value), None)
    arguments = decode_arguments(value.get(argument_key, {}) if argument_key else {})
    if arguments is None:
        return None
    canonical = name_key == "name" and argument_key == "arguments"
    if not strict and name not in (known or set()) and not canonical:
        return None
    call_id = value.get("id")
    return ToolCall(
        id=call_id if isinstance(call_id, str) and call_id else new_call_id(), name=name, arguments=arguments
    )


def decode_arguments(arguments: Any) -> dict[str, Any] | None:
    """Tool-call arguments as an object: a dict as is, a JSON string decoded (even if fenced); else None."""
    if isinstance(arguments, dict):
        return arguments
    if not isinstance(arguments, str):
        return None
    if not arguments.strip():
        return {}
    try:
        value = json.loads(arguments)
    except json.JSONDecodeError:
        value = next((found for _, _, found in _scan(arguments) if isinstance(found, dict)), None)
    return value if isinstance(value, dict) else None
