"""An episode's clocks, token use and budgets (Meter), and the exceptions that end an episode early: shared by the
agent, its sub-agents and the user simulator."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ise.llm.base import LLM
from ise.records import Completion, Message, ModelUsage, TerminationReason, ToolSpec


class EpisodeEnded(Exception):
    """A budget or verdict ended the episode; the trace is still complete and written."""

    def __init__(self, reason: TerminationReason, detail: str = "") -> None:
        super().__init__(detail or reason.value)
        self.reason = reason


class Interrupted(Exception):
    """Ctrl-C: abandon the episode, write nothing (the rerun starts it from scratch)."""


@dataclass
class Meter:
    """Clocks, token use and budgets of one episode, shared by the agent, its sub-agents and the user simulator."""

    wall_clock_s: float
    max_tokens: int
    stop: threading.Event
    started: float = field(default_factory=time.monotonic)
    llm_s: float = 0.0
    sandbox_s: float = 0.0
    usage: dict[tuple[str, str], ModelUsage] = field(default_factory=dict)
    last_role: Literal["agent", "user"] = "agent"
    """Who made the latest LLM call: names the side an endpoint failure hit."""

    def check(self) -> None:
        if self.stop.is_set():
            raise Interrupted
        if time.monotonic() - self.started > self.wall_clock_s:
            raise EpisodeEnded(TerminationReason.WALL_CLOCK, f"wall clock budget of {self.wall_clock_s:g}s spent")

    def chat(
        self,
        role: Literal["agent", "user"],
        llm: LLM,
        messages: Sequence[Message],
        *,
        tools: Sequence[ToolSpec] = (),
        seed: int | None = None,
    ) -> Completion:
        self.check()
        self.last_role = role
        started = time.monotonic()
        try:
            completion = llm.chat(messages, tools=tools, seed=seed)
        finally:
            elapsed = time.monotonic() - started
            self.llm_s += elapsed
        usage = self.usage.setdefault((role, llm.model), ModelUsage(role=role, model=llm.model))
        usage.calls += 1
        usage.prompt_tokens += completion.usage.prompt_tokens
        usage.completion_tokens += completion.usage.completion_tokens
        usage.latency_s += elapsed
        if role == "agent":
            self._check_tokens(messages, completion)
        return completion.model_copy(update={"latency_s": completion.latency_s or elapsed})

    def _check_tokens(self, messages: Sequence[Message], completion: Completion) -> None:
        """The budget bounds the agent's conversation (what one SFT example will hold), measured by the last call."""
        prompt = completion.usage.prompt_tokens or approx_tokens(messages)
        size = prompt + completion.usage.completion_tokens
        if size > self.max_tokens:
            raise EpisodeEnded(
                TerminationReason.TOKEN_BUDGET, f"conversation reached {size} tokens (budget {self.max_tokens})"
            )

    def timed(self, action: Callable[[], Any]) -> Any:
        """Run a sandbox action and count its time."""
        started = time.monotonic()
        try:
            return action()
        finally:
            self.sandbox_s += time.monotonic() - started


def approx_tokens(messages: Sequence[Message]) -> int:
    """UTF-8 bytes / 4: a stand-in when a backend reports no prompt tokens (scripted fakes)."""
    return sum(len(m.model_dump_json(exclude_defaults=True).encode()) for m in messages) // 4
