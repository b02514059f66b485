"""OpenAIChat: the LLM protocol over any OpenAI-compatible endpoint (vLLM, llama.cpp, Ollama, OpenAI).

Retries are ours alone (the SDK's are off): bounded, exponential backoff with jitter, only for failures of the
endpoint (429, 5xx, connection, timeout, unreadable body). Every client of one base URL shares one semaphore, so
`max_concurrency` caps the requests a whole process has in flight against that endpoint.

How an answer is read (recorded in Completion.mode):
- native: the endpoint returned structured `tool_calls`.
- constrained: the answer was decoded under a json_schema (the tool-call envelope of constrained mode, or the
  caller's `response_schema`).
- parsed: the model wrote a tool call as text (bare/fenced JSON, `<tool_call>` tags) and the tolerant parser read it.
- text: a plain answer with no tool call. That is a valid completion even when tools were offered: deciding
  whether a call was needed is the caller's business.
Malformed model output raises LLMError("malformed") only when it cannot be represented: native tool-call arguments
that are not a JSON object, or a constrained answer cut off before its JSON closed.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from collections.abc import Sequence
from typing import Any

import openai

from ise.llm.base import ErrorKind, LLMError
from ise.llm.config import OpenAIBackend
from ise.llm.toolcall import (
    RESPOND,
    constrained_schema,
    decode_arguments,
    new_call_id,
    parse_tool_calls,
    read_envelope,
    respond_tool,
)
from ise.records import Completion, Message, ToolCall, ToolMode, ToolSpec, Usage

_RETRYABLE = frozenset({"rate_limit", "server", "connection", "timeout"})
_MAX_BACKOFF_S = 60.0
_PLACEHOLDER_KEY = "no-key"  # local servers ignore the key, but the SDK insists on one

_slots_lock = threading.Lock()
_slots: dict[str, threading.BoundedSemaphore] = {}


def endpoint_slots(base_url: str, size: int) -> threading.BoundedSemaphore:
    """The semaphore shared by every client of `base_url` in this process; the first client sets its size."""
    with _slots_lock:
        return _slots.setdefault(base_url.rstrip("/"), threading.BoundedSemaphore(max(1, size)))


class OpenAIChat:
    def __init__(self, cfg: OpenAIBackend, *, api_key: str | None = None) -> None:
        self.cfg = cfg
        self.model = cfg.model
        self._client = openai.OpenAI(
            base_url=cfg.base_url,
            api_key=api_key or os.environ.get(cfg.api_key_env) or _PLACEHOLDER_KEY,
            timeout=openai.Timeout(cfg.timeout_s, connect=min(cfg.timeout_s, 10.0)),
            max_retries=0,
        )
        self._slots = endpoint_slots(cfg.base_url, cfg.max_concurrency)

    def chat(
        self,
        messages: Sequence[Message],
        *,
        tools: Sequence[ToolSpec] = (),
        response_schema: dict[str, Any] | None = None,
        temperature: float | None = None,
        seed: int | None = None,
    ) -> Completion:
        started = time.monotonic()
        body = self._request(messages, tools, response_schema, temperature, seed)
        data = self._send(body)
        reply, finish_reason, usage = _read_choice(data)
        message, mode = self._interpret(reply, finish_reason, tools, response_schema)
        return Completion(
            message=message, usage=usage, mode=mode, model=self.model, latency_s=time.monotonic() - started
        )

    def close(self) -> None:
        self._client.close()

    # --- request ---------------------------------------------------------------------------------------------

    def _request(
        self,
        messages: Sequence[Message],
        tools: Sequence[ToolSpec],
        response_schema: dict[str, Any] | None,
        temperature: float | None,
        seed: int | None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.cfg.model,
            "messages": [to_openai_message(message) for message in messages],
            "temperature": self.cfg.temperature if temperature is None else temperature,
            "max_tokens": self.cfg.max_tokens,
        }
        if seed is not None:
            body["seed"] = seed
        if tools and self.cfg.tool_mode == "constrained":
            try:
                schema = constrained_schema(tools, response_schema)
            except ValueError as exc:
                raise LLMError("bad_request", str(exc)) from None
            # The tools are also sent natively so the chat template describes them (and `respond`) to the model in
            # the words it was trained on; the json_schema then decides what it can emit.
            body["tools"] = [to_openai_tool(tool) for tool in [*tools, respond_tool(response_schema)]]
            body["response_format"] = json_schema_format(schema, "tool_call")
        else:
            if tools:
                body["tools"] = [to_openai_tool(tool) for tool in tools]
            if response_schema is not None:
                body["response_format"] = json_schema_format(response_schema, "response")
        return body

    # --- transport -------------------------------------------------------------------------------------------

    def _send(self, body: dict[str, Any]) -> dict[str, Any]:
        attempt = 0
        while True:
            try:
                with self._slots:
                    raw = self._client.chat.completions.with_raw_response.create(
                        **body, extra_body=self.cfg.extra_body or None
                    )
                    return _json_body(raw.http_response.text, self.cfg.base_url)
            except (openai.OpenAIError, LLMError) as exc:
                error = exc if isinstance(exc, LLMError) else classify(exc, self.cfg)
                if error.kind not in _RETRYABLE or attempt >= self.cfg.max_retries:
                    if attempt:
                        error.args = (f"{error.args[0]} (after {attempt + 1} attempts)",)
                    raise error from exc
                time.sleep(self._backoff(attempt, _retry_after(exc)))
                attempt += 1

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        """Exponential with jitter (so many workers do not retry in lockstep); Retry-After is a floor."""
        delay = min(_MAX_BACKOFF_S, self.cfg.retry_backoff_s * 2.0**attempt) * random.uniform(0.5, 1.0)
        if retry_after is not None:
            delay = max(delay, min(retry_after, _MAX_BACKOFF_S))
        return delay

    # --- response --------------------------------------------------------------------------------------------

    def _interpret(
        self,
        reply: dict[str, Any],
        finish_reason: str | None,
        tools: Sequence[ToolSpec],
        response_schema: dict[str, Any] | None,
    ) -> tuple[Message, ToolMode]:
        content = reply.get("content") if isinstance(reply.get("content"), str) else None
        constrained = bool(tools) and self.cfg.tool_mode == "constrained"
        native = reply.get("tool_calls") or []
        if native:
            calls = [_native_call(call) for call in native]
            return self._answer(content, calls, constrained, response_schema), "native"
        if constrained and content is not None:
            envelope = read_envelope(content, response_schema)
            if envelope is not None:
                calls = [envelope.call] if envelope.call else []
                return Message(role="assistant", content=envelope.text, tool_calls=calls), "constrained"
        if tools and content:
            parsed = parse_tool_calls(content, [tool.name for tool in tools])
            if parsed is not None:
                return self._answer(parsed.text, parsed.calls, constrained, response_schema), "parsed"
            if constrained and finish_reason == "length":
                raise LLMError("malformed", f"tool call cut off at max_tokens={self.cfg.max_tokens}: {content[:200]!r}")
        mode: ToolMode = "constrained" if response_schema is not None else "text"
        return Message(role="assistant", content=content), mode

    @staticmethod
    def _answer(
        text: str | None, calls: list[ToolCall], constrained: bool, response_schema: dict[str, Any] | None
    ) -> Message:
        """In constrained mode a call to the `respond` pseudo-tool is the answer text, not a tool call."""
        if constrained:
            for call in [call for call in calls if call.name == RESPOND]:
                calls.remove(call)
                answer = call.arguments.get("content")
                if response_schema is not None or not isinstance(answer, str):
                    answer = json.dumps(call.arguments)
                text = "\n".join(part for part in (text, answer) if part)
        return Message(role="assistant", content=text, tool_calls=calls)


# --- wire format -----------------------------------------------------------------------------------------------


def to_openai_message(message: Message) -> dict[str, Any]:
    out: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        out["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": json.dumps(call.arguments)},
            }
            for call in message.tool_calls
        ]
    elif message.content is None:
        out["content"] = ""  # several servers reject a null content without tool calls
    if message.tool_call_id is not None:
        out["tool_call_id"] = message.tool_call_id
    if message.name is not None and message.role != "tool":  # OpenAI rejects `name` on tool messages
        out["name"] = message.name
    return out


def to_openai_tool(tool: ToolSpec) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {"name": tool.name, "description": tool.description, "parameters": tool.parameters},
    }


def json_schema_format(schema: dict[str, Any], name: str) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema}}


def _json_body(text: str, base_url: str) -> dict[str, Any]:
    """The decoded response; an unreadable body or one without a message is the endpoint's fault (kind `server`,
    retried), e.g. a proxy's HTML error page or a 200 carrying only an error object."""
    try:
        data = json.loads(text)
    except ValueError:
        raise LLMError("server", f"unreadable response body from {base_url}: {text[:120]!r}") from None
    choices = data.get("choices") if isinstance(data, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        detail = data.get("error") if isinstance(data, dict) else None
        raise LLMError("server", f"response from {base_url} has no choices: {detail or text[:120]!r}")
    if not isinstance(choices[0].get("message"), dict):
        raise LLMError("server", f"response from {base_url} has no message: {text[:120]!r}")
    return dict(data)


def _read_choice(data: dict[str, Any]) -> tuple[dict[str, Any], str | None, Usage]:
    choice = data["choices"][0]
    usage = data.get("usage")
    if not isinstance(usage, dict):
        usage = {}
    tokens = Usage(
        prompt_tokens=int(usage.get("prompt_tokens") or 0), completion_tokens=int(usage.get("completion_tokens") or 0)
    )
    return choice["message"], choice.get("finish_reason"), tokens


def _native_call(call: Any) -> ToolCall:
    function = call.get("function") if isinstance(call, dict) else None
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        raise LLMError("malformed", f"tool call without a function name: {json.dumps(call)[:200]}")
    arguments = decode_arguments(function.get("arguments", {}))
    if arguments is None:
        raise LLMError(
            "malformed", f"tool call {function['name']!r}: arguments are not a JSON object: {function['arguments']!r}"
        )
    call_id = call.get("id")
    return ToolCall(
        id=call_id if isinstance(call_id, str) and call_id else new_call_id(),
        name=function["name"],
        arguments=arguments,
    )


# --- errors ------------------------------------------------------------------------------------------------------


def classify(exc: openai.OpenAIError, cfg: OpenAIBackend) -> LLMError:
    """One LLMError kind per failure; only rate_limit, server, connection and timeout are retried."""
    where = cfg.base_url
    if isinstance(exc, openai.APITimeoutError):
        return LLMError("timeout", f"no answer from {where} within {cfg.timeout_s:g} s")
    if isinstance(exc, openai.APIConnectionError):
        cause = exc.__cause__ or exc
        return LLMError("connection", f"cannot reach {where}: {type(cause).__name__}: {cause}")
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        kind: ErrorKind
        if status == 429:
            kind = "rate_limit"
        elif status in (401, 403):
            kind = "auth"
        elif status == 408:
            kind = "timeout"
        elif status >= 500 or status == 409:
            kind = "server"
        else:
            kind = "bad_request"
        hint = f" (set {cfg.api_key_env})" if kind == "auth" else ""
        return LLMError(kind, f"HTTP {status} from {where}{hint}: {str(exc.message)[:200]}")
    return LLMError("server", f"{type(exc).__name__} from {where}: {str(exc)[:200]}")


def _retry_after(exc: BaseException) -> float | None:
    if not isinstance(exc, openai.APIStatusError):
        return None
    headers = exc.response.headers
    try:
        if "retry-after-ms" in headers:
            return float(headers["retry-after-ms"]) / 1000
        if "retry-after" in headers:
            return float(headers["retry-after"])
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff
    return None
