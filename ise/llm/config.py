"""LLM backend configs: a union discriminated on `kind`; each builds its client lazily (no registry)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field

from ise.llm.base import LLM
from ise.records import Record

ToolCallMode = Literal["native", "constrained"]


class OpenAIBackend(Record):
    """Any OpenAI-compatible endpoint: vLLM, llama.cpp server, Ollama, OpenAI."""

    kind: Literal["openai"] = "openai"
    base_url: str = "http://127.0.0.1:8000/v1"
    """Endpoint base URL including /v1."""
    model: str = "default"
    """Model name sent with each request."""
    api_key_env: str = "OPENAI_API_KEY"
    """Environment variable holding the API key (a placeholder is sent if unset, as local servers expect)."""
    tool_mode: ToolCallMode = "native"
    """native: tools= and response_format; constrained: json_schema anyOf over tools (for small local models)."""
    temperature: float = 0.7
    max_tokens: int = 2048
    timeout_s: float = 120.0
    """Per-request timeout."""
    max_retries: int = 4
    """Retries on 429/5xx/connection/timeout errors, with exponential backoff; then the call fails."""
    retry_backoff_s: float = 1.0
    """Delay before the first retry; doubles with each retry (with jitter, capped at 60 s; Retry-After honoured)."""
    max_concurrency: int = 8
    """Requests in flight at once against this endpoint, shared by every client of the same base_url."""
    extra_body: dict[str, Any] = Field(default_factory=dict)
    """Extra request fields passed through (e.g. vLLM sampling options)."""

    def build(self) -> LLM:
        from ise.llm.openai_client import OpenAIChat

        return OpenAIChat(self)


class EmbeddedBackend(Record):
    """The built-in local model served in-process by llama.cpp (xllamacpp) on 127.0.0.1."""

    kind: Literal["embedded"] = "embedded"
    model: Literal["qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"] = "qwen2.5-coder-0.5b"
    n_ctx: int = 16384
    threads: int = 0
    """CPU threads; 0 means all cores."""
    temperature: float = 0.7
    max_tokens: int = 1024
    timeout_s: float = 600.0

    def build(self) -> LLM:
        from ise.llm.embedded import embedded_llm

        return embedded_llm(self)


class TransformersBackend(Record):
    """A local Hugging Face model (plus an optional LoRA adapter from `ise train`) run in-process, CPU or GPU."""

    kind: Literal["transformers"] = "transformers"
    model: str = "qwen2.5-coder-0.5b"
    """A Hugging Face model folder, a .gguf file, or an embedded model name (read from its GGUF)."""
    adapter: Path | None = None
    """A LoRA adapter folder written by `ise train`, applied on top of `model`."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """auto: a GPU when there is one."""
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    """auto: bfloat16 on a GPU that supports it, else float32."""
    temperature: float = 0.7
    """Sampling temperature; 0 decodes greedily."""
    max_tokens: int = 1024
    """Most tokens generated per answer."""
    schema_attempts: int = Field(default=3, ge=1)
    """Generations tried per call until one matches the caller's response schema."""

    def build(self) -> LLM:
        from ise.llm.transformers_chat import TransformersChat

        return TransformersChat(self)


class ScriptedBackend(Record):
    """A deterministic fake for tests and dry runs: replays scripted replies in order."""

    kind: Literal["scripted"] = "scripted"
    script: Path | None = None
    """YAML or JSONL file of replies (see ise/llm/scripted.py)."""
    replies: list[dict[str, Any]] = Field(default_factory=list)
    """Replies given inline instead of a file."""

    def build(self) -> LLM:
        from ise.llm.scripted import ScriptedLLM

        return ScriptedLLM.from_config(self)


LLMBackend = Annotated[
    OpenAIBackend | EmbeddedBackend | TransformersBackend | ScriptedBackend, Field(discriminator="kind")
]
