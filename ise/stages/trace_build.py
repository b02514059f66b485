"""An episode's Trace, built from its final state (ise/stages/episode.py runs the episode): outcome, tags,
failures and recoveries, usage, timing and provenance."""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING

from ise.provenance import attempt_id, plan_hash
from ise.records import Outcome, TerminationReason, Timing, Trace, TraceEnv, TraceIntent
from ise.recovery import flatten, label_failures
from ise.stages.delegation import WHOLE_DELEGATION, delegated_whole_request

if TYPE_CHECKING:
    from ise.stages.episode import Episode

_CLAIM = re.compile(
    r"\b(done|completed?|finished|fixed|created|updated|set up|all set|successfully|now works|is working|in place)\b",
    re.I,
)
_HEDGE = re.compile(
    r"\b(could not|couldn't|can't|cannot|unable|failed to|did not|didn't|not able|unfortunately)\b", re.I
)


def claims_success(answer: str | None) -> bool:
    """Does the agent's last answer read as "it's done"? Wording only: the checks say whether it is true."""
    if not answer or answer.rstrip().endswith("?"):
        return False
    return bool(_CLAIM.search(answer)) and not _HEDGE.search(answer)


def build_trace(episode: Episode) -> Trace:
    plan, env = episode.plan, episode.env
    infra = episode.infra_error is not None
    checks = [] if infra else episode.final_checks
    passed = bool(checks) and all(c.passed for c in checks)
    claimed = claims_success(episode.last_answer)
    unverified = not infra and not passed and (claimed or episode.user.verdict == "done")
    failures = label_failures(episode.steps, episode.probes, checks, episode.milestone_of_turn)
    ctx = episode.ctx
    model_errors = ctx.model_errors if ctx else []
    steps = list(flatten(episode.steps))
    recoveries = sum(f.recovered_by is not None for f in failures)
    tags = [
        tag
        for tag, present in [
            ("infra_error", episode.termination == TerminationReason.INFRA_ERROR),
            ("setup_error", episode.termination == TerminationReason.SETUP_ERROR),
            ("checks_passed", passed),
            ("checks_failed", not infra and not passed),
            ("unverified_claim", unverified),
            ("role_drift", episode.user.drift_detected > 0),
            ("perturbed", bool(episode.events)),
            ("recovered", recoveries > 0),
            ("delegated", any(s.tool == "delegate" for s in steps)),
            (WHOLE_DELEGATION, delegated_whole_request(episode.steps)),
            ("timed_out", any(s.timed_out for s in steps)),
            ("model_error", bool(model_errors)),
        ]
        if present
    ]
    meter, info = episode.meter, episode.info
    return Trace(
        id=attempt_id(plan.id, episode.attempt),
        intent=TraceIntent(
            domain=plan.intent.domain,
            complexity=plan.intent.complexity,
            persona=plan.intent.persona,
            tasks=plan.intent.tasks,
            tools=plan.intent.tools,
            request=plan.intent.request,
            expected_turns=plan.intent.expected_turns,
        ),
        messages=episode.messages,
        tools=episode.tools,
        steps=episode.steps,
        events=episode.events,
        probes=episode.probes,
        failures=failures,
        recoveries=recoveries,
        outcome=Outcome(passed=passed, checks=checks, agent_claimed_success=claimed, unverified_claim=unverified),
        termination=episode.termination,
        turns=episode.user.turns,
        user=episode.user,
        model_errors=model_errors,
        infra_error=episode.infra_error,
        tags=tags,
        usage=[u.model_copy(update={"latency_s": round(u.latency_s, 4)}) for u in meter.usage.values()],
        timing=Timing(
            wall_s=round(time.monotonic() - meter.started, 4),
            llm_s=round(meter.llm_s, 4),
            sandbox_s=round(meter.sandbox_s, 4),
            setup_s=round(episode.setup_s, 4),
            checks_s=round(episode.checks_s, 4),
        ),
        env=TraceEnv(
            image_id=info.image_id if info else "",
            image=info.image if info else env.config.sandbox.image,
            backend=info.backend if info else "",
            sandbox=info.settings if info else env.config.sandbox.model_dump(mode="json"),
            budgets=episode.budgets,
            config_hash=env.config_hash,
            seed=episode.seed,
            ise_version=env.version,
            plan_sha256=plan_hash(plan),
            profile=episode.profile,
            plan_proven=plan.proven,
            attempt=episode.attempt,
            stop_at_success=env.stop_at_success,
        ),
    )


def _clip(text: str, limit: int = 4000) -> str:
    return text if len(text) <= limit else text[:limit] + f"... [{len(text) - limit} more chars]"
