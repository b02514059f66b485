"""The user simulator stays in role: the role guard on labelled drafts (tests/data/user_turns.yaml), the first turn,
and the regeneration and fallback path, with scripted LLMs at the seam."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import pytest
from execute_support import make_plan
from role_guard_support import load_cases, score

from ise.llm.base import LLMError
from ise.llm.scripted import Reply, ScriptedLLM
from ise.meter import Meter
from ise.records import Message, ToolSpec
from ise.role_guard import drift_reason, judge_draft
from ise.usersim import MilestoneView, UserSimulator, UserTurn, Verdict

CASES = [case for batch in load_cases().values() for case in batch]
DRIFTED = "Sure! I'm ready to help you! What's the problem you're facing?"
IN_ROLE = "hm, count.txt is still empty. can you look again?"
PLAN = make_plan()
ASKS = [m.ask for m in PLAN.user.milestones]


def test_the_labelled_set_is_large_and_mixed() -> None:
    kinds = {case["kind"] for case in CASES}
    assert len(CASES) >= 80
    assert sum(case["drift"] for case in CASES) >= 30
    assert sum(not case["drift"] for case in CASES) >= 50
    assert {"first_turn", "paste", "question", "terse", "angry", "chatty", "verdict", "quoted"} <= kinds


def test_the_guard_scores_at_least_95_percent_precision_and_recall() -> None:
    result = score(CASES)
    wrong = [(case["draft"], reason) for case, reason in result.misclassified]
    assert result.precision >= 0.95, wrong
    assert result.recall >= 0.95, wrong


@pytest.mark.parametrize("case", [c for c in CASES if "text" in c], ids=lambda c: c["draft"][:40])
def test_a_draft_arrives_cleaned(case: dict[str, Any]) -> None:
    text, _, reason = judge_draft(case["draft"])
    assert (text, reason) == (case["text"], None)


def test_verdicts_are_split_off_and_a_bare_verdict_is_in_role() -> None:
    assert judge_draft("[[DONE]]") == ("", "done", None)
    assert judge_draft("“This is going nowhere.” [[GIVE_UP]]") == ("This is going nowhere.", "give_up", None)
    assert judge_draft("I'm glad I could help! [[DONE]]")[2] == "offers help"


# --- the simulator: first turn, regeneration, fallback --------------------------------------------------------


def simulator(replies: Sequence[Reply] = (), *, regenerations: int = 2) -> tuple[UserSimulator, ScriptedLLM]:
    llm = ScriptedLLM(replies)
    meter = Meter(wall_clock_s=60, max_tokens=100_000, stop=threading.Event())
    return UserSimulator(llm, meter, PLAN, regenerations=regenerations, seed=1), llm


def turn(sim: UserSimulator, view: MilestoneView, number: int = 2, max_turns: int = 4) -> UserTurn:
    dialogue = [Message(role="user", content=ASKS[0]), Message(role="assistant", content="Done.")]
    return sim.next_turn(
        dialogue, "The agent ran no commands and changed no files.", view, turn=number, max_turns=max_turns
    )


def test_the_first_turn_is_the_first_ask_without_calling_the_llm() -> None:
    sim, llm = simulator()
    said = sim.next_turn([], "", MilestoneView(current=0, asked=set()), turn=1, max_turns=4)
    assert said == UserTurn(text=ASKS[0])
    assert llm.calls == []


def test_two_drifted_drafts_are_redrafted_with_the_reason_then_the_third_is_sent() -> None:
    sim, llm = simulator([{"content": DRIFTED}, {"content": "I'll take care of it."}, {"content": f'"{IN_ROLE}"'}])
    said = turn(sim, MilestoneView(current=0, asked={0}))

    assert said == UserTurn(text=IN_ROLE, rejected=["offers help", "takes the task over"])
    assert len(llm.calls) == 3
    last: list[Message] = llm.calls[2]["messages"]
    assert [m.content for m in last if m.role == "assistant"] == [DRIFTED, "I'll take care of it."]
    assert "(takes the task over)" in (last[-1].content or "")


def always(content: str) -> ScriptedLLM:
    def respond(messages: Sequence[Message], tools: Sequence[ToolSpec], schema: dict[str, Any] | None) -> Reply:
        return {"content": content}

    return ScriptedLLM(responder=respond)


@pytest.mark.parametrize(
    ("view", "number", "text", "verdict"),
    [
        (MilestoneView(current=1, asked={0}), 2, ASKS[1], None),  # a milestone not asked yet: its ask as written
        (MilestoneView(current=0, asked={0}), 2, f"That is still not done. {ASKS[0]}", None),
        (MilestoneView(current=0, asked={0}), 5, f"I have to stop here. This is still not done: {ASKS[0]}", None),
        (MilestoneView(current=2, asked={0, 1}), 3, "Thanks, that's everything I needed.", "done"),
    ],
)
def test_a_simulator_that_always_drifts_falls_back_to_words_for_where_the_episode_stands(
    view: MilestoneView, number: int, text: str, verdict: Verdict | None
) -> None:
    sim, _ = simulator(regenerations=2)
    sim.llm = llm = always(DRIFTED)
    said = turn(sim, view, number=number)

    assert said == UserTurn(text=text, verdict=verdict, rejected=["offers help"] * 3, fallback=True)
    assert len(llm.calls) == 3
    assert drift_reason(said.text) is None  # the fallback itself stays in role


def test_a_malformed_reply_is_a_drifted_draft_and_an_endpoint_failure_is_raised() -> None:
    sim, _ = simulator([{"error": "malformed"}, {"content": IN_ROLE}])
    assert turn(sim, MilestoneView(current=0, asked={0})) == UserTurn(text=IN_ROLE, rejected=["empty message"])
    sim, _ = simulator([{"error": "connection"}])
    with pytest.raises(LLMError, match="scripted failure"):
        turn(sim, MilestoneView(current=0, asked={0}))
