"""Stage 2: an LLM drafts an executable plan for each intent; the plan is dry-run in a real sandbox before it is kept.

The model writes a compact draft (ids, budgets and absolute paths are filled in here, so it cannot get them
wrong). With `two_part`, it first drafts the world (files, setup, milestones with checks, perturbations) and, once
that validates, the user card (voice, hidden facts, reactions): two short answers are easier for a small model
than one long one, and no tokens are spent on a card for a world that fails. A draft that fails validation goes
back to the model with the exact problems, up to `max_attempts` times; then the intent lands in the errors file.
"""

from __future__ import annotations

import json
import re
import shlex
import statistics
import threading
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Annotated, Any, cast

from pydantic import AfterValidator, Field, create_model
from rich.console import Console
from rich.table import Table

from ise.config import Config, SimulateConfig
from ise.errors import IseError
from ise.jsonl import read_dicts, read_records
from ise.llm.base import LLM, LLMError
from ise.llm.structured import StructuredOutputError, chat_json
from ise.plan_validation import (
    AGENT_HOME,
    WORKSPACE,
    Problem,
    SandboxFactory,
    calibrated,
    calibration,
    disproved,
    resolve_path,
    root_home,
    validate,
    without,
)
from ise.prompts import render
from ise.records import (
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
    Record,
    UserCard,
)
from ise.runner import RunStats, errors_path, run_stage, stop_requested
from ise.sandbox.base import Sandbox

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


class MilestoneDraft(Record):
    ask: Line = Field(description="What the user writes to the agent for this step.")
    solution: Script = Field(description="Shell, run as the agent in /workspace, that does this step.")
    checks: list[CheckDraft] = Field(min_length=1, max_length=3)


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


def plan_messages(intent: Intent, *, with_card: bool) -> list[Message]:
    milestones, perturbations = _SHAPE[intent.complexity]
    return [
        Message(role="system", content=render("plan_system.jinja", tools=IMAGE_TOOLS, with_card=with_card)),
        Message(
            role="user",
            content=render("plan.jinja", intent=intent, milestones=milestones, perturbations=perturbations),
        ),
    ]


