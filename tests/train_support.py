"""Shared pieces of the training tests: the embedded model's real tokenizer and chat template (read once per session
from the 0.5B GGUF), a tiny randomly initialised Qwen2 model built on it, and a known row with tool calls."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ise.llm.local_model import load_tokenizer, resolve_model

BASH = {
    "type": "function",
    "function": {
        "name": "bash",
        "description": "Run a shell command.",
        "parameters": {"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]},
    },
}


def call(call_id: str, command: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": "bash", "arguments": {"command": command}}}


KNOWN_ROW: dict[str, Any] = {
    "messages": [
        {"role": "system", "content": "You are a careful terminal agent."},
        {"role": "user", "content": "How many files are in /data?"},
        {"role": "assistant", "content": "I'll look.", "tool_calls": [call("c1", "ls /data")]},
        {"role": "tool", "tool_call_id": "c1", "name": "bash", "content": "a.txt\nb.txt\nc.txt"},
        {"role": "assistant", "content": None, "tool_calls": [call("c2", "ls /data | wc -l")]},
        {"role": "tool", "tool_call_id": "c2", "name": "bash", "content": "3"},
        {"role": "assistant", "content": "There are 3 files in /data."},
    ],
    "tools": [BASH],
}
KNOWN_SPANS = [
    'I\'ll look.\n<tool_call>\n{"name": "bash", "arguments": {"command": "ls /data"}}\n</tool_call><|im_end|>',
    '<tool_call>\n{"name": "bash", "arguments": {"command": "ls /data | wc -l"}}\n</tool_call><|im_end|>',
    "There are 3 files in /data.<|im_end|>",
]
"""Exactly what the loss may see of KNOWN_ROW: each assistant turn with its tool calls and end-of-turn token."""


def write_rows(folder: Path, rows: list[dict[str, Any]], split: str = "train") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{split}.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return folder


@pytest.fixture(scope="session")
def qwen_tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 0.5B model's tokenizer and chat template, read from its GGUF once and saved as a tokenizer folder."""
    folder = tmp_path_factory.mktemp("qwen-tokenizer")
    load_tokenizer(resolve_model("qwen2.5-coder-0.5b")).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_model_dir(qwen_tokenizer_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised (seeded) two-layer Qwen2 of about 10 MB with the real tokenizer: a model folder like
    any other, so every code path is the one a real model takes."""
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(qwen_tokenizer_dir)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-qwen2")
    Qwen2ForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
