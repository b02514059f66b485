"""The chat-template seam of `ise export`: a model's real chat template and tokenizer, for the render check and
real token counts; the embedded model server provides one when its model is fetched."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING, Protocol

from ise.config import ExportConfig
from ise.llm.config import EmbeddedBackend
from ise.stages.sft_rows import Row, message_records, tool_records

if TYPE_CHECKING:
    from ise.llm.embedded import EmbeddedServer


class ChatTemplate(Protocol):
    """A model's real chat template and tokenizer."""

    name: str

    def render(self, messages: list[Row], tools: list[Row]) -> str: ...

    def count_tokens(self, messages: list[Row], tools: list[Row]) -> int: ...


class EmbeddedTemplate:
    """The embedded model server's /apply-template and /tokenize, for rows in any of our message shapes.

    The server starts on first use, so bad input fails fast without loading a model; close() releases it."""

    def __init__(self, backend: EmbeddedBackend) -> None:
        self.backend = backend
        self.name = f"{backend.model} tokenizer, chat template applied (embedded server)"
        self._server: EmbeddedServer | None = None
        self._stack = ExitStack()

    @property
    def server(self) -> EmbeddedServer:
        if self._server is None:
            from ise.llm.embedded import embedded_server

            self._server = self._stack.enter_context(embedded_server(self.backend))
        return self._server

    def render(self, messages: list[Row], tools: list[Row]) -> str:
        return self.server.apply_template(message_records(messages), tool_records(tools))

    def count_tokens(self, messages: list[Row], tools: list[Row]) -> int:
        return len(self.server.tokenize(self.render(messages, tools)))

    def close(self) -> None:
        self._stack.close()


@contextmanager
def chat_template_for(cfg: ExportConfig, backend: EmbeddedBackend) -> Iterator[ChatTemplate | None]:
    """The template server the export needs, or None when it needs none or may do without one and the embedded
    model is not fetched. (Both Qwen2.5-Coder sizes share one tokenizer and chat template.)"""
    counting = cfg.max_tokens is not None and cfg.token_counter != "approx"
    required = counting and cfg.token_counter == "embedded"
    if not (counting or cfg.render_samples) or not (required or embedded_model_ready(backend.model)):
        yield None
        return
    template = EmbeddedTemplate(backend)
    try:
        yield template
    finally:
        template.close()


def embedded_model_ready(model: str) -> bool:
    from ise.llm.weights import cached_model

    try:
        import xllamacpp  # noqa: F401
    except ImportError:
        return False
    return cached_model(model) is not None
