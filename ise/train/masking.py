"""Tokens to learn from: the assistant's, found by rendering the conversation prefix by prefix.

Qwen2.5's chat template has no `{% generation %}` markers, so the tokenizer cannot say which tokens an assistant
wrote. Instead each assistant message i is located in the rendered text as the characters between
render(messages[:i], add_generation_prompt=True) and render(messages[:i+1]): its content, its `<tool_call>`
blocks and its end-of-turn token. The header `<|im_start|>assistant\n` is the prompt (the model is given it at
inference time) and the newline after the end-of-turn token is never generated, so neither is learnt. The full
conversation is tokenized once with character offsets, and a token is learnt when it lies inside an assistant span.
Every render must extend the previous one; a template for which that fails is refused rather than guessed at.

Conversations longer than `max_length` tokens (see LengthPolicy): cut at a turn boundary (after the last assistant
turn that fits whole, so every learnt token keeps exactly the context it had in the episode), dropped and counted,
or refused with an error. Nothing is ever cut in the middle of a message.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ise.errors import InputError
from ise.train.data import Row, TrainRow

LengthPolicy = Literal["truncate_turns", "drop", "error"]
IGNORE = -100
"""The label of a token the loss skips (the convention of Hugging Face's cross-entropy)."""


@dataclass(frozen=True)
class Encoded:
    input_ids: list[int]
    labels: list[int]
    turns: int
    """Assistant turns learnt from."""
    cut_turns: int = 0
    """Assistant turns left out because they did not fit."""

    @property
    def learnt_tokens(self) -> int:
        return sum(label != IGNORE for label in self.labels)


def render(tokenizer: Any, messages: Sequence[Row], tools: Sequence[Row], *, prompt: bool = False) -> str:
    text = tokenizer.apply_chat_template(
        list(messages), tools=list(tools) or None, tokenize=False, add_generation_prompt=prompt
    )
    return str(text)


def assistant_spans(tokenizer: Any, messages: Sequence[Row], tools: Sequence[Row]) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the (start, end) characters of each assistant message in it."""
    full = render(tokenizer, messages, tools)
    end_of_turn = tokenizer.eos_token or ""
    spans = []
    for index, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = render(tokenizer, messages[:index], tools, prompt=True)
        through = render(tokenizer, messages[: index + 1], tools)
        if not (through.startswith(before) and full.startswith(through)):
            raise InputError(
                f"message {index}: the chat template does not render this conversation prefix by prefix, so the "
                "assistant's tokens cannot be located"
            )
        end = len(through)
        if end_of_turn and (close := through.rfind(end_of_turn, len(before))) >= 0:
            end = close + len(end_of_turn)  # what follows the end-of-turn token is template layout
        spans.append((len(before), end))
    return full, spans


def encode(tokenizer: Any, row: TrainRow) -> tuple[list[int], list[int], list[int]]:
    """Token ids, labels (IGNORE outside assistant spans) and the index just past each assistant span's last
    token."""
    text, spans = assistant_spans(tokenizer, row.messages, row.tools)
    encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids: list[int] = list(encoding["input_ids"])
    offsets: list[tuple[int, int]] = [tuple(pair) for pair in encoding["offset_mapping"]]
    labels = [IGNORE] * len(ids)
    ends = []
    cursor = 0
    for start, end in spans:
        while cursor < len(ids) and offsets[cursor][0] < start:
            cursor += 1
        while cursor < len(ids) and offsets[cursor][1] <= end:
            labels[cursor] = ids[cursor]
            cursor += 1
        ends.append(cursor)
    return ids, labels, ends


def fit(tokenizer: Any, row: TrainRow, max_length: int, policy: LengthPolicy) -> Encoded | None:
    """The row encoded within `max_length` tokens under `policy`; None when it is dropped."""
    ids, labels, ends = encode(tokenizer, row)
    if len(ids) <= max_length:
        return Encoded(ids, labels, turns=len(ends))
    if policy == "error":
        raise InputError(
            f"{row.where}: {len(ids)} tokens, more than train.max_length {max_length} "
            "(set train.overlong to truncate_turns or drop, or raise max_length)"
        )
    fitting = [end for end in ends if end <= max_length]
    if policy == "drop" or not fitting:
        return None
    cut = fitting[-1]
    return Encoded(ids[:cut], labels[:cut], turns=len(fitting), cut_turns=len(ends) - len(fitting))
