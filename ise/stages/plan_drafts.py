"""What the plan writer (an LLM) drafts, the prompts it gets, and how a draft becomes a Plan.

The model writes a compact draft: ids, budgets, the sandbox profile and absolute paths are filled in here, so it
cannot get them wrong. A milestone proves itself with shell checks on the final state (the user asked for a change),
with an answer check on the agent's reply (the user asked a question), or both.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from functools import cache
from typing import Annotated, Literal, cast

from pydantic import AfterValidator, Field, create_model, model_validator

from ise.checks import last_number
from ise.config import SimulateConfig
from ise.plan_static import Problem, root_home
from ise.prompts import render
from ise.records import (
    AnswerCheck,
    Budgets,
    Check,
    Complexity,
    FileFixture,
    Fixtures,
    HiddenFact,
    Intent,
    Message,
    Milestone,
    Perturbation,
    Plan,
    Profile,
    Record,
    ShellCheck,
    UserCard,
)
from ise.scope import AGENT_HOME, WORKSPACE, resolve_path
from ise.stages.plan_examples import seed_examples_for

# --- what the LLM writes ----------------------------------------------------------------------------------------
# Every field is required (empty string = "none") so constrained decoders always emit the same shape as the
# prompt's example. String lengths are checked after parsing rather than put in the schema: llama.cpp turns a
# maxLength into a counted repetition in its grammar and refuses (or crawls through) large ones. Counts of items
# are small, so they stay in the schema.


def _at_most(limit: int) -> AfterValidator:
    def check(value: str) -> str:
        if len(value) > limit:
            raise ValueError(f"at most {limit} characters, got {len(value)}")
        return value

    return AfterValidator(check)


Short = Annotated[str, _at_most(300)]
Line = Annotated[str, _at_most(800)]
Script = Annotated[str, _at_most(3000)]
Content = Annotated[str, _at_most(6000)]


class FileDraft(Record):
    path: Short = Field(description="Relative to /workspace, or ~/... for the agent's home.")
    content: Content = Field(description="Full, realistic content.")
    executable: bool


class CheckDraft(Record):
    description: Short
    command: Line = Field(description="Shell, run as root after the work; must fail before it.")
    expect_exit: int = Field(ge=0, le=255)
    expect_stdout: Short = Field(description="Text stdout must contain; empty for none.")


AnswerMatchDraft = Literal["none", "exact", "contains", "number", "regex"]


class AnswerDraft(Record):
    """How the agent's reply to a question is judged ("none": the milestone asks no question)."""

    match: AnswerMatchDraft
    expected: Short = Field(description="The answer itself; empty when expected_from prints it.")
    expected_from: Line = Field(description="Shell, run as root on the final state, printing the true answer.")

    @model_validator(mode="after")
    def _usable(self) -> AnswerDraft:
        if self.match == "none" or self.expected_from.strip():
            return self
        expected = self.expected.strip()
        if not expected:
            raise ValueError(f'match is "{self.match}" but expected and expected_from are both empty')
        if self.match == "number" and last_number(expected) is None:
            raise ValueError(f"expected {expected!r} holds no number")
        if self.match == "regex":
            try:
                re.compile(expected)
            except re.error as exc:
                raise ValueError(f"expected {expected!r} is not a valid regex: {exc}") from None
        return self


class MilestoneDraft(Record):
    ask: Line = Field(description="What the user writes to the agent for this step.")
    solution: Script = Field(description="Shell, run as the agent in /workspace, that does this step.")
    checks: list[CheckDraft] = Field(max_length=3)
    answer: AnswerDraft

    @model_validator(mode="after")
    def _proven(self) -> MilestoneDraft:
        if not self.checks and self.answer.match == "none":
            raise ValueError('a milestone needs checks, or an answer whose match is not "none"')
        return self


class PerturbationDraft(Record):
    description: Short
    script: Line = Field(description="Shell run as root; must succeed.")
    at_user_turn: int = Field(ge=1, le=20, description="Fires right after this user message.")
    when: Line = Field(description="Or a shell condition that fires it; empty for none.")


class WorldDraft(Record):
    """Part one: the world the request assumes, and how to tell that the work is done."""

    goal: Line
    files: list[FileDraft] = Field(min_length=1, max_length=6)
    setup_as_agent: Script = Field(description="Shell run as the agent in /workspace after files.")
    setup_as_root: Script = Field(description="Shell run as root after that.")
    milestones: list[MilestoneDraft] = Field(min_length=1, max_length=6)
    perturbations: list[PerturbationDraft] = Field(max_length=3)


class CardDraft(Record):
    """Part two: how the simulated user behaves."""

    voice: Line
    hidden_facts: list[HiddenFact] = Field(max_length=4)
    on_failure: Line
    on_question: Line
    on_partial: Line