def repair_message(problems: Sequence[Problem]) -> Message:
    kinds = {p.kind for p in problems}
    return Message(role="user", content=render("plan_repair.jinja", problems=problems, kinds=kinds))


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
    then the root part (permissions, processes), so root's changes are not undone by the agent's."""
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


def plan_from_draft(
    intent: Intent, world: WorldDraft, card: CardDraft | None, cfg: SimulateConfig, *, attempts: int, model: str
) -> Plan:
    budgets = budgets_for(intent.complexity, len(world.milestones), cfg)
    checks: list[Check] = []
    milestones: list[Milestone] = []
    for m_index, m in enumerate(world.milestones, start=1):
        ids = [f"m{m_index}c{c_index}" for c_index in range(1, len(m.checks) + 1)]
        milestones.append(Milestone(id=f"m{m_index}", ask=m.ask, checks=ids))
        checks += [
            Check(
                id=check_id,
                description=c.description,
                command=root_home(c.command),
                expect_exit=c.expect_exit,
                expect_stdout=c.expect_stdout or None,
            )
            for check_id, c in zip(ids, m.checks, strict=True)
        ]
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
    user = _user_card(intent, world, card, milestones)
    return Plan(
        id=intent.id,
        intent=intent,
        fixtures=Fixtures(
            files=list(files.values()), setup_script=setup_script(world.setup_as_agent, world.setup_as_root)
        ),
        user=user,
        perturbations=perturbations,
        checks=checks,
        budgets=budgets,
        solution=[m.solution for m in world.milestones] if cfg.verify_solution else [],
        attempts=attempts,
        model=model,
    )


def _user_card(intent: Intent, world: WorldDraft, card: CardDraft | None, milestones: list[Milestone]) -> UserCard:
    if card is not None:
        voice, facts = card.voice, card.hidden_facts
        reactions = card.model_dump(include={"on_failure", "on_question", "on_partial"})
    elif isinstance(world, PlanDraft):
        voice, facts, reactions = world.voice, world.hidden_facts, {}
    else:  # part one is validated before the card is written; the persona's style stands in meanwhile
        voice, facts, reactions = intent.persona.style, [], {}
    user = UserCard(persona=voice, goal=world.goal, milestones=milestones, hidden_facts=facts)
    return user.model_copy(update={k: v for k, v in reactions.items() if v.strip()})


# --- one intent --------------------------------------------------------------------------------------------------


class PlanRejected(IseError):
    """No draft passed validation within the allowed attempts."""


@dataclass
class Outcome:
    """What planning one intent took, for the stats."""

    attempts: int = 0
    validated: bool = False
    problem_kinds: Counter[str] = field(default_factory=Counter)
    """Per failed attempt, the kind of each problem found."""
    failures: list[list[str]] = field(default_factory=list)
    """The problems of each failed attempt, in order (for benches and debugging)."""
    validation_s: list[float] = field(default_factory=list)
    llm_s: float = 0.0
    card_fallback: bool = False
    """The world validated but the model wrote no usable user card: defaults stand in."""


class Simulator:
    """Turns one Intent into a validated Plan; safe to call from several worker threads."""

    def __init__(self, llm: LLM, cfg: SimulateConfig, sandbox_factory: SandboxFactory, *, seed: int = 0) -> None:
        self.llm = llm
        self.cfg = cfg
        self.sandbox_factory = sandbox_factory
        self.seed = seed
        self.outcomes: list[Outcome] = []
        self._lock = threading.Lock()

    def __call__(self, intent: Intent) -> Plan:
        outcome = Outcome()
        try:
            return self._plan(intent, outcome)
        finally:
            with self._lock:
                self.outcomes.append(outcome)

    def _plan(self, intent: Intent, outcome: Outcome) -> Plan:
        schema = draft_model(intent.complexity, with_card=not self.cfg.two_part)
        conversation = plan_messages(intent, with_card=not self.cfg.two_part)
        problems: list[Problem] = []
        for attempt in range(1, self.cfg.max_attempts + 1):
            if stop_requested.is_set():
                raise IseError("stopped")
            outcome.attempts = attempt
            try:
                world, reply = self._draft(conversation, schema, attempt, outcome)
            except (StructuredOutputError, LLMError) as exc:
                if isinstance(exc, LLMError) and exc.is_infra:
                    raise
                problems = [Problem("schema", str(exc))]
                outcome.problem_kinds["schema"] += 1
                outcome.failures.append([str(exc)])
                continue
            candidate = plan_from_draft(intent, world, None, self.cfg, attempts=attempt, model=self.llm.model)
            kept, problems = self._keep(candidate, outcome)
            if kept is not None:
                outcome.validated = True
                card = self._card(intent, world, attempt, outcome) if self.cfg.two_part else None
                if card is None:
                    return kept
                return kept.model_copy(update={"user": _user_card(intent, world, card, kept.user.milestones)})
            outcome.problem_kinds.update(p.kind for p in problems)
            outcome.failures.append([str(p) for p in problems])
            conversation += [Message(role="assistant", content=reply), repair_message(problems)]
        summary = "; ".join(str(p) for p in problems[:6])
        raise PlanRejected(f"no valid plan after {self.cfg.max_attempts} attempts; last problems: {summary}")

    def _keep(self, plan: Plan, outcome: Outcome) -> tuple[Plan | None, list[Problem]]:
        """`plan` as it may be kept (checks calibrated, disproved parts dropped, validated again), or None and the
        problems of the model's own plan, to show it."""
        problems = self._validate(plan, outcome)
        if not problems:
            return plan, []
        fixed, left = plan, problems
        if self.cfg.calibrate and (expected := calibration(left)):
            fixed = calibrated(fixed, expected)
            left = self._validate(fixed, outcome)
        if left and self.cfg.prune and (dropped := disproved(fixed, left)):
            fixed = without(fixed, dropped)
            left = self._validate(fixed, outcome)
        return (fixed, []) if not left else (None, problems)

    def _validate(self, plan: Plan, outcome: Outcome) -> list[Problem]:
        validation = validate(plan, self.sandbox_factory, self.cfg)
        outcome.validation_s.append(validation.seconds)
        return validation.problems

    def _draft(
        self, conversation: list[Message], model: type[WorldDraft], attempt: int, outcome: Outcome
    ) -> tuple[WorldDraft, str]:
        started = time.monotonic()
        try:
            draft, completions = chat_json(
                self.llm, conversation, model, max_attempts=self.cfg.schema_attempts, seed=self.seed + attempt
            )
        finally:
            outcome.llm_s += time.monotonic() - started
        return draft, completions[-1].message.content or ""

    def _card(self, intent: Intent, world: WorldDraft, attempt: int, outcome: Outcome) -> CardDraft | None:
        """The user card for a validated world. Without one (the model could not write it) the plan is still kept:
        the persona's style and the default reactions stand in, and the stats count it."""
        started = time.monotonic()
        try:
            card, _ = chat_json(
                self.llm,
                card_messages(intent, world),
                CardDraft,
                max_attempts=self.cfg.schema_attempts,
                seed=self.seed + attempt,
            )
        except (StructuredOutputError, LLMError) as exc:
            if isinstance(exc, LLMError) and exc.is_infra:
                raise
            outcome.card_fallback = True
            return None
        finally:
            outcome.llm_s += time.monotonic() - started
        return card


