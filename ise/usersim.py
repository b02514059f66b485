"""The user simulator: an LLM that plays the plan's user, one milestone at a time, and a guard that keeps it in role.

It is shown the dialogue plus a digest of what really ran (commands, exit codes, files changed, check results), so
an agent that claims success over a failed command is called out. It ends the episode with a verdict token.
Drafts that slip into the assistant's role (offering help, solving the task, emitting code or tool calls) are
rejected and re-drafted with the reason; the count is the drift rate.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from ise.agent import Meter
from ise.checks import describe
from ise.llm.base import LLM, LLMError
from ise.prompts import render
from ise.records import Check, CheckProbe, Message, Milestone, Plan, Step

Verdict = Literal["done", "give_up"]
VERDICT_TOKENS: dict[str, Verdict] = {"[[DONE]]": "done", "[[GIVE_UP]]": "give_up"}

_ASSISTANT_PATTERNS = [
    (re.compile(r"\bhow (?:can|may|could) i (?:help|assist)", re.I), "offers help"),
    (re.compile(r"\b(?:i'?m|i am|i'd be|i would be) (?:happy|glad|here) to (?:help|assist)", re.I), "offers help"),
    (re.compile(r"\banything else (?:i can|you'?d like me to)", re.I), "offers help"),
    (re.compile(r"\blet me know if you (?:need|have) any", re.I), "offers help"),
    (re.compile(r"\bas an ai\b", re.I), "speaks as an AI"),
    (re.compile(r"^\s*(?:assistant|agent|ai)\s*:", re.I | re.M), "speaks as the assistant"),
    (re.compile(r"^\s*(?:certainly|absolutely)\b", re.I), "answers like an assistant"),
    (
        re.compile(r"\bhere(?:'s| is) (?:how you can|the (?:updated|fixed|corrected|complete) )", re.I),
        "solves the task",
    ),
    (re.compile(r"\byou can (?:run|use) the following\b", re.I), "solves the task"),
    (re.compile(r"</?tool_call>|\"arguments\"\s*:", re.I), "emits a tool call"),
    (
        re.compile(r"\bmilestones?\b|\bin your own (?:words|voice)\b|\brole-?play|\bas the user\b", re.I),
        "talks about the role-play",
    ),
    (re.compile(r"```"), "emits a code block"),
]
_SPEAKER_PREFIX = re.compile(r"^\s*(?:user|me)\s*:\s*", re.I)


def drift_reason(text: str) -> str | None:
    """Why this draft is not something the user would say, or None when it is in role."""
    if not text.strip():
        return "empty message"
    stripped = text.strip()
    if stripped[0] in "{[":
        try:
            json.loads(stripped)
        except json.JSONDecodeError:
            pass
        else:
            return "emits JSON"
    for pattern, reason in _ASSISTANT_PATTERNS:
        if pattern.search(text):
            return reason
    return None


def split_verdict(text: str) -> tuple[str, Verdict | None]:
    """Remove a verdict token (the last one wins) and return the remaining message and the verdict."""
    verdict: Verdict | None = None
    best = -1
    for token, value in VERDICT_TOKENS.items():
        at = text.rfind(token)
        if at > best:
            best, verdict = at, value
    for token in VERDICT_TOKENS:
        text = text.replace(token, "")
    return _SPEAKER_PREFIX.sub("", text.strip()).strip(), verdict


@dataclass
class UserTurn:
    text: str | None
    """The message to send (with a verdict: the user's closing remark, not sent to the agent); None when every
    draft drifted and no scripted ask was left to fall back on."""
    verdict: Verdict | None = None
    rejected: list[str] = field(default_factory=list)
    """Drift reasons of drafts thrown away before this one."""
    fallback: bool = False
    """Every draft drifted; this is the milestone's scripted ask."""


@dataclass
class MilestoneView:
    """The milestone state the simulator is shown."""

    current: int
    """Index of the milestone being worked on; len(milestones) when all are met."""
    asked: set[int]
    """Milestones already asked for."""


class UserSimulator:
    def __init__(self, llm: LLM, meter: Meter, plan: Plan, *, regenerations: int, seed: int) -> None:
        self.llm = llm
        self.meter = meter
        self.plan = plan
        self.regenerations = regenerations
        self.seed = seed
        self.system = render("user_sim.jinja", card=plan.user, intent=plan.intent)

    def next_turn(
        self, dialogue: Sequence[Message], digest: str, view: MilestoneView, *, turn: int, max_turns: int
    ) -> UserTurn:
        """Draft the next user message. Raises LLMError only for infra failures; a malformed answer counts as a
        drifted draft."""
        milestones = self.plan.user.milestones
        request = render(
            "user_turn.jinja",
            transcript=transcript(dialogue),
            digest=digest,
            milestones=milestones,
            current=view.current,
            asked=view.asked,
            turn=turn,
            max_turns=max_turns,
            tokens=VERDICT_TOKENS,
        )
        messages = [Message(role="system", content=self.system), Message(role="user", content=request)]
        rejected: list[str] = []
        for attempt in range(self.regenerations + 1):
            draft = self._draft(messages, turn, attempt)
            text, verdict = split_verdict(draft)
            reason = "ends the conversation before it started" if verdict and turn == 1 else None
            reason = reason or (None if verdict and not text else drift_reason(text))
            if reason is None:
                return UserTurn(text=text, verdict=verdict, rejected=rejected)
            rejected.append(reason)
            messages = [
                *messages,
                Message(role="assistant", content=draft),
                Message(
                    role="user",
                    content=f"That draft breaks your role ({reason}). You are the USER, not the assistant: write "
                    "only what this user would type next, in plain words, with no code, commands or offers of help.",
                ),
            ]
        ask = _fallback_ask(milestones, view)
        return UserTurn(text=ask, rejected=rejected, fallback=ask is not None)

    def _draft(self, messages: list[Message], turn: int, attempt: int) -> str:
        try:
            completion = self.meter.chat("user", self.llm, messages, seed=self.seed + 100 * turn + attempt)
        except LLMError as exc:
            if exc.is_infra:
                raise
            return ""  # judged as an empty (drifted) draft
        return completion.message.content or ""


def _fallback_ask(milestones: Sequence[Milestone], view: MilestoneView) -> str | None:
    if view.current < len(milestones) and view.current not in view.asked:
        return milestones[view.current].ask
    return None


def transcript(dialogue: Sequence[Message], limit: int = 2000) -> str:
    """The dialogue as the user saw it: user messages and the agent's words (its tool calls are in the digest)."""
    lines = []
    for message in dialogue:
        if message.role not in ("user", "assistant") or not (message.content or "").strip():
            continue
        text = message.content or ""
        if len(text) > limit:
            text = text[:limit] + " [...]"
        lines.append(f"{'YOU' if message.role == 'user' else 'AGENT'}: {text.strip()}")
    return "\n\n".join(lines)


# --- what the user simulator is shown of the agent's turn ----------------------------------------------------


def execution_digest(steps: Sequence[Step], probes: Sequence[CheckProbe], checks: Sequence[Check], *, turn: int) -> str:
    """What really ran in the agent's last turn (`steps`, sub-agents' included), for the user simulator: calls,
    exit codes, files, and the checks probed after its answer."""
    lines = []
    if steps:
        lines.append(f"Tool calls the agent made ({len(steps)}):")
        lines += [f"- {_describe_step(s)}" for s in steps]
    else:
        lines.append("The agent ran no commands and changed no files.")
    changed = [f"{c.change} {c.path}" for s in steps for c in s.changes]
    if changed:
        lines.append("Files changed: " + ", ".join(changed[:20]) + (" ..." if len(changed) > 20 else ""))
    if probes and probes[-1].turn == turn - 1:
        described = {c.id: describe(c) for c in checks}
        lines.append("Checked on your machine afterwards:")
        lines += [f"- {'ok' if r.passed else 'NOT OK'}: {described.get(r.id, r.id)}" for r in probes[-1].results]
    return "\n".join(lines)


def _describe_step(step: Step) -> str:
    args = step.arguments
    what = (
        f"bash `{_short(str(args.get('command', '')), 160)}`"
        if step.tool == "bash"
        else f"{step.tool} {args.get('path') or _short(str(args.get('task', '')), 120)}"
    )
    if step.status == "error":
        return f"{what} -> refused: {_short(step.error or '', 160)}"
    if step.timed_out:
        return f"{what} -> timed out"
    if step.exit_code is not None:
        tail = (
            f" ({_short(step.stderr.strip().splitlines()[-1], 120)})" if step.exit_code and step.stderr.strip() else ""
        )
        return f"{what} -> exit {step.exit_code}{tail}"
    if step.tool == "delegate":
        return f"{what} -> {step.status} after {len(step.sub_steps)} sub-steps"
    return f"{what} -> {step.status}"


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + f"... [{len(text) - limit} more chars]"
