"""Delegation's rules in one place: when the agent is offered the delegate tool, when a trajectory counts as
having delegated the whole request, and how a delegate step's sub-agent conversation is read back (for ATIF's
embedded trajectories and for the sub-agent rows of `ise export`).

Why it matters: small models hand everything to a sub-agent at their first step when they can, and a row whose
top-level agent only calls `delegate` teaches a student to delegate, not to work. So the tool is offered only
for plans complex enough to have self-contained subtasks (execute.delegate_for), such rows are filtered by
default (export.include_whole_delegation), and the sub-agent's own conversation, which is real terminal work,
can be exported as a row of its own (export.subagent_rows).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from ise.agent import agent_tools
from ise.config import ExecuteConfig
from ise.records import Complexity, Message, Step, ToolSpec, Trace
from ise.recovery import flatten
from ise.stages.sft_rows import Row, openai_messages, openai_tools

DELEGATE_TOOL = "delegate"
WHOLE_DELEGATION = "delegated_whole_request"
"""The trace tag and the export filter reason of a trajectory that delegated the whole request."""


def offered_tools(complexity: Complexity, cfg: ExecuteConfig) -> list[ToolSpec]:
    """The top-level agent's tools for a plan of this complexity: delegate only where execute.delegate_for says."""
    return agent_tools(delegate=complexity in cfg.delegate_for)


def delegated_whole_request(steps: Sequence[Step]) -> bool:
    """The agent's first top-level tool call is `delegate` and every top-level call of that same user turn is a
    `delegate` too: the agent handed the request on instead of working on it itself. (Calls made by the
    sub-agents are not top-level; a delegation in a later turn, after the agent worked, does not count.)"""
    if not steps or steps[0].tool != DELEGATE_TOOL:
        return False
    first_turn = steps[0].turn
    return all(step.tool == DELEGATE_TOOL for step in steps if step.turn == first_turn)


# --- sub-agent conversations ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SubagentConversation:
    """One delegate call's sub-agent, as it ran: its own conversation (system prompt, the task as the user
    message, its calls and results, its report) and the tools it was offered."""

    id: str
    """`<trace id>/delegate/<call id>`: the ATIF trajectory id and the export row id."""
    parent_id: str
    delegate: Step
    tools: list[ToolSpec]

    @property
    def messages(self) -> list[Message]:
        return self.delegate.sub_messages


def subagent_conversation(trace: Trace, delegate: Step) -> SubagentConversation:
    """The sub-agent of one delegate step of this trace (at any depth)."""
    return SubagentConversation(
        id=f"{trace.id}/delegate/{delegate.tool_call_id}",
        parent_id=trace.id,
        delegate=delegate,
        # A sub-agent gets the parent's tools except delegate (ise/agent.py: Agent._delegate).
        tools=[t for t in trace.tools if t.name != DELEGATE_TOOL],
    )


def subagent_conversations(trace: Trace) -> Iterator[SubagentConversation]:
    """Every sub-agent conversation of the trace, in execution order."""
    for step in flatten(trace.steps):
        if step.sub_messages:
            yield subagent_conversation(trace, step)


def subagent_rows(trace: Trace, parent_metadata: Row) -> list[Row]:
    """Each sub-agent conversation as a canonical row (see export.canonical_row): the parent's metadata (so the
    same split and the same intent facts), with the sub-agent's own counts and a pointer to its parent."""
    return [_subagent_row(trace, sub, parent_metadata) for sub in subagent_conversations(trace)]


def _subagent_row(trace: Trace, sub: SubagentConversation, parent_metadata: Row) -> Row:
    own_steps = {s.index for s in flatten(sub.delegate.sub_steps)}
    metadata: dict[str, Any] = {
        **parent_metadata,
        "termination": "agent_answered" if sub.delegate.status == "ok" else "max_steps",
        "user_turns": 1,  # the delegated task is its only user message
        "tool_calls": sum(len(m.tool_calls) for m in sub.messages),
        "recoveries": sum(f.step in own_steps and f.recovered_by is not None for f in trace.failures),
        "subagent": True,
        "parent_id": sub.parent_id,
    }
    return {
        "id": sub.id,
        "messages": openai_messages(sub.messages),
        "tools": openai_tools(sub.tools),
        "metadata": metadata,
    }
