"""TransformersChat: the LLM protocol on a local Hugging Face model (plus an optional LoRA adapter), CPU or GPU.

This is how `ise eval` scores a model `ise train` produced: the adapter is applied in-process, with no conversion
back to GGUF (no converter ships offline, and merging, converting and re-quantising would score a different model
from the one trained). The prompt is the model's own chat template with the tools passed to it; the answer is read
as Qwen-style `<tool_call>{"name": ..., "arguments": {...}}</tool_call>` blocks (and the other shapes the tolerant
parser knows), else it is text.

`response_schema` is honoured by validation: the schema is put in the prompt, the answer's JSON is checked against
it, and a failing answer is generated again with the next seed, up to `schema_attempts` times; then the call fails
as malformed. Generation is serialised by a lock (one model, one generation at a time).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import jsonschema

from ise.llm.base import LLMError
from ise.llm.local_model import attach_adapter, load_model, load_tokenizer, pick_device, resolve_model
from ise.llm.structured import extract_json
from ise.llm.toolcall import parse_tool_calls
from ise.records import Completion, Message, ToolMode, ToolSpec, Usage
from ise.stages.sft_rows import openai_messages, openai_tools, trl_messages

if TYPE_CHECKING:
    from ise.llm.config import TransformersBackend


class TransformersChat:
    def __init__(self, cfg: TransformersBackend) -> None:
        self.cfg = cfg
        self.model: str = cfg.model if cfg.adapter is None else f"{cfg.model}+{cfg.adapter}"
        source = resolve_model(cfg.model)
        self._tokenizer = load_tokenizer(source if cfg.adapter is None else _adapter_tokenizer(cfg, source))
        network = load_model(source, dtype=cfg.dtype, device=cfg.device)
        self._network = attach_adapter(network, cfg.adapter) if cfg.adapter is not None else network
        self._network.eval()
        self._device = pick_device(cfg.device)
        self._lock = threading.Lock()

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
        prompt = self.prompt(messages, tools, response_schema)
        usage = Usage()
        attempts = self.cfg.schema_attempts if response_schema is not None else 1
        error = ""
        for attempt in range(attempts):
            text, used = self.generate(prompt, temperature, None if seed is None else seed + attempt)
            usage = usage + used
            if response_schema is not None and (error := _schema_error(text, response_schema)):
                continue
            message, mode = _interpret(text, tools)
            return Completion(
                message=message, usage=usage, mode=mode, model=self.model, latency_s=time.monotonic() - started
            )
        raise LLMError("malformed", f"no answer matching the response schema in {attempts} attempts: {error}")

    def prompt(self, messages: Sequence[Message], tools: Sequence[ToolSpec], schema: dict[str, Any] | None) -> str:
        """The chat template's rendering, ending with the assistant header (the shapes training used)."""
        rows = trl_messages(openai_messages(messages))
        if schema is not None:
            rows.append({"role": "system", "content": _schema_instruction(schema)})
        text = self._tokenizer.apply_chat_template(
            rows, tools=openai_tools(tools) or None, tokenize=False, add_generation_prompt=True
        )
        return str(text)

    def generate(self, prompt: str, temperature: float | None, seed: int | None) -> tuple[str, Usage]:
        import torch

        heat = self.cfg.temperature if temperature is None else temperature
        inputs = self._tokenizer(prompt, return_tensors="pt", add_special_tokens=False).to(self._device)
        sampling: dict[str, Any] = {"do_sample": True, "temperature": heat} if heat > 0 else {"do_sample": False}
        with self._lock, torch.inference_mode():
            if seed is not None:
                torch.manual_seed(seed)
            output = self._network.generate(
                **inputs,
                max_new_tokens=self.cfg.max_tokens,
                pad_token_id=self._tokenizer.pad_token_id,
                **sampling,
            )
        prompt_tokens = int(inputs["input_ids"].shape[1])
        new = output[0][prompt_tokens:]
        text = self._tokenizer.decode(new, skip_special_tokens=True)
        return str(text), Usage(prompt_tokens=prompt_tokens, completion_tokens=len(new))

    def close(self) -> None:
        self._network = None


def _adapter_tokenizer(cfg: TransformersBackend, source: Any) -> Any:
    """`ise train` saves the tokenizer beside the adapter; use it when it is there (same vocabulary, and it loads
    in a second instead of being rebuilt from a GGUF)."""
    from ise.llm.local_model import ModelSource

    if cfg.adapter is not None and (cfg.adapter / "tokenizer_config.json").is_file():
        return ModelSource(cfg.adapter)
    return source


def _interpret(text: str, tools: Sequence[ToolSpec]) -> tuple[Message, ToolMode]:
    parsed = parse_tool_calls(text, [tool.name for tool in tools]) if tools else None
    if parsed is None:
        return Message(role="assistant", content=text.strip()), "text"
    return Message(role="assistant", content=parsed.text, tool_calls=parsed.calls), "parsed"


def _schema_instruction(schema: dict[str, Any]) -> str:
    return "Answer with one JSON value only, matching this JSON schema:\n" + json.dumps(schema)


def _schema_error(text: str, schema: dict[str, Any]) -> str:
    """Why `text` does not hold a value valid under `schema`; empty when it does."""
    try:
        jsonschema.validate(extract_json(text), schema)
    except ValueError as exc:
        return str(exc)
    except jsonschema.ValidationError as exc:
        return exc.message
    return ""
