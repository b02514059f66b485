"""Stage 2: an LLM drafts an executable plan for each intent; the plan is dry-run in a real sandbox before it is kept.

The model writes a compact draft (ise/stages/plan_drafts.py: the schema, the prompts, and the Plan it becomes once
ids, budgets, the profile and absolute paths are filled in). With `two_part`, it first drafts the world (files,
setup, milestones with shell checks or an answer check, perturbations) and, once
that validates, the user card (voice, hidden facts, reactions): two short answers are easier for a small model
than one long one, and no tokens are spent on a card for a world that fails. A draft that fails validation goes
back to the model with the exact problems, up to `max_attempts` times; then the intent lands in the errors file.
"""

from __future__ import annotations

import json
import statistics
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from ise.config import Config, SimulateConfig
from ise.errors import IseError
from ise.jsonl import read_dicts, read_records
from ise.llm.base import LLM, LLMError
from ise.llm.structured import StructuredOutputError, chat_json
from ise.outputs import write_text_atomic
from ise.plan_static import Problem
from ise.plan_validation import calibrated, calibration, disproved, validate, without
from ise.prompts import render
from ise.records import Intent, Message, Plan
from ise.runner import RunStats, errors_path, preflight, run_stage, stop_requested
from ise.sandbox.provider import SandboxFactory, open_provider
from ise.seeds import load_seeds
from ise.stages.plan_drafts import (
    CardDraft,
    PlanDraft,
    WorldDraft,
    budgets_for,
    card_messages,
    draft_model,
    plan_from_draft,
    plan_messages,
    repair_message,
    user_card,
)

__all__ = [  # the draft side lives in ise/stages/plan_drafts.py; these of its names stay importable from here
    "CardDraft",
    "Outcome",
    "PlanDraft",
    "PlanRejected",
    "Simulator",
    "WorldDraft",
    "budgets_for",
    "card_messages",
    "draft_model",
    "plan_from_draft",
    "plan_messages",
    "read_intents",
    "render",
    "repair_message",
    "run_simulate",
    "simulate_stats",
    "stats_path",
    "stats_table",
    "user_card",
    "with_seeds",
]

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
        conversation = plan_messages(intent, with_card=not self.cfg.two_part, cfg=self.cfg)
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
                return kept.model_copy(update={"user": user_card(intent, world, card, kept.user.milestones)})
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
    intents = list(read_records(path, Intent, unique_ids=True))
    if not intents:
        raise IseError(f"{path}: no intents to plan")
    return intents


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
    preflight(output, inputs=[input_path], sidecars=[stats_path(output)])
    intents = read_intents(input_path)
    with ExitStack() as cleanup:
        if sandbox_factory is None:
            run_id = f"simulate-{uuid.uuid4().hex[:8]}"
            sandbox_factory = cleanup.enter_context(open_provider(config.sandbox, run_id=run_id))
        return _simulate(intents, output, config, workers, llm, sandbox_factory, console)


def _simulate(
    intents: list[Intent],
    output: Path,
    config: Config,
    workers: int | None,
    llm: LLM | None,
    sandbox_factory: SandboxFactory,
    console: Console,
) -> dict[str, Any]:
    own_llm = llm is None
    llm = llm or config.llm_for("simulate").build()
    simulator = Simulator(llm, config.simulate, sandbox_factory, seed=config.seed)
    try:
        intents, plan_one = with_seeds(intents, simulator)
        run = run_stage(
            intents,
            plan_one,
            output,
            workers=workers or config.workers,
            description="simulate",
            console=console,
        )
    finally:
        if own_llm:
            llm.close()
    stats = simulate_stats(output, run, simulator.outcomes)
    write_text_atomic(stats_path(output), json.dumps(stats, indent=2) + "\n")
    console.print(stats_table(stats))
    return stats


def with_seeds(intents: list[Intent], simulator: Simulator) -> tuple[list[Intent], Callable[[Intent], Plan]]:
    """The stage's input plus the seeds of `simulate.seeds` (ise/seeds), and the function that plans one record: a
    seed is not drafted but proven again in this run's sandbox, kept as written or rejected like a model's plan.
    Seeds go through the same runner as intents, so they are resumed and written exactly once by id."""
    given = {intent.id for intent in intents}
    seeds = (
        {plan.id: plan for plan in load_seeds(simulator.cfg.seeds) if plan.id not in given}
        if simulator.cfg.seeds
        else {}
    )

    def plan_one(intent: Intent) -> Plan:
        seed = seeds.get(intent.id)
        if seed is None:
            return simulator(intent)
        validation = validate(seed, simulator.sandbox_factory, simulator.cfg)
        if not validation.ok:
            summary = "; ".join(str(p) for p in validation.problems[:6])
            raise PlanRejected(f"seed {seed.id} did not prove in this run's sandbox: {summary}")
        return seed

    return [*intents, *(seed.intent for seed in seeds.values())], plan_one


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
