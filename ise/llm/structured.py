"""Structured output: ask for a pydantic model, validate, and repair with the exact error (bounded)."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from ise.errors import IseError
from ise.llm.base import LLM
from ise.records import Completion, Message

M = TypeVar("M", bound=BaseModel)

_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)


class StructuredOutputError(IseError):
    """The model did not produce a valid object within the allowed attempts."""


def extract_json(text: str) -> Any:
    """Parse JSON from model text: the whole text, a fenced block, or the first balanced {...} / [...]."""
    text = text.strip()
    candidates = [text, *(m.strip() for m in _FENCE.findall(text))]
    start = min((i for i in (text.find("{"), text.find("[")) if i >= 0), default=-1)
    if start >= 0:
        candidates.append(text[start:])
    decoder = json.JSONDecoder()
    for candidate in candidates:
        try:
            value, _ = decoder.raw_decode(candidate)
        except json.JSONDecodeError:
            continue
        return value
    raise ValueError("no JSON value found in the reply")


def chat_json(
    llm: LLM,
    messages: Sequence[Message],
    model: type[M],
    *,
    max_attempts: int = 3,
    temperature: float | None = None,
    seed: int | None = None,
) -> tuple[M, list[Completion]]:
    """Return a validated `model` and every completion it took. Each retry shows the model its previous answer
    and the validation error, so it can fix exactly what was wrong."""
    schema = model.model_json_schema()
    conversation = list(messages)
    completions: list[Completion] = []
    error = "no attempt made"
    for _ in range(max(1, max_attempts)):
        completion = llm.chat(conversation, response_schema=schema, temperature=temperature, seed=seed)
        completions.append(completion)
        content = completion.message.content or ""
        try:
            return model.model_validate(extract_json(content)), completions
        except (ValueError, ValidationError) as exc:
            error = _short_error(exc)
        conversation += [
            Message(role="assistant", content=content),
            Message(role="user", content=f"That answer is invalid: {error}\nReply again with the corrected JSON."),
        ]
    raise StructuredOutputError(f"no valid {model.__name__} after {len(completions)} attempts: {error}")


def _short_error(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'value'}: {e['msg']}" for e in exc.errors()[:5])
    return str(exc)
