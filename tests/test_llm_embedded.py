"""The REAL embedded model: llama.cpp served in-process, structured output, constrained tool calls, the shared
server's lifecycle, tokenizer helpers and the `ise llm` commands. Runs in CI (`make test` fetches the model)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Literal

import pytest
from pydantic import BaseModel, Field

from ise.errors import IseError
from ise.llm.config import EmbeddedBackend
from ise.llm.embedded import EmbeddedLLM, EmbeddedServer, embedded_llm, embedded_server
from ise.llm.structured import chat_json
from ise.llm.weights import MODELS, fetch_model
from ise.records import Message, ToolCall, ToolSpec

pytestmark = pytest.mark.model
ISE = str(Path(sys.executable).with_name("ise"))

CFG = EmbeddedBackend(n_ctx=4096, max_tokens=256, temperature=0.0)
RUN = ToolSpec(
    name="run",
    description="Run a shell command in the user's workspace and return its output.",
    parameters={
        "type": "object",
        "properties": {"command": {"type": "string", "description": "The command line."}},
        "required": ["command"],
    },
)
WRITE = ToolSpec(
    name="write_file",
    description="Write text to a file, replacing it.",
    parameters={
        "type": "object",
        "properties": {"path": {"type": "string"}, "content": {"type": "string"}},
        "required": ["path", "content"],
    },
)
AGENT = Message(role="system", content="You are a shell agent in a Linux workspace. Use the tools to act.")


class Ticket(BaseModel):
    # Bounded sizes keep generation short (and show that the bounds are enforced while decoding).
    title: str = Field(max_length=60)
    priority: Literal["low", "medium", "high"]
    steps: list[Annotated[str, Field(max_length=60)]] = Field(min_length=1, max_length=2)


@pytest.fixture(scope="module")
def llm() -> Iterator[EmbeddedLLM]:
    model = embedded_llm(CFG)
    yield model
    model.close()


def test_response_schema_gives_a_schema_valid_object(llm: EmbeddedLLM) -> None:
    messages = [
        Message(role="user", content="File a ticket: the nightly backup of /srv/db failed with 'disk full'."),
    ]
    result = llm.chat(messages, response_schema=Ticket.model_json_schema(), seed=1)
    assert result.mode == "constrained"
    ticket = Ticket.model_validate_json(result.message.content or "")
    assert ticket.title
    assert result.usage.prompt_tokens > 10
    assert 0 < result.usage.completion_tokens <= CFG.max_tokens
    assert result.latency_s > 0
    # Through the structured-output helper too (the path the stages use).
    validated, completions = chat_json(llm, messages, Ticket, seed=2)
    assert isinstance(validated, Ticket)
    assert len(completions) >= 1


def test_constrained_mode_gives_a_valid_tool_call(llm: EmbeddedLLM) -> None:
    result = llm.chat([AGENT, Message(role="user", content="Count the lines in data.csv.")], tools=[RUN, WRITE])
    assert result.mode == "constrained"
    assert len(result.message.tool_calls) == 1
    call = result.message.tool_calls[0]
    spec = {"run": RUN, "write_file": WRITE}[call.name]
    assert set(call.arguments) == set(spec.parameters["required"])
    assert all(isinstance(value, str) and value for value in call.arguments.values())
    assert call.id.startswith("call_")


def test_a_tool_result_in_the_history_is_accepted(llm: EmbeddedLLM) -> None:
    call = ToolCall(id="call_1", name="run", arguments={"command": "wc -l data.csv"})
    history = [
        AGENT,
        Message(role="user", content="How many lines does data.csv have?"),
        Message(role="assistant", tool_calls=[call]),
        Message(role="tool", tool_call_id="call_1", name="run", content="42 data.csv\n"),
    ]
    result = llm.chat(history, tools=[RUN, WRITE])
    assert result.mode == "constrained"
    # Either an answer or a further call, but always one well-formed thing.
    assert bool(result.message.content) != bool(result.message.tool_calls)


def test_roles_share_one_server_which_stops_with_the_last_client(llm: EmbeddedLLM) -> None:
    other_cfg = EmbeddedBackend(n_ctx=2048, max_tokens=16)
    first = embedded_llm(other_cfg)
    second = embedded_llm(other_cfg)
    assert first.server is second.server
    assert first.server is not llm.server  # another context size is another server
    server = first.server
    assert server.start_s < 60
    first.close()
    first.close()  # idempotent: must not release twice
    assert server.health()
    assert second.chat([Message(role="user", content="Say ok.")]).message.content is not None
    second.close()
    assert not server.running
    assert not server.health()
    assert llm.server.health()  # the module's server is untouched


def test_tokenizer_and_chat_template_helpers(llm: EmbeddedLLM) -> None:
    with embedded_server(CFG) as server:
        assert server is llm.server
        prompt = server.apply_template([Message(role="user", content="hello there")], tools=[RUN])
        assert "<|im_start|>user\nhello there<|im_end|>" in prompt
        assert '"name": "run"' in prompt
        tokens = server.tokenize("hello world")
        assert len(tokens) == 2
        assert server.tokenize("<|im_start|>") == [151644]  # special tokens are parsed, not spelled out
        assert server.count_tokens([Message(role="user", content="hello world")]) > len(tokens)
    assert llm.server.health()  # the context manager released only its own reference


def test_a_corrupt_model_file_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ISE_CACHE_DIR", str(tmp_path))
    spec = MODELS["qwen2.5-coder-0.5b"]
    models = tmp_path / "models"
    models.mkdir()
    fake = models / spec.filename
    with fake.open("wb") as handle:
        handle.truncate(spec.size)  # right size, all zeros
    stat = fake.stat()
    # A marker that lies (as if the file were damaged after verification): the server itself must refuse it.
    marker = {"sha256": spec.sha256, "size": spec.size, "mtime_ns": stat.st_mtime_ns}
    (models / (spec.filename + ".verified.json")).write_text(json.dumps(marker))
    with pytest.raises(IseError, match="did not start") as caught:
        EmbeddedServer.start(spec.name, n_ctx=512)
    assert "\n" not in str(caught.value)


def test_fetch_command_prints_the_verified_path() -> None:
    out = subprocess.run([ISE, "llm", "fetch"], capture_output=True, text=True, check=True, timeout=300)
    assert out.stdout.strip() == str(fetch_model("qwen2.5-coder-0.5b"))


def test_serve_command_serves_until_interrupted() -> None:
    process = subprocess.Popen(
        [ISE, "llm", "serve", "--port", "0", "--n-ctx", "2048"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ | {"PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("serving qwen2.5-coder-0.5b at http://127.0.0.1:"), line
        base_url = line.split(" at ")[1].split()[0]
        with urllib.request.urlopen(base_url + "/models", timeout=10) as response:
            assert json.load(response)["data"]
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
        assert process.returncode == 0, err
        assert "stopped" in out
        with pytest.raises(urllib.error.URLError, match="Connection refused"):
            urllib.request.urlopen(base_url + "/models", timeout=5)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