class PlanDraft(WorldDraft):
    """The whole plan in one answer (when `two_part` is off); reactions keep the UserCard defaults."""

    voice: Line
    hidden_facts: list[HiddenFact] = Field(max_length=4)


# --- prompts -----------------------------------------------------------------------------------------------------

IMAGE_TOOLS = (
    "bash, coreutils, findutils, grep, sed, gawk, diffutils, patch, file, procps (ps, pgrep, kill), psmisc, "
    "python3 (standard library only), git, jq, sqlite3, tar, zip, unzip, gzip, bzip2, xz, make, cron, bc, tree, rsync"
)
"""What the prompt promises the model; keep in line with sandbox_images/workspace."""

_SHAPE: dict[Complexity, tuple[int, int]] = {"simple": (1, 0), "medium": (2, 1), "complex": (3, 2)}
"""(milestones, perturbations) asked for per complexity level."""


@cache
def draft_model(complexity: Complexity, *, with_card: bool) -> type[WorldDraft]:
    """The draft schema for one complexity level: room for the milestones and perturbations asked for plus one,
    so a small model that starts repeating itself has to close the list instead of rambling to max_tokens."""
    milestones, perturbations = _SHAPE[complexity]
    base = PlanDraft if with_card else WorldDraft
    shaped = create_model(
        base.__name__,
        __base__=base,
        milestones=(list[MilestoneDraft], Field(min_length=1, max_length=milestones + 1)),
        perturbations=(list[PerturbationDraft], Field(max_length=perturbations + 1)),
    )
    return cast(type[WorldDraft], shaped)  # a subclass of `base`; create_model's return type cannot say so


def plan_profile(intent: Intent, cfg: SimulateConfig) -> Profile:
    """admin (the agent is root) for intents about the system itself (`cfg.system_domains`), user otherwise."""
    return "admin" if intent.domain.strip().lower() in {d.lower() for d in cfg.system_domains} else "user"


_QUESTION = re.compile(
    r"\b(?:how (?:many|much|often|long|big)|which|what(?: is|'s| are)|who|whose|when did|where is|find out|tell me|"
    r"let me know|report back)\b",
    re.IGNORECASE,
)


def asks_question(intent: Intent) -> bool:
    """Does the request want something found out and told? Only then are answers taught to the plan writer: the
    extra rules and worked example cost a small model plans it used to get right (the demo's 1.5B model lost
    demo-sales-totals to them)."""
    return bool(_QUESTION.search(intent.request))


def plan_messages(intent: Intent, *, with_card: bool, cfg: SimulateConfig | None = None) -> list[Message]:
    """The system prompt (environment, profile, rules, worked examples) and the intent to plan (`cfg`: the default
    settings when None)."""
    milestones, perturbations = _SHAPE[intent.complexity]
    cfg = cfg or SimulateConfig()
    profile = plan_profile(intent, cfg)
    question = asks_question(intent)
    seeds = seed_examples_for(intent, cfg.seed_examples, profile=profile, question=question, with_card=with_card)
    return [
        Message(
            role="system",
            content=render(
                "plan_system.jinja",
                tools=IMAGE_TOOLS,
                with_card=with_card,
                profile=profile,
                question=question,
                seeds=seeds,
            ),
        ),
        Message(
            role="user",
            content=render(
                "plan.jinja",
                intent=intent,
                milestones=milestones,
                perturbations=perturbations,
                profile=profile,
                question=question,
            ),
        ),
    ]


_ANSWER_ID = re.compile(r"m\d+a\d+")


def repair_message(problems: Sequence[Problem]) -> Message:
    """The problems, with advice per kind; answer checks (ids m<i>a<j>) get their own."""
    answer = {p.kind for p in problems if p.subject is not None and _ANSWER_ID.fullmatch(p.subject)}
    shell = {p.kind for p in problems if p.subject is None or not _ANSWER_ID.fullmatch(p.subject)}
    return Message(
        role="user", content=render("plan_repair.jinja", problems=problems, kinds=shell, answer_kinds=answer)
    )


def card_messages(intent: Intent, world: WorldDraft) -> list[Message]:
    asks = [m.ask for m in world.milestones]
    return [Message(role="user", content=render("plan_card.jinja", intent=intent, goal=world.goal, asks=asks))]


# --- draft -> Plan -----------------------------------------------------------------------------------------------


def budgets_for(complexity: Complexity, milestones: int, cfg: SimulateConfig) -> Budgets:
    """The complexity's budgets, with room for every milestone plus one round of corrections."""
    base = cfg.budgets[complexity]
    return base.model_copy(update={"max_user_turns": max(base.max_user_turns, milestones + 1)})


