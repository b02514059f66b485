"""The embedded default LLM: llama.cpp's OpenAI-compatible server run in-process (xllamacpp) on 127.0.0.1.

One server per (model, n_ctx, threads) is shared by every role and thread of the process and reference-counted:
it starts on first use, stops when the last client closes, and any left over are stopped at exit. Clients are
OpenAIChat in constrained tool mode (small models never emit structured tool calls) with a concurrency of 1,
because the CPU cannot serve two generations at once any faster than one after the other.

The server is bound to 127.0.0.1 and, unless started by `ise llm serve`, guarded by a random per-process API key,
so nothing else on the machine can use it.
"""

from __future__ import annotations

import atexit
import gc
import json
import os
import secrets
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ise.errors import IseError
from ise.llm.config import EmbeddedBackend, OpenAIBackend
from ise.llm.openai_client import OpenAIChat, to_openai_message, to_openai_tool
from ise.llm.weights import fetch_model
from ise.records import Completion, Message, ToolSpec

_HEALTH_TIMEOUT_S = 60.0


def available_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class EmbeddedServer:
    """A running llama.cpp server. Start with `EmbeddedServer.start`; `stop` is idempotent."""

    def __init__(self, handle: Any, model: str, path: Path, api_key: str | None, start_s: float) -> None:
        self._handle = handle
        self.model = model
        self.path = path
        self.api_key = api_key
        self.base_url: str = handle.listening_address
        """http://127.0.0.1:PORT (the OpenAI API is under /v1)."""
        self.start_s = start_s
        """Seconds from start() to a healthy server."""
        self._owner_pid = os.getpid()

    @classmethod
    def start(
        cls,
        model: str,
        *,
        n_ctx: int = 16384,
        threads: int = 0,
        port: int = 0,
        api_key: str | None = None,
        verbose: bool = False,
    ) -> EmbeddedServer:
        """Start serving `model` (assembling its GGUF on first use); returns once /health answers ok."""
        path = fetch_model(model)
        try:
            import xllamacpp
        except ImportError:
            raise IseError("the embedded model needs xllamacpp: pip install 'ise[local]'") from None
        started = time.monotonic()
        params = xllamacpp.CommonParams()
        params.model.path = str(path)
        params.n_ctx = n_ctx
        params.n_parallel = 1  # one slot gets the whole context; requests queue (we send one at a time anyway)
        params.cpuparams.n_threads = threads or available_cores()
        params.cpuparams_batch.n_threads = threads or available_cores()
        params.hostnames = ["127.0.0.1"]
        params.port = port
        params.use_jinja = True  # the model's own chat template, tool descriptions included
        params.verbosity = 3 if verbose else 1  # errors only, unless asked
        params.ui = False
        if api_key:
            params.api_keys = [api_key]
        try:
            handle = xllamacpp.Server(params)
        except RuntimeError as exc:
            raise IseError(f"the embedded model server did not start ({path}, port {port or 'any'}): {exc}") from None
        server = cls(handle, model, path, api_key, 0.0)
        server._wait_healthy()
        server.start_s = time.monotonic() - started
        return server

    @property
    def openai_url(self) -> str:
        return self.base_url + "/v1"

    @property
    def running(self) -> bool:
        return self._handle is not None

    def stop(self) -> None:
        if os.getpid() != self._owner_pid:
            return  # a forked child holds a copy without the server's threads: freeing it there could hang
        # xllamacpp has no stop(): the server shuts down (joining its threads) when its object is freed.
        handle, self._handle = self._handle, None
        del handle
        gc.collect()

    def health(self) -> bool:
        try:
            with urllib.request.urlopen(self.base_url + "/health", timeout=5) as response:
                return bool(json.load(response).get("status") == "ok")
        except (OSError, ValueError):
            return False

    def tokenize(self, text: str, *, add_special: bool = False) -> list[int]:
        """Token ids of `text` with the model's own tokenizer (special tokens like <|im_start|> are parsed)."""
        tokens = self._post("/tokenize", {"content": text, "add_special": add_special, "parse_special": True})
        return [int(token) for token in tokens["tokens"]]

    def apply_template(self, messages: Sequence[Message], tools: Sequence[ToolSpec] = ()) -> str:
        """The prompt text the model's chat template renders for this conversation."""
        body: dict[str, Any] = {"messages": [to_openai_message(message) for message in messages]}
        if tools:
            body["tools"] = [to_openai_tool(tool) for tool in tools]
        return str(self._post("/apply-template", body)["prompt"])

    def count_tokens(self, messages: Sequence[Message], tools: Sequence[ToolSpec] = ()) -> int:
        """Tokens of the conversation as the model sees it (chat template applied)."""
        return len(self.tokenize(self.apply_template(messages, tools)))

    def _post(self, route: str, body: dict[str, Any]) -> Any:
        if not self.running:
            raise IseError(f"the embedded model server for {self.model} is stopped")
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(self.base_url + route, data=json.dumps(body).encode(), headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return json.load(response)
        except urllib.error.HTTPError as exc:
            raise IseError(f"embedded model server {route}: HTTP {exc.code}: {exc.read()[:200]!r}") from None
        except OSError as exc:
            raise IseError(f"embedded model server {route}: {exc}") from None

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + _HEALTH_TIMEOUT_S
        while not self.health():
            if time.monotonic() > deadline:
                self.stop()
                raise IseError(f"the embedded model server for {self.model} did not become healthy")
            time.sleep(0.1)


class _ServerPool:
    """Process-wide shared servers, reference-counted per (model, n_ctx, threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._servers: dict[tuple[str, int, int], tuple[EmbeddedServer, int]] = {}
        self._exit_hook = False

    def acquire(self, cfg: EmbeddedBackend) -> EmbeddedServer:
        key = (cfg.model, cfg.n_ctx, cfg.threads)
        with self._lock:
            held = self._servers.get(key)
            if held is None or not held[0].running:
                api_key = secrets.token_hex(16)
                held = (EmbeddedServer.start(cfg.model, n_ctx=cfg.n_ctx, threads=cfg.threads, api_key=api_key), 0)
            server, users = held
            self._servers[key] = (server, users + 1)
            if not self._exit_hook:
                atexit.register(self.stop_all)
                self._exit_hook = True
            return server

    def release(self, server: EmbeddedServer) -> None:
        with self._lock:
            for key, (held, users) in list(self._servers.items()):
                if held is server:
                    if users > 1:
                        self._servers[key] = (held, users - 1)
                    else:
                        del self._servers[key]
                        held.stop()
                    return

    def users(self, server: EmbeddedServer) -> int:
        with self._lock:
            return next((users for held, users in self._servers.values() if held is server), 0)

    def stop_all(self) -> None:
        with self._lock:
            for server, _ in self._servers.values():
                server.stop()
            self._servers.clear()


_pool = _ServerPool()


class EmbeddedLLM:
    """The LLM protocol on the shared embedded server; `server` offers tokenize/apply_template too."""

    def __init__(self, cfg: EmbeddedBackend) -> None:
        self.cfg = cfg
        self.model: str = cfg.model
        self.server = _pool.acquire(cfg)
        self._chat = OpenAIChat(
            OpenAIBackend(
                base_url=self.server.openai_url,
                model=cfg.model,
                tool_mode="constrained",
                temperature=cfg.temperature,
                max_tokens=cfg.max_tokens,
                timeout_s=cfg.timeout_s,
                max_retries=1,  # local: a failure is rarely transient
                retry_backoff_s=0.5,
                max_concurrency=1,
            ),
            api_key=self.server.api_key,
        )
        self._closed = False

    def chat(
        self,
        messages: Sequence[Message],
        *,
        tools: Sequence[ToolSpec] = (),
        response_schema: dict[str, Any] | None = None,
        temperature: float | None = None,
        seed: int | None = None,
    ) -> Completion:
        return self._chat.chat(
            messages, tools=tools, response_schema=response_schema, temperature=temperature, seed=seed
        )

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._chat.close()
            _pool.release(self.server)


def embedded_llm(cfg: EmbeddedBackend) -> EmbeddedLLM:
    """An LLM on the shared embedded server for `cfg.model`, starting the server if none runs yet."""
    return EmbeddedLLM(cfg)


@contextmanager
def embedded_server(cfg: EmbeddedBackend | None = None) -> Iterator[EmbeddedServer]:
    """The shared server for tokenize/apply_template without chatting (e.g. export's token counts)."""
    server = _pool.acquire(cfg or EmbeddedBackend())
    try:
        yield server
    finally:
        _pool.release(server)
