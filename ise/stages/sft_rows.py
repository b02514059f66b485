"""SFT row shapes and the checks every row passes before it is written.

The canonical row is the OpenAI chat format: `messages` + `tools`, with tool-call `arguments` as JSON strings (what
OpenAI-compatible servers and fine-tuning APIs take, and what survives Arrow/Parquet unchanged). The other formats
are derived from it, so every format holds the same conversation.
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Sequence
from typing import Any

from pydantic_core import from_json, to_json

from ise.records import Message, ToolCall, ToolSpec

Row = dict[str, Any]

SHAREGPT_ROLE = {"user": "human", "assistant": "gpt", "tool": "observation"}


# --- canonical OpenAI rows -----------------------------------------------------------------------------------


def openai_messages(messages: Sequence[Message]) -> list[Row]:
    return [_openai_message(m) for m in messages]


def _openai_message(message: Message) -> Row:
    row: Row = {"role": message.role, "content": message.content}
    if message.tool_calls:
        row["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": json_text(call.arguments)},
            }
            for call in message.tool_calls
        ]
    if message.role == "tool":
        row["tool_call_id"] = message.tool_call_id  # no `name`: the OpenAI format has none on tool messages
    return row


def openai_tools(tools: Sequence[ToolSpec]) -> list[Row]:
    return [
        {"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.parameters}}
        for t in tools
    ]


# --- derived formats -----------------------------------------------------------------------------------------


def trl_messages(messages: list[Row]) -> list[Row]:
    """Hugging Face chat templates (and so TRL's SFTTrainer) read tool-call arguments as objects, not strings,
    and some name the tool on its result message."""
    out = []
    names: dict[str, str] = {}
    for message in messages:
        calls = message.get("tool_calls")
        if calls:
            names.update((c["id"], c["function"]["name"]) for c in calls)
            message = {
                **message,
                "tool_calls": [
                    {**c, "function": {**c["function"], "arguments": from_json(c["function"]["arguments"])}}
                    for c in calls
                ],
            }
        elif message["role"] == "tool" and message.get("tool_call_id") in names:
            message = {**message, "name": names[message["tool_call_id"]]}
        out.append(message)
    return out


def message_records(messages: list[Row]) -> list[Message]:
    """Canonical or TRL rows back as Message records (arguments given as JSON strings or as objects)."""
    records = []
    for m in messages:
        calls = [
            ToolCall(id=c.get("id") or "", name=c["function"]["name"], arguments=_as_object(c["function"]["arguments"]))
            for c in m.get("tool_calls") or []
        ]
        records.append(
            Message(role=m["role"], content=m.get("content"), tool_calls=calls, tool_call_id=m.get("tool_call_id"))
        )
    return records


def tool_records(tools: list[Row]) -> list[ToolSpec]:
    return [
        ToolSpec(name=f["name"], description=f.get("description") or "", parameters=_as_object(f["parameters"]))
        for f in (t["function"] for t in tools)
    ]


def _as_object(value: Any) -> dict[str, Any]:
    parsed = from_json(value) if isinstance(value, str) else value
    if not isinstance(parsed, dict):
        raise ValueError(f"expected a JSON object, got {type(parsed).__name__}")
    return parsed


def sharegpt_row(messages: list[Row], tools: list[Row]) -> tuple[Row, int]:
    """LLaMA-Factory's ShareGPT shape: human/gpt/function_call/observation turns, `system` and `tools` apart.

    Returns the row and how many assistant texts were dropped: the format has no slot for text spoken in the same
    turn as a tool call. Consecutive tool results (parallel calls) become one observation holding a JSON list.
    """
    system = ""
    turns: list[Row] = []
    dropped_text = 0
    pending_results: list[str] = []

    def flush_results() -> None:
        if pending_results:
            value = pending_results[0] if len(pending_results) == 1 else json_text(pending_results)
            turns.append({"from": "observation", "value": value})
            pending_results.clear()

    for message in messages:
        role, content = message["role"], message.get("content") or ""
        if role == "tool":
            pending_results.append(content)
            continue
        flush_results()
        if role == "system":
            system = content
        elif role == "assistant" and message.get("tool_calls"):
            dropped_text += bool(content.strip())
            calls = [
                {"name": c["function"]["name"], "arguments": from_json(c["function"]["arguments"])}
                for c in message["tool_calls"]
            ]
            value = json_text(calls[0] if len(calls) == 1 else calls)
            turns.append({"from": "function_call", "value": value})
        else:
            turns.append({"from": SHAREGPT_ROLE[role], "value": content})
    flush_results()
    tool_defs = [t["function"] for t in tools]
    return {"conversations": turns, "system": system, "tools": json_text(tool_defs)}, dropped_text


# --- validation ----------------------------------------------------------------------------------------------


def validate_conversation(messages: list[Row], tools: list[Row]) -> list[str]:
    """Every reason this conversation is not a legal training example; empty when it is.

    Rules: an optional system message first; a user speaks first; roles alternate legally; every tool call has an
    id, a known tool name and JSON-object arguments; each call gets exactly one tool message, right after the
    assistant turn that made it; no empty assistant turns; the conversation ends with an assistant answer; no NUL
    byte anywhere, and no tool result opening with a protocol-marker token (see PROTOCOL_TOKEN).
    """
    problems: list[str] = []
    tool_names = {t.get("function", {}).get("name") for t in tools}
    pending: set[str] = set()
    answered: set[str] = set()
    previous: str | None = None
    for index, message in enumerate(messages):
        role = message.get("role")
        where = f"message {index} ({role})"
        if role == "system":
            if index != 0:
                problems.append(f"{where}: system message after the start")
        elif role == "user":
            problems += _user_order(where, previous, pending)
        elif role == "assistant":
            problems += _assistant_order(where, previous, pending)
            problems += _assistant_content(where, message, tool_names, pending, answered)
        elif role == "tool":
            problems += _tool_result(where, message, pending, answered)
        else:
            problems.append(f"{where}: unknown role")
        previous = role
    if pending:
        problems.append(f"tool calls without a result: {', '.join(sorted(pending))}")
    problems += _text_problems(messages, tools)
    if not any(m.get("role") == "user" for m in messages):
        problems.append("no user message")
    last = messages[-1] if messages else {}
    if last.get("role") != "assistant" or last.get("tool_calls"):
        problems.append("conversation does not end with an assistant answer")
    return problems


PROTOCOL_TOKEN = re.compile(r"\A[0-9a-f]{32}(?=\s|\Z)(?!  \S)")
"""32 hex digits opening a tool result, alone on their line: the shape of the sandbox channel's per-command
markers (secrets.token_hex(16)), so a sign that the harness leaked into what the agent saw. (md5sum's
"<hash>  <file>" lines are not matched.)"""


def _text_problems(messages: list[Row], tools: list[Row]) -> list[str]:
    """NUL bytes anywhere (binary output: tokenizers and trainers mishandle them, so the row is rejected, not
    silently altered) and protocol markers at the start of a tool result."""
    problems = []
    for index, message in enumerate(messages):
        where = f"message {index} ({message.get('role')})"
        content = message.get("content")
        if _has_nul(content):
            problems.append(f"{where}: NUL byte in the content")
        for call in message.get("tool_calls") or []:
            arguments = (call.get("function") or {}).get("arguments")
            if isinstance(arguments, str) and "\\u0000" in arguments and _has_nul(_parsed(arguments)):
                problems.append(f"{where}: NUL byte in the arguments of call {call.get('id')!r}")
        if message.get("role") == "tool" and isinstance(content, str) and PROTOCOL_TOKEN.match(content):
            problems.append(f"{where}: tool result starts with a 32-hex-digit token (a sandbox protocol marker?)")
    if _has_nul(tools):
        problems.append("NUL byte in the tool definitions")
    return problems


def _parsed(arguments: str) -> Any:
    try:
        return from_json(arguments)
    except ValueError:
        return arguments  # reported as invalid JSON by the call checks


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\0" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(item) for item in value)
    return False


def _user_order(where: str, previous: str | None, pending: set[str]) -> list[str]:
    if pending:
        return [f"{where}: user speaks while tool calls await results ({', '.join(sorted(pending))})"]
    if previous == "user":
        return [f"{where}: two user messages in a row"]
    if previous == "tool":
        return [f"{where}: user speaks right after tool results; the assistant must answer them first"]
    return []


def _assistant_order(where: str, previous: str | None, pending: set[str]) -> list[str]:
    if pending:
        return [f"{where}: assistant speaks while tool calls await results ({', '.join(sorted(pending))})"]
    if previous in (None, "system"):
        return [f"{where}: assistant speaks before the user"]
    if previous == "assistant":
        return [f"{where}: two assistant messages in a row"]
    return []


def _assistant_content(
    where: str, message: Row, tool_names: set[Any], pending: set[str], answered: set[str]
) -> list[str]:
    calls = message.get("tool_calls") or []
    content = message.get("content")
    if not calls and not (isinstance(content, str) and content.strip()):
        return [f"{where}: empty assistant turn"]
    problems = []
    for call in calls:
        call_id = call.get("id")
        function = call.get("function") or {}
        if not call_id:
            problems.append(f"{where}: tool call without an id")
            continue
        if call_id in pending or call_id in answered:
            problems.append(f"{where}: tool call id {call_id!r} used twice")
        if function.get("name") not in tool_names:
            problems.append(f"{where}: call {call_id!r} names unknown tool {function.get('name')!r}")
        problems += _arguments_problem(where, call_id, function.get("arguments"))
        pending.add(call_id)
    return problems


def _arguments_problem(where: str, call_id: str, arguments: Any) -> list[str]:
    if not isinstance(arguments, str):
        return [f"{where}: arguments of call {call_id!r} are not a JSON string"]
    try:
        parsed = from_json(arguments)
    except ValueError as exc:
        return [f"{where}: arguments of call {call_id!r} are not valid JSON ({exc})"]
    if not isinstance(parsed, dict):
        return [f"{where}: arguments of call {call_id!r} are not a JSON object"]
    return []


def _tool_result(where: str, message: Row, pending: set[str], answered: set[str]) -> list[str]:
    call_id = message.get("tool_call_id")
    if not isinstance(message.get("content"), str):
        return [f"{where}: tool result has no text content"]
    if call_id in pending:
        pending.discard(call_id)
        answered.add(call_id)
        return []
    if call_id in answered:
        return [f"{where}: second result for call {call_id!r}"]
    return [f"{where}: result for unknown or earlier call {call_id!r}"]


# --- token counts and the render check -----------------------------------------------------------------------


APPROX_TOKENS = "approx: character classes fitted to Qwen2.5's tokenizer (within about 20%)"

_DIGITS = b"0123456789"
_WORD_OR_SPACE = string.ascii_letters.encode() + _DIGITS + b" \t\r\n"


def text_tokens(text: str) -> float:
    """Tokens of a text, estimated from its character classes with weights fitted (least squares on relative
    error) to Qwen2.5's tokenizer over 140 samples of code, shell output, logs and prose: letters / 4, digits
    1.75 each (digits are single tokens and break words), other symbols 0.43, newlines 0.3, spaces 0.035.
    Byte-level translate/count keep it about as cheap as len()."""
    data = text.encode()
    digits = len(data) - len(data.translate(None, _DIGITS))
    symbols = len(data.translate(None, _WORD_OR_SPACE))
    newlines, spaces = data.count(b"\n"), data.count(b" ")
    letters = len(data) - digits - symbols - newlines - spaces
    return 0.25 * letters + 1.75 * digits + 0.43 * symbols + 0.3 * newlines + 0.035 * spaces


def approx_tokens(messages: list[Row], tools: list[Row]) -> int:
    """Tokens of a conversation as a chat template renders it, without a tokenizer: its texts (see text_tokens)
    plus the markup a ChatML/Hermes template adds: 5 per message, 12 per tool call, and a 90-token preamble
    when tools are offered. The model test checks it against the real count."""
    texts = [json_text(tools)] if tools else []
    calls = 0
    for message in messages:
        texts.append(message.get("content") or "")
        for call in message.get("tool_calls") or ():
            texts += (call["function"]["name"], call["function"]["arguments"])
            calls += 1
    # text_tokens is linear in character counts, so one call on the joined texts equals the sum of the parts.
    return round(text_tokens("".join(texts)) + 5 * len(messages) + 12 * calls + (90 if tools else 0))


def json_text(value: Any) -> str:
    """Compact JSON (pydantic's Rust encoder: several times faster than the json module on small values)."""
    return to_json(value).decode()


TOOL_CALL_BLOCK = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.DOTALL)
TOOL_RESPONSE_BLOCK = re.compile(r"<tool_response>\n?(.*?)\n?</tool_response>", re.DOTALL)


def check_rendered(text: str, messages: list[Row]) -> list[str]:
    """Problems with a conversation as a chat template rendered it; empty when every part is in its place.

    Generic: each message's text and each tool call's name appear, in conversation order. For Hermes-style
    templates (Qwen2.5 and others that use <tool_call>/<tool_response> tags) also: the tag blocks hold exactly
    the conversation's calls (name and parsed arguments) and tool results, in order.
    """
    problems: list[str] = []
    cursor = 0
    for index, message in enumerate(messages):
        pieces = [message.get("content") or ""]
        pieces += [c["function"]["name"] for c in message.get("tool_calls") or []]
        for piece in pieces:
            if not piece:
                continue
            found = text.find(piece, cursor)
            if found < 0:
                problems.append(f"message {index} ({message['role']}): {_clip(piece)!r} missing or out of order")
                break
            cursor = found + len(piece)
    if "<tool_call>" in text:
        # The tool preamble of the system prompt shows an example block: look only from the first user turn on.
        first_user = next((m.get("content") or "" for m in messages if m["role"] == "user"), "")
        problems += _check_hermes_blocks(text[max(0, text.find(first_user)) :], messages)
    return problems


def _check_hermes_blocks(text: str, messages: list[Row]) -> list[str]:
    expected_calls = [
        {"name": c["function"]["name"], "arguments": json.loads(c["function"]["arguments"])}
        for m in messages
        for c in m.get("tool_calls") or []
    ]
    rendered_calls = []
    for block in TOOL_CALL_BLOCK.findall(text):
        try:
            rendered_calls.append(json.loads(block))
        except json.JSONDecodeError:
            rendered_calls.append({"unparsable": _clip(block)})
    problems = []
    if rendered_calls != expected_calls:
        problems.append(
            f"rendered tool calls {_clip(str(rendered_calls))} != conversation's {_clip(str(expected_calls))}"
        )
    expected_results = [m.get("content") or "" for m in messages if m["role"] == "tool"]
    if TOOL_RESPONSE_BLOCK.findall(text) != expected_results:
        problems.append("rendered tool responses differ from the conversation's tool results")
    return problems


def _clip(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