def setup_script(as_agent: str, as_root: str) -> str | None:
    """One root script: the agent's part first (repos and databases owned by the agent, with a commit identity),
    then the root part (permissions, processes, users), so root's changes are not undone by the agent's."""
    parts = ["set -e"]
    if as_agent.strip():
        agent_part = f"cd {WORKSPACE}\n{as_agent.strip()}"
        parts.append(
            f"runuser -u agent -- env HOME={AGENT_HOME} GIT_AUTHOR_NAME=dev GIT_AUTHOR_EMAIL=dev@example.com "
            f"GIT_COMMITTER_NAME=dev GIT_COMMITTER_EMAIL=dev@example.com bash -ec {shlex.quote(agent_part)}"
        )
    if as_root.strip():
        parts.append(f"cd {WORKSPACE}\n{root_home(as_root.strip())}")
    return "\n".join(parts) if len(parts) > 1 else None


def answer_check(check_id: str, milestone: MilestoneDraft) -> AnswerCheck | None:
    """The milestone's answer check: the truth computed by `expected_from` when given (it wins over a literal: small
    models miscount), else the literal; None when the milestone asks no question."""
    draft = milestone.answer
    if draft.match == "none":
        return None
    ask = " ".join(milestone.ask.split())
    description = "answers: " + (ask if len(ask) <= 160 else ask[:157] + "...")
    if command := draft.expected_from.strip():
        return AnswerCheck(
            kind="answer", id=check_id, description=description, match=draft.match, command=root_home(command)
        )
    return AnswerCheck(kind="answer", id=check_id, description=description, match=draft.match, expected=_literal(draft))


def _literal(draft: AnswerDraft) -> str:
    """The expected text; for number, the number alone when the model wrote it with words ("3 requests")."""
    expected = draft.expected.strip()
    if draft.match != "number":
        return expected
    try:
        float(expected.replace(",", ""))
    except ValueError:
        value = last_number(expected)
        assert value is not None  # AnswerDraft checked it
        return str(int(value)) if value.is_integer() else str(value)
    return expected


def plan_from_draft(
    intent: Intent, world: WorldDraft, card: CardDraft | None, cfg: SimulateConfig, *, attempts: int, model: str
) -> Plan:
    budgets = budgets_for(intent.complexity, len(world.milestones), cfg)
    checks: list[Check] = []
    milestones: list[Milestone] = []
    for m_index, m in enumerate(world.milestones, start=1):
        ids = [f"m{m_index}c{c_index}" for c_index in range(1, len(m.checks) + 1)]
        checks += [
            ShellCheck(
                id=check_id,
                description=c.description,
                command=root_home(c.command),
                expect_exit=c.expect_exit,
                expect_stdout=c.expect_stdout or None,
            )
            for check_id, c in zip(ids, m.checks, strict=True)
        ]
        if answer := answer_check(f"m{m_index}a1", m):
            checks.append(answer)
            ids.append(answer.id)
        milestones.append(Milestone(id=f"m{m_index}", ask=m.ask, checks=ids))
    perturbations = [
        Perturbation(
            id=f"p{index}",
            description=p.description,
            script=root_home(p.script),
            at_user_turn=None if p.when.strip() else min(p.at_user_turn, budgets.max_user_turns),
            when=root_home(p.when.strip()) or None,
        )
        for index, p in enumerate(world.perturbations, start=1)
    ]
    files = {  # a path written twice (small models repeat themselves) keeps its last content
        resolve_path(f.path): FileFixture(
            path=resolve_path(f.path), content=f.content, mode="0755" if f.executable else "0644"
        )
        for f in world.files
    }
    return Plan(
        id=intent.id,
        intent=intent,
        fixtures=Fixtures(
            files=list(files.values()), setup_script=setup_script(world.setup_as_agent, world.setup_as_root)
        ),
        user=user_card(intent, world, card, milestones),
        perturbations=perturbations,
        checks=checks,
        budgets=budgets,
        solution=[m.solution for m in world.milestones] if cfg.verify_solution else [],
        proven=cfg.verify_solution,  # without the solved run, no check was seen to pass
        profile=plan_profile(intent, cfg),
        attempts=attempts,
        model=model,
    )


def user_card(intent: Intent, world: WorldDraft, card: CardDraft | None, milestones: list[Milestone]) -> UserCard:
    if card is not None:
        voice, facts = card.voice, card.hidden_facts
        reactions = card.model_dump(include={"on_failure", "on_question", "on_partial"})
    elif isinstance(world, PlanDraft):
        voice, facts, reactions = world.voice, world.hidden_facts, {}
    else:  # part one is validated before the card is written; the persona's style stands in meanwhile
        voice, facts, reactions = intent.persona.style, [], {}
    user = UserCard(persona=voice, goal=world.goal, milestones=milestones, hidden_facts=facts)
    return user.model_copy(update={k: v for k, v in reactions.items() if v.strip()})
