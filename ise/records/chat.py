"""The chat format shared by the LLM layer and traces (OpenAI chat shape)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from ise.records.base import Record


class ToolSpec(Record):
    """A tool the model may call; `parameters` is a JSON schema object."""

    name: str
    description: str
    parameters: dict[str, Any]


class ToolCall(Record):
    id: str
    name: str
    arguments: dict[str, Any]


class Message(Record):
    role: Literal["system", "user", "assistant", "tool"]
    content: str | None = None
    tool_calls: list[ToolCall] = Field(default_factory=list)
    tool_call_id: str | None = None
    name: str | None = None


class Usage(Record):
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
        )


ToolMode = Literal["native", "constrained", "parsed", "text"]
"""How a completion was produced: native tool_calls, constrained json_schema decoding, tolerant parsing of
free text, or plain text with no tool call."""


class Completion(Record):
    """One LLM answer with its provenance, so traces can say how every call was made and what it cost."""

    message: Message
    usage: Usage = Field(default_factory=Usage)
    mode: ToolMode = "text"
    model: str = ""
    latency_s: float = 0.0
