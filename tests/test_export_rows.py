"""Row shapes and conversation validation (ise/stages/sft_rows.py) on rows made from real Trace records."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from trace_factory import make_trace

from ise.stages.export_selection import canonical_row
from ise.stages.sft_rows import (
    approx_tokens,
    check_rendered,
    sharegpt_row,
    trl_messages,
    validate_conversation,
)


@pytest.fixture
def row() -> dict[str, Any]:
    return canonical_row(make_trace())


def test_canonical_row_is_openai_chat_format(row: dict[str, Any]) -> None:
    messages = row["messages"]
    assert [m["role"] for m in messages] == [
        "system", "user", "assistant", "tool", "assistant",
        "user", "assistant", "tool", "assistant", "tool", "tool", "assistant",
    ]  # fmt: skip
    call = messages[8]["tool_calls"][0]
    assert call == {
        "id": "c3",
        "type": "function",
        "function": {
            "name": "write_file",
            "arguments": json.dumps(
                {"path": "/workspace/app.ini", "content": "[app]\nport=8080\n"}, separators=(",", ":")
            ),
        },
    }
    assert messages[3] == {"role": "tool", "content": "main.py\nrequirements.txt\n", "tool_call_id": "c1"}
    assert messages[6]["content"] is None
    assert row["tools"][0]["type"] == "function"
    assert row["tools"][0]["function"]["parameters"]["required"] == ["command"]
    assert row["metadata"]["tool_calls"] == 4
    assert row["metadata"]["recoveries"] == 1
    assert validate_conversation(messages, row["tools"]) == []


def test_trl_messages_have_object_arguments_and_tool_names(row: dict[str, Any]) -> None:
    messages = trl_messages(row["messages"])
    assert messages[8]["tool_calls"][0]["function"]["arguments"] == {
        "path": "/workspace/app.ini",
        "content": "[app]\nport=8080\n",
    }
    assert messages[9]["name"] == "write_file"
    assert messages[10]["name"] == "bash"
    assert isinstance(row["messages"][8]["tool_calls"][0]["function"]["arguments"], str), "input left untouched"


def test_sharegpt_row_alternates_and_merges_parallel_results(row: dict[str, Any]) -> None:
    shared, dropped = sharegpt_row(row["messages"], row["tools"])
    turns = shared["conversations"]
    assert [t["from"] for t in turns] == [
        "human", "function_call", "observation", "gpt",
        "human", "function_call", "observation", "function_call", "observation", "gpt",
    ]  # fmt: skip
    assert json.loads(turns[1]["value"]) == {"name": "bash", "arguments": {"command": "ls /workspace/app"}}
    assert [c["name"] for c in json.loads(turns[7]["value"])] == ["write_file", "bash"]
    assert json.loads(turns[8]["value"]) == ["wrote 17 bytes", "1\n"]
    assert shared["system"].startswith("You are an OS agent")
    assert [t["name"] for t in json.loads(shared["tools"])] == ["bash", "write_file"]
    assert dropped == 2  # "Let me look." and "It does not exist yet; creating it." sit beside tool calls


def _broken(row: dict[str, Any], edit: Any) -> list[str]:
    messages = copy.deepcopy(row["messages"])
    edit(messages)
    return validate_conversation(messages, row["tools"])


def test_validation_names_every_broken_rule(row: dict[str, Any]) -> None:
    def drop_result(m: list[dict[str, Any]]) -> None:
        del m[3]

    def duplicate_result(m: list[dict[str, Any]]) -> None:
        m.insert(4, dict(m[3]))

    def bad_json(m: list[dict[str, Any]]) -> None:
        m[2]["tool_calls"][0]["function"]["arguments"] = '{"command": "ls'

    def list_arguments(m: list[dict[str, Any]]) -> None:
        m[2]["tool_calls"][0]["function"]["arguments"] = '["ls"]'

    def unknown_tool(m: list[dict[str, Any]]) -> None:
        m[2]["tool_calls"][0]["function"]["name"] = "rm_rf"

    def empty_assistant(m: list[dict[str, Any]]) -> None:
        m[4]["content"] = "   "

    def two_users(m: list[dict[str, Any]]) -> None:
        m.insert(2, {"role": "user", "content": "again"})

    def late_system(m: list[dict[str, Any]]) -> None:
        m.insert(5, {"role": "system", "content": "psst"})

    def ends_on_call(m: list[dict[str, Any]]) -> None:
        del m[9:]

    def user_after_tool(m: list[dict[str, Any]]) -> None:
        del m[4]

    cases = {
        drop_result: "assistant speaks while tool calls await results (c1)",
        duplicate_result: "message 4 (tool): second result for call 'c1'",
        bad_json: "arguments of call 'c1' are not valid JSON",
        list_arguments: "arguments of call 'c1' are not a JSON object",
        unknown_tool: "call 'c1' names unknown tool 'rm_rf'",
        empty_assistant: "message 4 (assistant): empty assistant turn",
        two_users: "message 2 (user): two user messages in a row",
        late_system: "message 5 (system): system message after the start",
        ends_on_call: "tool calls without a result: c3, c4",
        user_after_tool: "user speaks right after tool results",
    }
    for edit, expected in cases.items():
        problems = _broken(row, edit)
        assert any(expected in p for p in problems), (edit.__name__, problems)


def test_conversation_must_end_with_an_assistant_answer(row: dict[str, Any]) -> None:
    problems = _broken(row, lambda m: m.append({"role": "user", "content": "and one more thing"}))
    assert problems == ["conversation does not end with an assistant answer"]


def test_render_check_finds_misplaced_parts(row: dict[str, Any]) -> None:
    """A hand-written Hermes-style rendering: correct, then with a result moved and an argument changed."""
    good = _hermes_render(row["messages"])
    assert check_rendered(good, row["messages"]) == []
    swapped = good.replace("wrote 17 bytes", "@@").replace("main.py\nrequirements.txt\n", "wrote 17 bytes")
    assert check_rendered(swapped, row["messages"])
    wrong_argument = good.replace('"command": "ls /workspace/app"', '"command": "ls /"')
    problems = check_rendered(wrong_argument, row["messages"])
    assert any(p.startswith("rendered tool calls") for p in problems)


def _hermes_render(messages: list[dict[str, Any]]) -> str:
    parts = ['<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>']
    for m in messages:
        if m["role"] == "tool":
            parts.append(f"<tool_response>\n{m['content']}\n</tool_response>")
            continue
        parts.append(f"<|im_start|>{m['role']}\n{m['content'] or ''}")
        for call in m.get("tool_calls") or []:
            payload = {"name": call["function"]["name"], "arguments": json.loads(call["function"]["arguments"])}
            parts.append(f"<tool_call>\n{json.dumps(payload)}\n</tool_call>")
    return "\n".join(parts)


def test_approx_tokens_weighs_character_classes(row: dict[str, Any]) -> None:
    base = approx_tokens(row["messages"], row["tools"])
    longer = copy.deepcopy(row["messages"])
    longer[3]["content"] += "abcd" * 1000
    assert approx_tokens(longer, row["tools"]) == base + 1000
    digits = copy.deepcopy(row["messages"])
    digits[3]["content"] += "1234" * 1000
    assert approx_tokens(digits, row["tools"]) == base + 7000, "every digit is a token or more"
