"""OpenAIChat against a fake OpenAI-compatible HTTP server (the LLM seam): retries, errors, usage, concurrency,
and how tool calls are read in native and constrained mode."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from ise.llm.base import LLMError
from ise.llm.config import OpenAIBackend
from ise.llm.openai_client import OpenAIChat
from ise.llm.toolcall import RESPOND
from ise.records import Message, ToolCall, ToolSpec

RUN = ToolSpec(
    name="run",
    description="Run a shell command",
    parameters={"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]},
)
HELLO = [Message(role="user", content="hello")]


@dataclass
class Reply:
    status: int = 200
    body: Any = None
    """A dict is sent as JSON; a str is sent verbatim."""
    delay_s: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"


def completion(
    content: str | None = "hi there", tool_calls: list[dict[str, Any]] | None = None, usage: tuple[int, int] = (11, 7)
) -> Reply:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_calls is not None:
        message["tool_calls"] = tool_calls
    return Reply(
        body={
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 0,
            "model": "fake",
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": usage[0], "completion_tokens": usage[1], "total_tokens": sum(usage)},
        }
    )


def error(status: int, headers: dict[str, str] | None = None) -> Reply:
    return Reply(status=status, body={"error": {"message": f"fake error {status}"}}, headers=headers or {})


class FakeEndpoint:
    """Answers POST /v1/chat/completions with queued replies (then a default success), recording every request."""

    def __init__(self) -> None:
        self.replies: list[Reply] = []
        self.default = completion()
        self.requests: list[dict[str, Any]] = []
        self.auth: list[str | None] = []
        self.in_flight = 0
        self.peak = 0
        self._lock = threading.Lock()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with endpoint._lock:
                    endpoint.requests.append(body)
                    endpoint.auth.append(self.headers.get("Authorization"))
                    reply = endpoint.replies.pop(0) if endpoint.replies else endpoint.default
                    endpoint.in_flight += 1
                    endpoint.peak = max(endpoint.peak, endpoint.in_flight)
                try:
                    time.sleep(reply.delay_s)
                    payload = reply.body if isinstance(reply.body, str) else json.dumps(reply.body)
                    data = payload.encode()
                    self.send_response(reply.status)
                    self.send_header("Content-Type", reply.content_type)
                    self.send_header("Content-Length", str(len(data)))
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test)
                finally:
                    with endpoint._lock:
                        endpoint.in_flight -= 1

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def endpoint() -> Iterator[FakeEndpoint]:
    fake = FakeEndpoint()
    yield fake
    fake.close()


def client(endpoint: FakeEndpoint, **overrides: Any) -> OpenAIChat:
    settings: dict[str, Any] = {
        "base_url": endpoint.url,
        "model": "fake-model",
        "timeout_s": 2.0,
        "max_retries": 3,
        "retry_backoff_s": 0.01,
        "api_key_env": "ISE_TEST_UNSET_KEY",
    }
    return OpenAIChat(OpenAIBackend(**(settings | overrides)))


# --- transport ------------------------------------------------------------------------------------------------


def test_success_counts_usage_latency_and_sends_settings(endpoint: FakeEndpoint) -> None:
    endpoint.replies = [completion("hi there", usage=(42, 5))]
    llm = client(endpoint, temperature=0.3, max_tokens=77, extra_body={"top_k": 5})
    result = llm.chat(HELLO, seed=9)
    assert result.message.content == "hi there"
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (42, 5)
    assert result.mode == "text"
    assert result.model == "fake-model"
    assert result.latency_s > 0
    sent = endpoint.requests[0]
    assert sent["model"] == "fake-model"
    assert sent["messages"] == [{"role": "user", "content": "hello"}]
    assert (sent["temperature"], sent["max_tokens"], sent["seed"], sent["top_k"]) == (0.3, 77, 9, 5)
    assert "tools" not in sent
    assert "response_format" not in sent
    assert llm.chat(HELLO, temperature=0.0) is not None
    assert endpoint.requests[1]["temperature"] == 0.0


def test_api_key_from_env_or_placeholder(endpoint: FakeEndpoint, monkeypatch: pytest.MonkeyPatch) -> None:
    client(endpoint).chat(HELLO)
    monkeypatch.setenv("ISE_TEST_KEY", "sk-secret")
    client(endpoint, api_key_env="ISE_TEST_KEY").chat(HELLO)
    assert endpoint.auth[0] is not None
    assert endpoint.auth[0].startswith("Bearer ")
    assert "sk-secret" not in endpoint.auth[0]
    assert endpoint.auth[1] == "Bearer sk-secret"


@pytest.mark.parametrize(
    "failure",
    [
        error(429),
        error(500),
        error(502),
        error(503),
        Reply(body="<html>bad gateway</html>", content_type="text/html"),  # a proxy's page with status 200
        Reply(body='{"choices": [', content_type="application/json"),  # truncated JSON
        Reply(body={"error": {"message": "model is loading"}}),  # 200 without choices
    ],
)
def test_endpoint_failures_are_retried_then_succeed(endpoint: FakeEndpoint, failure: Reply) -> None:
    endpoint.replies = [failure, failure, completion("recovered", usage=(3, 2))]
    result = client(endpoint).chat(HELLO)
    assert result.message.content == "recovered"
    assert len(endpoint.requests) == 3
    assert result.usage.prompt_tokens == 3


@pytest.mark.parametrize(
    ("failure", "kind"),
    [
        (error(429), "rate_limit"),
        (error(500), "server"),
        (Reply(body="not json"), "server"),
    ],
)
def test_retries_are_bounded(endpoint: FakeEndpoint, failure: Reply, kind: str) -> None:
    endpoint.replies = [failure] * 10
    with pytest.raises(LLMError) as caught:
        client(endpoint, max_retries=2).chat(HELLO)
    assert caught.value.kind == kind
    assert caught.value.is_infra
    assert "after 3 attempts" in str(caught.value)
    assert len(endpoint.requests) == 3  # 1 + max_retries, and no hidden retries by the SDK


def test_no_retries_means_one_request(endpoint: FakeEndpoint) -> None:
    endpoint.replies = [error(500), completion()]
    with pytest.raises(LLMError, match="server"):
        client(endpoint, max_retries=0).chat(HELLO)
    assert len(endpoint.requests) == 1


@pytest.mark.parametrize(
    ("status", "kind"), [(400, "bad_request"), (404, "bad_request"), (422, "bad_request"), (401, "auth"), (403, "auth")]
)
def test_client_errors_fail_at_once(endpoint: FakeEndpoint, status: int, kind: str) -> None:
    endpoint.replies = [error(status), completion()]
    with pytest.raises(LLMError) as caught:
        client(endpoint).chat(HELLO)
    assert caught.value.kind == kind
    assert caught.value.is_infra == (kind == "auth")
    assert f"HTTP {status}" in str(caught.value)
    assert len(endpoint.requests) == 1


def test_timeout_is_retried_then_classified(endpoint: FakeEndpoint) -> None:
    endpoint.replies = [Reply(delay_s=1.0, body=completion().body), completion("in time")]
    started = time.monotonic()
    result = client(endpoint, timeout_s=0.3).chat(HELLO)
    assert result.message.content == "in time"
    assert len(endpoint.requests) == 2
    assert time.monotonic() - started < 1.0  # gave up on the slow request instead of waiting for it

    slow = Reply(delay_s=1.0, body=completion().body)
    endpoint.replies = [slow, slow, slow]
    with pytest.raises(LLMError) as caught:
        client(endpoint, timeout_s=0.2, max_retries=1).chat(HELLO)
    assert caught.value.kind == "timeout"
    assert len(endpoint.requests) == 4


def test_unreachable_endpoint_is_a_connection_error() -> None:
    closed = FakeEndpoint()
    url = closed.url
    closed.close()
    llm = OpenAIChat(OpenAIBackend(base_url=url, max_retries=2, retry_backoff_s=0.01, timeout_s=2))
    with pytest.raises(LLMError) as caught:
        llm.chat(HELLO)
    assert caught.value.kind == "connection"
    assert "after 3 attempts" in str(caught.value)


def test_retry_after_header_sets_the_delay(endpoint: FakeEndpoint) -> None:
    endpoint.replies = [error(429, {"Retry-After": "0.4"}), completion()]
    started = time.monotonic()
    client(endpoint).chat(HELLO)
    assert time.monotonic() - started >= 0.4


def test_backoff_grows_exponentially(endpoint: FakeEndpoint) -> None:
    endpoint.replies = [error(503)] * 3 + [completion()]
    started = time.monotonic()
    client(endpoint, retry_backoff_s=0.1).chat(HELLO)
    # jittered delays of at least 0.05 + 0.1 + 0.2 seconds, at most 0.1 + 0.2 + 0.4
    assert 0.35 <= time.monotonic() - started < 2.0


def test_concurrency_is_capped_per_endpoint(endpoint: FakeEndpoint) -> None:
    endpoint.default = Reply(delay_s=0.2, body=completion().body)
    first = client(endpoint, max_concurrency=2)
    second = client(endpoint, max_concurrency=2)  # same base URL: shares the first client's two slots
    results: list[str | None] = []

    def ask(llm: OpenAIChat) -> None:
        results.append(llm.chat(HELLO).message.content)

    threads = [threading.Thread(target=ask, args=(llm,)) for llm in [first, second] * 4]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 8
    assert endpoint.peak == 2
    assert time.monotonic() - started >= 0.8  # 8 requests of 0.2 s, two at a time


# --- native tool calls ----------------------------------------------------------------------------------------


def test_native_tool_calls_are_read_and_ids_generated(endpoint: FakeEndpoint) -> None:
    endpoint.replies = [
        completion(
            None,
            tool_calls=[
                {"id": "call_a", "type": "function", "function": {"name": "run", "arguments": '{"command": "ls"}'}},
                {"type": "function", "function": {"name": "run", "arguments": {"command": "pwd"}}},
            ],
        )
    ]
    result = client(endpoint).chat(HELLO, tools=[RUN])
    assert result.mode == "native"
    calls = result.message.tool_calls
    assert [(call.name, call.arguments) for call in calls] == [("run", {"command": "ls"}), ("run", {"command": "pwd"})]
    assert calls[0].id == "call_a"
    assert calls[1].id.startswith("call_")
    sent = endpoint.requests[0]
    assert sent["tools"] == [{"type": "function", "function": RUN.model_dump()}]
    assert "response_format" not in sent


def test_native_arguments_that_are_not_an_object_are_malformed(endpoint: FakeEndpoint) -> None:
    endpoint.replies = [
        completion(
            None, tool_calls=[{"id": "x", "type": "function", "function": {"name": "run", "arguments": "ls -la"}}]
        )
    ]
    with pytest.raises(LLMError) as caught:
        client(endpoint).chat(HELLO, tools=[RUN])
    assert caught.value.kind == "malformed"
    assert not caught.value.is_infra
    assert len(endpoint.requests) == 1  # the model's output, not the endpoint: not retried here


def test_native_text_with_a_call_is_parsed(endpoint: FakeEndpoint) -> None:
    endpoint.replies = [completion('Listing now.\n```json\n{"name": "run", "arguments": {"command": "ls"}}\n```')]
    result = client(endpoint).chat(HELLO, tools=[RUN])
    assert result.mode == "parsed"
    assert result.message.content == "Listing now."
    assert [(call.name, call.arguments) for call in result.message.tool_calls] == [("run", {"command": "ls"})]


def test_a_plain_answer_is_a_text_completion(endpoint: FakeEndpoint) -> None:
    endpoint.replies = [completion("There are three files.")]
    result = client(endpoint).chat(HELLO, tools=[RUN])
    assert result.mode == "text"
    assert result.message.tool_calls == []
    assert result.message.content == "There are three files."


def test_native_structured_output_sends_json_schema(endpoint: FakeEndpoint) -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    endpoint.replies = [completion('{"city": "Oslo"}')]
    result = client(endpoint).chat(HELLO, response_schema=schema)
    assert result.mode == "constrained"
    assert json.loads(result.message.content or "") == {"city": "Oslo"}
    assert endpoint.requests[0]["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "response", "schema": schema},
    }


def test_history_with_tool_calls_is_sent_in_openai_shape(endpoint: FakeEndpoint) -> None:
    history = [
        Message(role="user", content="list"),
        Message(role="assistant", tool_calls=[ToolCall(id="c1", name="run", arguments={"command": "ls"})]),
        Message(role="tool", tool_call_id="c1", name="run", content="a.txt"),
    ]
    client(endpoint).chat(history, tools=[RUN])
    sent = endpoint.requests[0]["messages"]
    assert sent[1] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "run", "arguments": '{"command": "ls"}'}}],
    }
    assert sent[2] == {"role": "tool", "content": "a.txt", "tool_call_id": "c1"}


# --- constrained mode -----------------------------------------------------------------------------------------


def test_constrained_mode_sends_the_envelope_schema_and_reads_calls(endpoint: FakeEndpoint) -> None:
    endpoint.replies = [completion('{"name": "run", "arguments": {"command": "ls -la"}}')]
    result = client(endpoint, tool_mode="constrained").chat(HELLO, tools=[RUN])
    assert result.mode == "constrained"
    assert [(call.name, call.arguments) for call in result.message.tool_calls] == [("run", {"command": "ls -la"})]
    assert result.message.content is None
    sent = endpoint.requests[0]
    options = sent["response_format"]["json_schema"]["schema"]["anyOf"]
    assert [option["properties"]["name"]["const"] for option in options] == ["run", RESPOND]
    assert [tool["function"]["name"] for tool in sent["tools"]] == ["run", RESPOND]


def test_constrained_respond_is_a_text_answer(endpoint: FakeEndpoint) -> None:
    endpoint.replies = [completion('{"name": "respond", "arguments": {"content": "Done: 3 files."}}')]
    result = client(endpoint, tool_mode="constrained").chat(HELLO, tools=[RUN])
    assert result.mode == "constrained"
    assert result.message.tool_calls == []
    assert result.message.content == "Done: 3 files."


def test_constrained_respond_carries_the_response_schema(endpoint: FakeEndpoint) -> None:
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
    endpoint.replies = [completion('{"name": "respond", "arguments": {"ok": true}}')]
    result = client(endpoint, tool_mode="constrained").chat(HELLO, tools=[RUN], response_schema=schema)
    assert json.loads(result.message.content or "") == {"ok": True}
    options = endpoint.requests[0]["response_format"]["json_schema"]["schema"]["anyOf"]
    assert options[1]["properties"]["arguments"] == schema


def test_constrained_falls_back_to_parsing_when_the_server_ignores_the_schema(endpoint: FakeEndpoint) -> None:
    endpoint.replies = [completion('<tool_call>\n{"name": "run", "arguments": {"command": "id"}}\n</tool_call>')]
    result = client(endpoint, tool_mode="constrained").chat(HELLO, tools=[RUN])
    assert result.mode == "parsed"
    assert result.message.tool_calls[0].arguments == {"command": "id"}


def test_constrained_call_cut_off_is_malformed(endpoint: FakeEndpoint) -> None:
    cut = completion('{"name": "run", "arguments": {"command": "find / -name')
    cut.body["choices"][0]["finish_reason"] = "length"
    endpoint.replies = [cut]
    with pytest.raises(LLMError) as caught:
        client(endpoint, tool_mode="constrained").chat(HELLO, tools=[RUN])
    assert caught.value.kind == "malformed"


def test_constrained_mode_refuses_a_tool_named_respond(endpoint: FakeEndpoint) -> None:
    with pytest.raises(LLMError) as caught:
        client(endpoint, tool_mode="constrained").chat(HELLO, tools=[RUN.model_copy(update={"name": RESPOND})])
    assert caught.value.kind == "bad_request"
    assert endpoint.requests == []
