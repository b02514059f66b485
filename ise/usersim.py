"""The user simulator: an LLM that plays the plan's user, one milestone at a time, kept in role by ise/role_guard.py.

The first turn is the first milestone's ask as the plan wrote it: the request the plan was proven against, and no
chance for a model to open as the assistant ("Hello! How can I help you?"). From then on the simulator is shown
the dialogue plus a digest of what really ran (commands, exit codes, files changed, check results), so an agent
that claims success over a failed command is called out; it ends the episode with a verdict token. A draft that
slips out of role is re-drafted with the reason (the count is the drift rate); when every draft drifts, the turn
falls back to scripted words (prompts/user_fallback.jinja) that fit where the episode stands.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ise.checks import describe
from ise.llm.base import LLM, LLMError
from ise.meter import Meter
from ise.prompts import render
from ise.records import Check, CheckProbe, Message, Plan, Step
from ise.role_guard import VERDICT_TOKENS, Verdict, drift_reason, judge_draft, split_verdict

__all__ = [
    "VERDICT_TOKENS",
    "MilestoneView",
    "UserSimulator",
    "UserTurn",
    "Verdict",
    "drift_reason",
    "execution_digest",
    "split_verdict",
    "transcript",
]


@dataclass
class UserTurn:
    text: str
    """The message to send (with a verdict: the user's closing remark, not sent to the agent)."""
    verdict: Verdict | None = None
    rejected: list[str] = field(default_factory=list)
    """Drift reasons of drafts thrown away before this one."""
    fallback: bool = False
    """Every draft drifted; this is the scripted fallback."""


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
        """The next user message: the first milestone's ask on turn 1, a draft in role after it. Raises LLMError
        only for infra failures; a malformed answer counts as a drifted draft."""
        milestones = self.plan.user.milestones
        if turn == 1:
            return UserTurn(text=milestones[0].ask if milestones else self.plan.intent.request)
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
            text, verdict, reason = judge_draft(draft)
            if reason is None:
                return UserTurn(text=text, verdict=verdict, rejected=rejected)
            rejected.append(reason)
            redraft = render("user_redraft.jinja", reason=reason)
            messages = [*messages, Message(role="assistant", content=draft), Message(role="user", content=redraft)]
        text, verdict = self._fallback(view, turn=turn, max_turns=max_turns)
        return UserTurn(text=text, verdict=verdict, rejected=rejected, fallback=True)

    def _draft(self, messages: list[Message], turn: int, attempt: int) -> str:
        try:
            completion = self.meter.chat("user", self.llm, messages, seed=self.seed + 100 * turn + attempt)
        except LLMError as exc:
            if exc.is_infra:
                raise
            return ""  # judged as an empty (drifted) draft
        return completion.message.content or ""

    def _fallback(self, view: MilestoneView, *, turn: int, max_turns: int) -> tuple[str, Verdict | None]:
        """Scripted words for where the episode stands: a milestone not asked yet is asked as written, one still
        open is asked again, and once everything is verified the user says so and is done (the checks, not the
        simulator, judged it)."""
        milestones = self.plan.user.milestones
        if view.current >= len(milestones):
            return render("user_fallback.jinja", stage="done").strip(), "done"
        ask = milestones[view.current].ask
        if turn > max_turns:
            return render("user_fallback.jinja", stage="out_of_turns", ask=ask).strip(), None
        if view.current in view.asked:
            return render("user_fallback.jinja", stage="again", ask=ask).strip(), None
        return ask, None


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
