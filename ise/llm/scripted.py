"""ScriptedLLM: the fake at the LLM seam. Ships in the package so whole pipelines run in tests and dry runs.

A reply is a mapping with any of:
  content: str                      plain assistant text
  json: object                      structured output (serialised into content)
  tool_calls: [{name, arguments}]   tool calls (ids are generated)
  error: <LLMError kind>            raise LLMError of that kind instead of answering
Replies are consumed in order. A `responder` callable may be given instead, to answer from the conversation.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args

import yaml

from ise.errors import InputError, IseError
from ise.llm.base import ErrorKind, LLMError
from ise.records import Completion, Message, ToolCall, ToolSpec, Usage

if TYPE_CHECKING:
    from ise.llm.config import ScriptedBackend

Reply = dict[str, Any]
Responder = Callable[[Sequence[Message], Sequence[ToolSpec], dict[str, Any] | None], Reply]


class ScriptedLLM:
    model = "scripted"

    def __init__(self, replies: Sequence[Reply] = (), responder: Responder | None = None) -> None:
        self._replies = list(replies)
        self._responder = responder
        self._lock = threading.Lock()
        self.calls: list[dict[str, Any]] = []
        """Every request seen, for assertions: messages, tools, response_schema."""

    @classmethod
    def from_config(cls, cfg: ScriptedBackend) -> ScriptedLLM:
        replies = list(cfg.replies)
        if cfg.script is not None:
            replies += load_script(cfg.script)
        return cls(replies)

    def chat(
        self,
        messages: Sequence[Message],
        *,
        tools: Sequence[ToolSpec] = (),
        response_schema: dict[str, Any] | None = None,
        temperature: float | None = None,
        seed: int | None = None,
    ) -> Completion:
        with self._lock:
            self.calls.append({"messages": list(messages), "tools": list(tools), "response_schema": response_schema})
            call_number = len(self.calls)
            if self._responder is not None:
                reply = self._responder(messages, tools, response_schema)
            elif self._replies:
                reply = self._replies.pop(0)
            else:
                raise IseError(f"scripted LLM has no reply left for call {call_number}")
        return _completion(reply, call_number)

    def close(self) -> None:
        pass

    @property
    def remaining(self) -> int:
        return len(self._replies)


def _completion(reply: Reply, call_number: int) -> Completion:
    if "error" in reply:
        kind = reply["error"]
        if kind not in get_args(ErrorKind):
            raise IseError(f"scripted reply {call_number}: unknown error kind {kind!r}")
        raise LLMError(kind, f"scripted failure on call {call_number}")
    content = reply.get("content")
    if "json" in reply:
        content = json.dumps(reply["json"])
    calls = [
        ToolCall(id=f"call_{call_number}_{i}", name=call["name"], arguments=call.get("arguments", {}))
        for i, call in enumerate(reply.get("tool_calls", []))
    ]
    mode = "native" if calls else "text"
    usage = Usage(prompt_tokens=0, completion_tokens=len((content or "").split()))
    return Completion(message=Message(role="assistant", content=content, tool_calls=calls), usage=usage, mode=mode)


def load_script(path: Path) -> list[Reply]:
    """Read replies from a YAML list or a JSONL file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot read LLM script {path}: {exc.strerror}") from None
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    data = yaml.safe_load(text)
    if not isinstance(data, list):
        raise InputError(f"LLM script {path} must be a list of replies")
    return data
