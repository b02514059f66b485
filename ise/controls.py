"""Control agents for plans: what an episode scores when the agent does exactly the reference work, and when it does
nothing. A plan whose reference agent fails, or whose do-nothing agent passes, measures nothing (the dry run and
solution run of ise/plan_validation.py prove the same on the checks alone; these prove it through a whole episode).

- `oracle_llm(plans)`: the reference agent. Each user turn it makes one `bash` call with the current milestone's
  reference solution (Plan.solution), then answers with what that printed (as validation takes it: stdout,
  stripped) when the milestone has answer checks, or "Done." when it has none.
- `single_turn_oracle_llm(plan)`: the reference agent for a single-turn episode (ise eval), where the request is
  the only user message: one `bash` call per milestone's script, in order, then the stdout of the last milestone
  that has answer checks (or "Done.").
- `null_llm()`: the do-nothing agent. It answers "I do not know." and never calls a tool.
- `relay_user_llm()`: a user simulator that sends each milestone's ask word for word, as the turn request quotes it
  (turn 1, the first ask, is sent by ise/usersim.py without a simulator call),
  and declares done once nothing is left to ask (everything verified, or no messages left).

All three are ScriptedLLM responders that decide from the conversation alone, so one instance serves every plan and
worker of a stage run. The oracle finds its plan by the first user message (a milestone ask, word for word, from
the relay user); given a single plan it needs no match. The milestone is the one whose ask the latest user message
is, else the one at that turn's position.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from ise.agent import REPEAT_NOTE
from ise.llm.scripted import Reply, ScriptedLLM
from ise.records import AnswerCheck, Message, Plan, ToolSpec
from ise.usersim import VERDICT_TOKENS

NON_ANSWER = "I do not know."
"""The do-nothing agent's answer (one of the non-answers every answer check must reject on the initial state)."""
DONE = "Done."
"""The reference agent's answer to a milestone without answer checks."""

_LOOP_HINTS = ("Your last reply could not be used", "Your reply was empty")
"""User messages the agent loop adds itself (transient re-ask hints), not the user's."""
_NOTES = r"exit code -?\d+|timed out after [^\]]*|output truncated: [^\]]*|the shell session was restarted[^\]]*"
_TRAILERS = re.compile(rf"(?:\n?\[(?:{_NOTES})\])+$")
_QUOTED_ASK = re.compile(r'^(?:You are still waiting|That part is done).*?"(.*)"', re.M)
_DONE_TOKEN = next(token for token, verdict in VERDICT_TOKENS.items() if verdict == "done")


def stdout_of(tool_result: str) -> str:
    """The stdout of a bash step from its tool message (ise/agent.format_exec: stdout, `stderr:` and its text,
    bracketed notes, the exit code), stripped as validation strips a solution's output. A stdout that itself holds
    a line `stderr:` is cut there: the message cannot tell it from the stderr section."""
    text = tool_result.removesuffix(REPEAT_NOTE)
    text = _TRAILERS.sub("", text)
    if text.startswith("stderr:\n"):
        return ""
    stdout, _, _ = text.partition("\nstderr:\n")
    return stdout.strip()


def _user_messages(messages: Sequence[Message]) -> list[str]:
    return [m.content or "" for m in messages if m.role == "user" and not (m.content or "").startswith(_LOOP_HINTS)]


def _results_this_turn(messages: Sequence[Message]) -> list[Message]:
    results: list[Message] = []
    for message in reversed(messages):
        if message.role == "user" and not (message.content or "").startswith(_LOOP_HINTS):
            break
        if message.role == "tool":
            results.append(message)
    return results[::-1]


class _Oracle:
    def __init__(self, plans: Sequence[Plan]) -> None:
        self.plans = list(plans)
        self.by_first_ask: dict[str, Plan] = {}
        for plan in self.plans:
            if not plan.user.milestones or len(plan.solution) != len(plan.user.milestones):
                raise ValueError(f"plan {plan.id}: the oracle needs one reference solution per milestone")
            first = plan.user.milestones[0].ask.strip()
            other = self.by_first_ask.setdefault(first, plan)
            if other is not plan and len(self.plans) > 1:
                raise ValueError(f"plans {other.id} and {plan.id} open with the same ask: the oracle cannot tell them")

    def plan_of(self, asked: list[str]) -> Plan | None:
        if len(self.plans) == 1:
            return self.plans[0]
        return self.by_first_ask.get(asked[0].strip()) if asked else None

    def __call__(self, messages: Sequence[Message], tools: Sequence[ToolSpec], schema: dict[str, Any] | None) -> Reply:
        asked = _user_messages(messages)
        plan = self.plan_of(asked)
        if plan is None or not asked:
            return {"content": "I cannot tell which task this is, so I have no reference solution for it."}
        milestones = plan.user.milestones
        latest = asked[-1].strip()
        index = next(
            (i for i, m in enumerate(milestones) if m.ask.strip() == latest),
            min(len(asked), len(milestones)) - 1,
        )
        results = _results_this_turn(messages)
        if not results:
            return {"tool_calls": [{"name": "bash", "arguments": {"command": plan.solution[index]}}]}
        answer_ids = {c.id for c in plan.checks if isinstance(c, AnswerCheck)}
        if answer_ids & set(milestones[index].checks):
            return {"content": stdout_of(results[-1].content or "")}
        return {"content": DONE}


def oracle_llm(plans: Plan | Sequence[Plan]) -> ScriptedLLM:
    """The reference agent for these plans (see the module docstring)."""
    return ScriptedLLM(responder=_Oracle([plans] if isinstance(plans, Plan) else plans))


class _SingleTurnOracle:
    def __init__(self, plan: Plan) -> None:
        if not plan.solution:
            raise ValueError(f"plan {plan.id}: the oracle needs a reference solution")
        self.plan = plan
        answer_ids = {c.id for c in plan.checks if isinstance(c, AnswerCheck)}
        answering = [i for i, m in enumerate(plan.user.milestones) if answer_ids & set(m.checks)]
        self.answer_from = answering[-1] if answering and answering[-1] < len(plan.solution) else None

    def __call__(self, messages: Sequence[Message], tools: Sequence[ToolSpec], schema: dict[str, Any] | None) -> Reply:
        results = _results_this_turn(messages)
        if len(results) < len(self.plan.solution):
            return {"tool_calls": [{"name": "bash", "arguments": {"command": self.plan.solution[len(results)]}}]}
        if self.answer_from is None:
            return {"content": DONE}
        return {"content": stdout_of(results[self.answer_from].content or "")}


def single_turn_oracle_llm(plan: Plan) -> ScriptedLLM:
    """The reference agent of one plan in a single-turn episode (see the module docstring)."""
    return ScriptedLLM(responder=_SingleTurnOracle(plan))


def null_llm() -> ScriptedLLM:
    """The do-nothing agent: "I do not know.", every time, without acting."""
    return ScriptedLLM(responder=lambda messages, tools, schema: {"content": NON_ANSWER})


def _relay(messages: Sequence[Message], tools: Sequence[ToolSpec], schema: dict[str, Any] | None) -> Reply:
    request = next((m.content or "" for m in messages if m.role == "user"), "")
    if found := _QUOTED_ASK.search(request):
        return {"content": found.group(1)}
    return {"content": f"Thanks, that is all. {_DONE_TOKEN}"}


def relay_user_llm() -> ScriptedLLM:
    """A user simulator that sends the asks as written and then declares done (see the module docstring)."""
    return ScriptedLLM(responder=_relay)