# --- the stage ---------------------------------------------------------------------------------------------------


def read_intents(path: Path) -> list[Intent]:
    """The whole input, validated before anything runs: a bad line stops the stage with nothing written."""
    intents = list(read_records(path, Intent))
    if not intents:
        raise IseError(f"{path}: no intents to plan")
    return intents


def default_sandbox_factory(config: Config) -> SandboxFactory:
    from ise.sandbox.docker import open_sandbox

    run_id = f"simulate-{uuid.uuid4().hex[:8]}"

    def factory() -> AbstractContextManager[Sandbox]:
        return open_sandbox(config.sandbox, run_id=run_id)

    return factory


def require_image(config: Config) -> None:
    """Fail before any work when the sandbox image is missing: building it is a separate, explicit step."""
    import docker.errors

    from ise.sandbox.engine import docker_client

    client = docker_client()
    try:
        client.images.get(config.sandbox.image)
    except docker.errors.ImageNotFound:
        image = config.sandbox.image
        ours = re.fullmatch(r"ise-([\w.-]+):latest", image)
        if ours is None:
            raise IseError(f"sandbox image {image} not found: build or load it first") from None
        name = "" if ours.group(1) == "workspace" else f" {ours.group(1)}"
        raise IseError(f"sandbox image {image} not found: build it with `ise sandbox build{name}`") from None
    finally:
        client.close()


def run_simulate(
    input_path: Path,
    output: Path,
    config: Config,
    *,
    workers: int | None = None,
    llm: LLM | None = None,
    sandbox_factory: SandboxFactory | None = None,
    console: Console | None = None,
) -> dict[str, Any]:
    """Plan every intent not yet in `output`; print and write `<stem>.stats.json`; return the stats."""
    console = console or Console(stderr=True)
    intents = read_intents(input_path)
    if sandbox_factory is None:
        require_image(config)
        sandbox_factory = default_sandbox_factory(config)
    own_llm = llm is None
    llm = llm or config.llm_for("simulate").build()
    simulator = Simulator(llm, config.simulate, sandbox_factory, seed=config.seed)
    try:
        run = run_stage(
            intents,
            simulator,
            output,
            workers=workers or config.workers,
            description="simulate",
            console=console,
        )
    finally:
        if own_llm:
            llm.close()
    stats = simulate_stats(output, run, simulator.outcomes)
    stats_path(output).write_text(json.dumps(stats, indent=2) + "\n", encoding="utf-8")
    console.print(stats_table(stats))
    return stats


