"""The tolerant tool-call parser on outputs small models really write, and the constrained-decoding envelope."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import BaseModel

from ise.llm.toolcall import RESPOND, constrained_schema, parse_tool_calls, read_envelope
from ise.records import ToolSpec

TOOLS = ["run", "write_file"]


def calls_of(text: str) -> list[tuple[str, dict[str, Any]]]:
    parsed = parse_tool_calls(text, TOOLS)
    assert parsed is not None, f"no call found in {text!r}"
    return [(call.name, call.arguments) for call in parsed.calls]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"name": "run", "arguments": {"command": "ls -la"}}', [("run", {"command": "ls -la"})]),
        ('```json\n{"name": "run", "arguments": {"command": "ls /tmp"}}\n```', [("run", {"command": "ls /tmp"})]),
        ('```\n{"name": "run", "arguments": {"command": "pwd"}}\n```', [("run", {"command": "pwd"})]),
        (
            '<tool_call>\n{"name": "write_file", "arguments": {"path": "a.txt", "content": "hi"}}\n</tool_call>',
            [("write_file", {"path": "a.txt", "content": "hi"})],
        ),
        (
            '<tool_call>\n{"name": "run", "arguments": {"command": "ls"}}\n</tool_call>\n'
            '<tool_call>\n{"name": "run", "arguments": {"command": "pwd"}}\n</tool_call>',
            [("run", {"command": "ls"}), ("run", {"command": "pwd"})],
        ),
        (  # cut off before the closing tag (stop sequence or max_tokens)
            '<tool_call>\n{"name": "run", "arguments": {"command": "df -h"}}',
            [("run", {"command": "df -h"})],
        ),
        (
            '[{"name": "run", "arguments": {"command": "ls"}}, {"name": "run", "arguments": {"command": "id"}}]',
            [("run", {"command": "ls"}), ("run", {"command": "id"})],
        ),
        (  # arguments as a JSON string, OpenAI style
            '{"name": "run", "arguments": "{\\"command\\": \\"uname -a\\"}"}',
            [("run", {"command": "uname -a"})],
        ),
        (
            '{"type": "function", "function": {"name": "run", "arguments": {"command": "whoami"}}}',
            [("run", {"command": "whoami"})],
        ),
        ('{"tool": "run", "parameters": {"command": "date"}}', [("run", {"command": "date"})]),
        ('{"tool_calls": [{"name": "run", "arguments": {"command": "ls"}}]}', [("run", {"command": "ls"})]),
        (
            'Sure! I will list the files first.\n```json\n{"name": "run", "arguments": {"command": "ls"}}\n```\n'
            "Then I will read them.",
            [("run", {"command": "ls"})],
        ),
        (  # a bash fence before the real call: the fence holds no call, so the bare JSON wins
            'To see files you could run\n```bash\nls -la\n```\n{"name": "run", "arguments": {"command": "ls -la"}}',
            [("run", {"command": "ls -la"})],
        ),
        (  # two bare calls on separate lines
            '{"name": "run", "arguments": {"command": "ls"}}\n{"name": "run", "arguments": {"command": "pwd"}}',
            [("run", {"command": "ls"}), ("run", {"command": "pwd"})],
        ),
        ('{"name": "run"}', [("run", {})]),
        (  # an unknown tool in the canonical shape is still a call (the agent loop reports the unknown tool)
            '```json\n{"name": "listFilesInTmp", "arguments": {"command": "/tmp"}}\n```',
            [("listFilesInTmp", {"command": "/tmp"})],
        ),
    ],
)
def test_parser_reads_calls_from_model_text(text: str, expected: list[tuple[str, dict[str, Any]]]) -> None:
    assert calls_of(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "The files are a.txt and b.txt.",
        "",
        '{"city": "Paris", "population": 2100000}',
        '{"name": "Alice", "age": 31}',  # a name, but neither a known tool nor the call shape
        "```bash\nls -la\n```",
        '{"name": "run", "arguments": "not json at all"}',
        '{"name": "run", "arguments": [1, 2]}',
        '{"name": "run", "arguments": {"command": "ls"',  # truncated JSON
        "[1, 2, 3]",
    ],
)
def test_parser_leaves_plain_answers_alone(text: str) -> None:
    assert parse_tool_calls(text, TOOLS) is None


def test_parser_keeps_the_prose_and_gives_ids() -> None:
    parsed = parse_tool_calls(
        'I will check.\n<tool_call>{"name": "run", "arguments": {"command": "ls"}}</tool_call>', TOOLS
    )
    assert parsed is not None
    assert parsed.text == "I will check."
    assert parsed.calls[0].id.startswith("call_")
    again = parse_tool_calls('{"name": "run", "arguments": {}}\n{"name": "run", "arguments": {}}', TOOLS)
    assert again is not None
    assert again.text is None
    assert again.calls[0].id != again.calls[1].id
    kept = parse_tool_calls('{"id": "abc", "type": "function", "function": {"name": "run", "arguments": "{}"}}', TOOLS)
    assert kept is not None
    assert kept.calls[0].id == "abc"


RUN = ToolSpec(
    name="run",
    description="Run a command",
    parameters={"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]},
)


class Item(BaseModel):
    label: str


class Basket(BaseModel):
    items: list[Item]


def test_constrained_schema_is_an_anyof_over_tools_and_respond() -> None:
    schema = constrained_schema([RUN])
    names = [option["properties"]["name"]["const"] for option in schema["anyOf"]]
    assert names == ["run", RESPOND]
    run_option = schema["anyOf"][0]
    assert run_option["properties"]["arguments"] == RUN.parameters
    assert run_option["required"] == ["name", "arguments"]
    assert run_option["additionalProperties"] is False
    assert schema["anyOf"][1]["properties"]["arguments"]["properties"]["content"]["type"] == "string"


def test_constrained_schema_hoists_defs_so_refs_resolve_from_the_root() -> None:
    answer = Basket.model_json_schema()
    assert "$defs" in answer
    schema = constrained_schema([RUN], answer)
    assert schema["$defs"] == answer["$defs"]
    respond_arguments = schema["anyOf"][1]["properties"]["arguments"]
    assert "$defs" not in respond_arguments
    assert respond_arguments["properties"]["items"]["items"] == {"$ref": "#/$defs/Item"}


def test_constrained_schema_rejects_clashes() -> None:
    with pytest.raises(ValueError, match="reserved"):
        constrained_schema([RUN.model_copy(update={"name": RESPOND})])
    one = {"type": "object", "$defs": {"X": {"type": "string"}}, "properties": {"x": {"$ref": "#/$defs/X"}}}
    two = {"type": "object", "$defs": {"X": {"type": "integer"}}, "properties": {"x": {"$ref": "#/$defs/X"}}}
    tools = [
        RUN.model_copy(update={"name": "a", "parameters": one}),
        RUN.model_copy(update={"name": "b", "parameters": two}),
    ]
    with pytest.raises(ValueError, match="clashes"):
        constrained_schema(tools)


def test_envelope_decodes_calls_and_answers() -> None:
    call = read_envelope('{"name": "run", "arguments": {"command": "ls"}}')
    assert call is not None
    assert call.call is not None
    assert (call.call.name, call.call.arguments, call.text) == ("run", {"command": "ls"}, None)
    answer = read_envelope('{"name": "respond", "arguments": {"content": "All done."}}')
    assert answer is not None
    assert (answer.call, answer.text) == (None, "All done.")
    structured = read_envelope('{"name": "respond", "arguments": {"items": []}}', Basket.model_json_schema())
    assert structured is not None
    assert structured.text is not None
    assert json.loads(structured.text) == {"items": []}
    assert read_envelope("not json") is None
    assert read_envelope('{"answer": 42}') is None
