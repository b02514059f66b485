"""The LLM seam: one protocol every backend (remote, embedded, scripted) implements."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, Protocol

from ise.errors import IseError
from ise.records import Completion, Message, ToolSpec

ErrorKind = Literal["rate_limit", "server", "connection", "timeout", "bad_request", "auth", "malformed"]


class LLMError(IseError):
    """An LLM call that failed after bounded retries. `kind` classifies it; all kinds but `malformed` and
    `bad_request` are infrastructure failures (the endpoint, not the model's behaviour)."""

    def __init__(self, kind: ErrorKind, message: str) -> None:
        super().__init__(f"LLM {kind}: {message}")
        self.kind: ErrorKind = kind

    @property
    def is_infra(self) -> bool:
        return self.kind not in ("malformed", "bad_request")


class LLM(Protocol):
    """chat() returns one assistant message.

    - `tools`: the model may answer with tool calls (native `tools=` or constrained decoding, per backend config).
    - `response_schema`: a JSON schema the answer's content must follow (structured output).
    """

    model: str

    def chat(
        self,
        messages: Sequence[Message],
        *,
        tools: Sequence[ToolSpec] = (),
        response_schema: dict[str, Any] | None = None,
        temperature: float | None = None,
        seed: int | None = None,
    ) -> Completion: ...

    def close(self) -> None: ...