def stats_path(output: Path) -> Path:
    return output.with_name(output.name.removesuffix(".jsonl") + ".stats.json")


def simulate_stats(output: Path, run: RunStats, outcomes: Sequence[Outcome]) -> dict[str, Any]:
    """Plan shapes over the whole output (resumed runs included); attempts and timings for this run."""
    plans = list(read_records(output, Plan)) if output.exists() else []
    kept = {plan.id for plan in plans}
    errors = errors_path(output)
    rejected = {r["id"] for r in read_dicts(errors)} - kept if errors.exists() else set()
    validation_s = [s for o in outcomes for s in o.validation_s]
    attempts = sum(o.attempts for o in outcomes)
    return {
        "run": run.as_dict(),
        "plans": len(plans),
        "rejected": len(rejected),
        "validation_pass_rate": _ratio(len(plans), len(plans) + len(rejected)),
        "plan_attempts": _spread([p.attempts for p in plans]),
        "repair_attempts": sum(p.attempts - 1 for p in plans),
        "first_try_rate": _ratio(sum(p.attempts == 1 for p in plans), len(plans)),
        "fixtures_per_plan": _spread([len(p.fixtures.files) + len(p.fixtures.dirs) for p in plans]),
        "checks_per_plan": _spread([len(p.checks) for p in plans]),
        "perturbations_per_plan": _spread([len(p.perturbations) for p in plans]),
        "pruned_plans": sum(bool(p.pruned) for p in plans),
        "calibrated_plans": sum(bool(p.calibrated) for p in plans),
        "this_run": {
            "intents": len(outcomes),
            "attempts": attempts,
            "attempt_pass_rate": _ratio(sum(o.validated for o in outcomes), attempts),
            "card_fallbacks": sum(o.card_fallback for o in outcomes),
            "problems": dict(sum((o.problem_kinds for o in outcomes), Counter()).most_common()),
            "validation_s": _spread(validation_s),
            "llm_s": _spread([o.llm_s for o in outcomes]),
        },
    }


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 3) if whole else None


def _spread(values: Sequence[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {
        "mean": round(statistics.fmean(values), 3),
        "median": round(statistics.median(values), 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
    }


def stats_table(stats: dict[str, Any]) -> Table:
    table = Table(title="simulate", show_header=False)
    this_run = stats["this_run"]
    rows = [
        ("plans kept", stats["plans"]),
        ("rejected", stats["rejected"]),
        ("validation pass rate", stats["validation_pass_rate"]),
        ("first-try rate", stats["first_try_rate"]),
        ("repair attempts", stats["repair_attempts"]),
        ("attempts per plan", _brief(stats["plan_attempts"])),
        ("fixtures per plan", _brief(stats["fixtures_per_plan"])),
        ("checks per plan", _brief(stats["checks_per_plan"])),
        ("perturbations per plan", _brief(stats["perturbations_per_plan"])),
        ("plans with disproved parts dropped", stats["pruned_plans"]),
        ("plans with calibrated checks", stats["calibrated_plans"]),
        ("this run: attempt pass rate", this_run["attempt_pass_rate"]),
        ("this run: problems", ", ".join(f"{k} {v}" for k, v in this_run["problems"].items()) or "-"),
        ("this run: default user cards", this_run["card_fallbacks"]),
        ("this run: validation s", _brief(this_run["validation_s"])),
        ("this run: LLM s per intent", _brief(this_run["llm_s"])),
    ]
    for name, value in rows:
        table.add_row(name, "-" if value is None else str(value))
    return table


def _brief(spread: dict[str, float] | None) -> str | None:
    if spread is None:
        return None
    return f"mean {spread['mean']:g} (median {spread['median']:g}, {spread['min']:g}-{spread['max']:g})"
