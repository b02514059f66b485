"""Stage 3: run each plan as a live episode and record a Trace.

Per plan: a fresh hardened sandbox with the plan's fixtures, then turns of (user simulator speaks -> agent works
with real tools until it answers -> the current milestone's checks are probed). Perturbations fire when the plan
says. The episode ends on the user's verdict or a budget; the plan's checks then decide the outcome.

Failures are sorted by whose they are. The agent's mistakes are data in the trace. A broken sandbox or endpoint
ends the episode as `infra_error` (the trace is kept, tagged, and rerun on the next start by default). Ctrl-C
abandons the episode: nothing is written, and the rerun starts it from scratch.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from types import FrameType
from typing import Literal

from rich.console import Console

from ise.agent import (
    Agent,
    AgentContext,
    EpisodeEnded,
    Meter,
    ToolBox,
    agent_tools,
)
from ise.checks import answer_for, describe, run_check
from ise.config import Config, ExecuteConfig
from ise.errors import IseError
from ise.jsonl import read_records, repair_tail
from ise.llm.base import LLM, LLMError
from ise.prompts import render
from ise.records import (
    Budgets,
    Check,
    CheckProbe,
    CheckResult,
    ErrorEvent,
    Message,
    Outcome,
    Perturbation,
    PerturbationEvent,
    Plan,
    Profile,
    Step,
    TerminationReason,
    Timing,
    Trace,
    TraceEnv,
    TraceIntent,
    UserSimReport,
)
from ise.recovery import flatten, label_failures
from ise.runner import RunStats, StageAborted, preflight, run_stage, stop_requested
from ise.sandbox.base import Sandbox, SandboxError, SandboxInfo, SetupScriptFailed
from ise.sandbox.provider import SandboxFactory, open_provider
from ise.scope import watched_roots
from ise.usersim import MilestoneView, UserSimulator

_CLAIM = re.compile(
    r"\b(done|completed?|finished|fixed|created|updated|set up|all set|successfully|now works|is working|in place)\b",
    re.I,
)
_HEDGE = re.compile(
    r"\b(could not|couldn't|can't|cannot|unable|failed to|did not|didn't|not able|unfortunately)\b", re.I
)


@dataclass
class ExecuteEnv:
    """Everything episodes share within one run of the stage."""

    config: Config
    agent_llm: LLM
    user_llm: LLM
    sandbox_factory: SandboxFactory
    config_hash: str = ""
    version: str = ""

    def __post_init__(self) -> None:
        self.config_hash = self.config_hash or config_hash(self.config)
        self.version = self.version or ise_version()


def config_hash(config: Config) -> str:
    return hashlib.sha256(config.model_dump_json().encode()).hexdigest()[:16]


def ise_version() -> str:
    try:
        return metadata.version("ise")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def trajectory_seed(seed: int, plan_id: str) -> int:
    """Stable per plan and config seed, so a rerun of one trajectory asks the models the same way."""
    digest = int(hashlib.sha256(f"{seed}:{plan_id}".encode()).hexdigest()[:8], 16)
    return digest % (2**31 - 1)


def effective_budgets(plan: Budgets, caps: ExecuteConfig) -> Budgets:
    def capped(value: float, cap: float | None) -> float:
        return value if cap is None else min(value, cap)

    return Budgets(
        max_user_turns=int(capped(plan.max_user_turns, caps.max_user_turns)),
        max_agent_steps_per_turn=int(capped(plan.max_agent_steps_per_turn, caps.max_agent_steps_per_turn)),
        command_timeout_s=capped(plan.command_timeout_s, caps.command_timeout_s),
        wall_clock_s=capped(plan.wall_clock_s, caps.wall_clock_s),
        max_tokens=int(capped(plan.max_tokens, caps.max_tokens)),
    )


def claims_success(answer: str | None) -> bool:
    """Does the agent's last answer read as "it's done"? Wording only: the checks say whether it is true."""
    if not answer or answer.rstrip().endswith("?"):
        return False
    return bool(_CLAIM.search(answer)) and not _HEDGE.search(answer)


# --- one episode -----------------------------------------------------------------------------------------------


@dataclass
class Episode:
    """The mutable state of one trajectory while it runs."""

    plan: Plan
    env: ExecuteEnv
    budgets: Budgets
    seed: int
    meter: Meter
    messages: list[Message] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    events: list[PerturbationEvent] = field(default_factory=list)
    probes: list[CheckProbe] = field(default_factory=list)
    fired: set[str] = field(default_factory=set)
    user: UserSimReport = field(default_factory=UserSimReport)
    milestone_of_turn: dict[int, list[str]] = field(default_factory=dict)
    termination: TerminationReason = TerminationReason.MAX_TURNS
    infra_error: ErrorEvent | None = None
    info: SandboxInfo | None = None
    setup_s: float = 0.0
    checks_s: float = 0.0
    final_checks: list[CheckResult] = field(default_factory=list)
    last_answer: str | None = None
    answers: dict[str, str] = field(default_factory=dict)
    """Milestone id -> the agent's last answer while that milestone was current."""
    profile: Profile = "user"
    sandbox: Sandbox | None = None
    ctx: AgentContext | None = None

    @property
    def cfg(self) -> ExecuteConfig:
        return self.env.config.execute

    def last_step(self) -> int | None:
        """Index of the latest step started (sub-agent steps included), None before the first."""
        count = self.ctx.step_count if self.ctx else 0
        return count - 1 if count else None

    # -- sandbox helpers (all as root, all counted as sandbox time) --

    def root(self, command: str) -> tuple[int, str, str, float, bool]:
        assert self.sandbox is not None
        sandbox = self.sandbox
        result = self.meter.timed(lambda: sandbox.exec(command, timeout_s=self.cfg.check_timeout_s, user="root"))
        return result.exit_code, result.stdout, result.stderr, result.duration_s, result.timed_out

    def run_check(self, check: Check, answer: str) -> CheckResult:
        assert self.sandbox is not None
        sandbox, timeout = self.sandbox, self.cfg.check_timeout_s
        result: CheckResult = self.meter.timed(lambda: run_check(check, sandbox, answer=answer, timeout_s=timeout))
        return result

    def final_answer_for(self, check: Check) -> str:
        return answer_for(check.id, self.plan.user.milestones, self.answers, self.last_answer or "")

    # -- perturbations --

    def fire(self, perturbation: Perturbation, trigger: Literal["user_turn", "condition"], turn: int) -> None:
        exit_code, stdout, stderr, _, _ = self.root(perturbation.script)
        self.fired.add(perturbation.id)
        self.events.append(
            PerturbationEvent(
                id=perturbation.id,
                trigger=trigger,
                turn=turn,
                after_step=self.last_step(),
                message_index=len(self.messages),
                exit_code=exit_code,
                output=_clip(stdout + stderr, 2000),
            )
        )
        assert self.ctx is not None
        self.ctx.toolbox.refresh_snapshot()  # root's changes are not the agent's next step's

    def fire_at_turn(self, turn: int) -> None:
        for p in self.plan.perturbations:
            if p.at_user_turn == turn and p.id not in self.fired:
                self.fire(p, "user_turn", turn)

    def on_step(self, step: Step) -> None:
        """After every agent step: fire perturbations whose condition now holds."""
        for p in self.plan.perturbations:
            if p.when is None or p.id in self.fired:
                continue
            exit_code, *_ = self.root(p.when)
            if exit_code == 0:
                self.fire(p, "condition", step.turn)
                step.perturbations.append(p.id)

    # -- milestones --

    def probe(self, turn: int, view: MilestoneView, answer: str) -> None:
        """Run the current milestone's checks (answer checks against this turn's answer); advance when they all
        pass (or it has none)."""
        milestones = self.plan.user.milestones
        if view.current >= len(milestones):
            return
        milestone = milestones[view.current]
        self.answers[milestone.id] = answer
        checks = {c.id: c for c in self.plan.checks}
        wanted = [checks[c] for c in milestone.checks if c in checks]
        if wanted and self.cfg.probe_checks:
            results = [self.run_check(c, answer) for c in wanted]
            self.probes.append(
                CheckProbe(turn=turn, milestone=milestone.id, after_step=self.last_step(), results=results)
            )
            if not all(r.passed for r in results):
                return
        view.current += 1
        self.user.milestones_reached = view.current


def execute_plan(plan: Plan, env: ExecuteEnv) -> Trace:
    """Run one episode and return its trace; raises only Interrupted (Ctrl-C) or a bug."""
    cfg = env.config.execute
    budgets = effective_budgets(plan.budgets, cfg)
    meter = Meter(wall_clock_s=budgets.wall_clock_s, max_tokens=budgets.max_tokens, stop=stop_requested)
    episode = Episode(plan=plan, env=env, budgets=budgets, seed=trajectory_seed(env.config.seed, plan.id), meter=meter)
    episode.profile = env.config.sandbox.resolve(plan.profile)
    try:
        with env.sandbox_factory(episode.profile) as sandbox:
            episode.setup_s = time.monotonic() - meter.started  # container start (or pool hand-out)
            meter.sandbox_s += episode.setup_s
            _run(episode, sandbox)
    except SetupScriptFailed as exc:
        _mark_infra(episode, "setup", str(exc))
    except SandboxError as exc:
        _mark_infra(episode, "sandbox", str(exc))
    except LLMError as exc:  # only infra kinds get this far; the model's own errors are handled as data
        _mark_infra(episode, exc.kind, str(exc))
    return build_trace(episode)


def _run(episode: Episode, sandbox: Sandbox) -> None:
    episode.sandbox = sandbox
    episode.info = sandbox.info
    started = time.monotonic()
    episode.meter.timed(lambda: sandbox.seed(episode.plan.fixtures))  # SetupScriptFailed: the plan's fault
    episode.setup_s += time.monotonic() - started
    env, meter = episode.env, episode.meter
    toolbox = ToolBox(
        sandbox,
        meter,
        command_timeout_s=episode.budgets.command_timeout_s,
        output_limit=env.config.sandbox.output_limit_bytes,
        watch_roots=watched_roots(
            episode.plan, episode.profile, env.config.sandbox.for_profile(episode.profile).watch_roots
        ),
    )
    toolbox.refresh_snapshot()
    ctx = AgentContext(
        llm=env.agent_llm,
        toolbox=toolbox,
        meter=meter,
        seed=episode.seed,
        malformed_retries=episode.cfg.malformed_retries,
        max_delegate_steps=episode.cfg.max_delegate_steps,
        on_step=episode.on_step,
        admin=episode.profile == "admin",
    )
    episode.ctx = ctx
    try:
        _converse(episode, ctx)
    except EpisodeEnded as ended:
        episode.termination = ended.reason
    started = time.monotonic()
    episode.final_checks = [episode.run_check(c, episode.final_answer_for(c)) for c in episode.plan.checks]
    episode.checks_s = time.monotonic() - started


def _converse(episode: Episode, ctx: AgentContext) -> None:
    plan, budgets = episode.plan, episode.budgets
    admin = episode.profile == "admin"
    episode.messages.append(Message(role="system", content=render("agent_system.jinja", subagent=False, admin=admin)))
    agent = Agent(ctx, tools=agent_tools(delegate=True), max_steps=budgets.max_agent_steps_per_turn)
    user = UserSimulator(
        episode.env.user_llm, episode.meter, plan, regenerations=episode.cfg.user_regenerations, seed=episode.seed
    )
    view = MilestoneView(current=0, asked=set())
    turn_start = 0
    # One more simulator call than user turns: after the last answer the user may still give a verdict.
    for turn in range(1, budgets.max_user_turns + 2):
        ctx.turn = turn
        digest = execution_digest(episode, since=turn_start, turn=turn)
        said = user.next_turn(episode.messages, digest, view, turn=turn, max_turns=budgets.max_user_turns)
        episode.user.drift_detected += len(said.rejected)
        episode.user.drift_reasons += said.rejected
        episode.user.fallbacks += said.fallback
        if said.text is None:
            raise EpisodeEnded(TerminationReason.ROLE_DRIFT, "the user simulator could not stay in role")
        if said.verdict is not None:
            episode.user.verdict = said.verdict
            episode.user.final_message = said.text
            done = said.verdict == "done"
            raise EpisodeEnded(TerminationReason.USER_DONE if done else TerminationReason.USER_GAVE_UP)
        if turn > budgets.max_user_turns:
            return  # the budget ends it: termination stays max_turns
        episode.messages.append(Message(role="user", content=said.text))
        episode.user.turns = turn
        view.asked.add(view.current)
        milestones = plan.user.milestones
        episode.milestone_of_turn[turn] = milestones[view.current].checks if view.current < len(milestones) else []
        episode.fire_at_turn(turn)
        turn_start = len(list(flatten(episode.steps)))
        answer = agent.run_turn(episode.messages, episode.steps)
        if answer is None:
            raise EpisodeEnded(TerminationReason.MAX_STEPS, "the agent used every step of the turn")
        episode.last_answer = answer
        episode.probe(turn, view, answer)


def execution_digest(episode: Episode, *, since: int, turn: int) -> str:
    """What really ran in the agent's last turn, for the user simulator: calls, exit codes, files, checks."""
    steps = list(flatten(episode.steps))[since:]
    lines = []
    if steps:
        lines.append(f"Tool calls the agent made ({len(steps)}):")
        lines += [f"- {_describe_step(s)}" for s in steps]
    else:
        lines.append("The agent ran no commands and changed no files.")
    changed = [f"{c.change} {c.path}" for s in steps for c in s.changes]
    if changed:
        lines.append("Files changed: " + ", ".join(changed[:20]) + (" ..." if len(changed) > 20 else ""))
    if episode.probes and episode.probes[-1].turn == turn - 1:
        described = {c.id: describe(c) for c in episode.plan.checks}
        lines.append("Checked on your machine afterwards:")
        lines += [
            f"- {'ok' if r.passed else 'NOT OK'}: {described.get(r.id, r.id)}" for r in episode.probes[-1].results
        ]
    return "\n".join(lines)


def _describe_step(step: Step) -> str:
    args = step.arguments
    what = (
        f"bash `{_clip(str(args.get('command', '')), 160)}`"
        if step.tool == "bash"
        else f"{step.tool} {args.get('path') or _clip(str(args.get('task', '')), 120)}"
    )
    if step.status == "error":
        return f"{what} -> refused: {_clip(step.error or '', 160)}"
    if step.timed_out:
        return f"{what} -> timed out"
    if step.exit_code is not None:
        tail = (
            f" ({_clip(step.stderr.strip().splitlines()[-1], 120)})" if step.exit_code and step.stderr.strip() else ""
        )
        return f"{what} -> exit {step.exit_code}{tail}"
    if step.tool == "delegate":
        return f"{what} -> {step.status} after {len(step.sub_steps)} sub-steps"
    return f"{what} -> {step.status}"


def _mark_infra(episode: Episode, kind: str, message: str) -> None:
    setup = kind == "setup"
    episode.termination = TerminationReason.SETUP_ERROR if setup else TerminationReason.INFRA_ERROR
    turn = episode.ctx.turn if episode.ctx else 0
    role = "sandbox" if kind in ("sandbox", "setup") else episode.meter.last_role
    episode.infra_error = ErrorEvent(kind=kind, message=_clip(message, 2000), turn=turn, role=role)


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
            ("timed_out", any(s.timed_out for s in steps)),
            ("model_error", bool(model_errors)),
        ]
        if present
    ]
    meter, info = episode.meter, episode.info
    return Trace(
        id=plan.id,
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
        tools=agent_tools(delegate=True),
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
        ),
    )


def _clip(text: str, limit: int = 4000) -> str:
    return text if len(text) <= limit else text[:limit] + f"... [{len(text) - limit} more chars]"


# --- the stage -------------------------------------------------------------------------------------------------


def read_plans(path: Path) -> list[Plan]:
    """The whole input, validated before anything runs: a bad line stops the stage with nothing written."""
    plans = list(read_records(path, Plan, unique_ids=True))
    if not plans:
        raise IseError(f"{path}: no plans to execute")
    return plans


def plan_hash(plan: Plan) -> str:
    return hashlib.sha256(plan.model_dump_json().encode()).hexdigest()[:16]


def drop_rerunnable(
    output: Path, plans: list[Plan], *, infra_errors: bool, setup_errors: bool, image_id: str | None
) -> tuple[int, int]:
    """Remove the traces this run must redo: infra_errors (when asked to), and a setup_error when asked to, when its
    plan changed since, or when it ran on another image. The file is replaced atomically. How many of each."""
    if not output.exists():
        return 0, 0
    repair_tail(output)
    hashes = {plan.id: plan_hash(plan) for plan in plans}
    kept: list[str] = []
    infra = setup = 0
    with output.open(encoding="utf-8") as handle:
        for line in handle:
            verdict = _error_verdict(line)
            if verdict == "infra_error" and infra_errors:
                infra += 1
            elif verdict == "setup_error" and (setup_errors or _changed_since(line, hashes, image_id)):
                setup += 1
            else:
                kept.append(line)
    if infra or setup:
        tmp = output.with_name(output.name + ".tmp")
        with tmp.open("w", encoding="utf-8") as out:
            out.writelines(kept)
            out.flush()
            os.fsync(out.fileno())
        tmp.replace(output)
    return infra, setup


def _error_verdict(line: str) -> str | None:
    """infra_error or setup_error for such a trace line, else None (cheap: most lines are neither)."""
    if '"infra_error"' not in line and '"setup_error"' not in line:
        return None
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return None
    termination = record.get("termination") if isinstance(record, dict) else None
    return termination if termination in ("infra_error", "setup_error") else None


def _changed_since(line: str, hashes: dict[str, str], image_id: str | None) -> bool:
    record = json.loads(line)
    env = record.get("env") or {}
    plan_changed = hashes.get(record.get("id", "")) not in (None, env.get("plan_sha256"))
    return plan_changed or (image_id is not None and env.get("image_id") != image_id)


def trace_label(trace: Trace) -> str:
    """The progress and stats label: passed, failed_checks, infra_error or setup_error."""
    verdict = trace.verdict
    return "failed_checks" if verdict == "failed" else verdict


class _InfraWatch:
    """Progress label that also stops the stage when infra failures come in a row (engine or endpoint down):
    those traces would only be rerun anyway. A setup_error is the plan's own fault and says nothing about the
    infrastructure: it neither counts nor breaks a run."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_a_row = 0

    def __call__(self, trace: Trace) -> str:
        label = trace_label(trace)
        if label != "setup_error":
            self.in_a_row = self.in_a_row + 1 if label == "infra_error" else 0
        if self.in_a_row >= self.limit:
            cause = trace.infra_error.message if trace.infra_error else "unknown"
            raise StageAborted(
                f"{self.in_a_row} trajectories in a row hit infrastructure errors, so the stage stopped "
                f"(execute.max_consecutive_infra_errors); last: {cause}. Traces written so far are kept: "
                "rerun the same command to resume (infra errors are retried)."
            )
        return label


@contextmanager
def open_sandboxes(config: Config) -> Iterator[SandboxFactory]:
    """Fresh sandboxes for one run, labelled with its run id (the provider owns images, pools and clean-up)."""
    with open_provider(config.sandbox, run_id=f"execute-{uuid.uuid4().hex[:8]}") as factory:
        yield factory


def build_llms(config: Config) -> tuple[LLM, LLM]:
    """One client per distinct backend: agent and user share it when configured alike (one embedded server)."""
    agent_cfg, user_cfg = config.llm_for("agent"), config.llm_for("user")
    agent = agent_cfg.build()
    user = agent if user_cfg == agent_cfg else user_cfg.build()
    return agent, user


def run_execute(
    input_path: Path,
    output: Path,
    config: Config,
    *,
    workers: int | None = None,
    llms: tuple[LLM, LLM] | None = None,
    sandbox_factory: SandboxFactory | None = None,
    console: Console | None = None,
) -> RunStats:
    """Run every plan not yet traced in `output`; returns the runner's stats (labels: passed, failed_checks,
    infra_error)."""
    console = console or Console(stderr=True)
    preflight(output, inputs=[input_path])
    plans = read_plans(input_path)
    with ExitStack() as cleanup:
        cleanup.enter_context(_sigterm_as_interrupt())
        if sandbox_factory is None:
            sandbox_factory = cleanup.enter_context(open_sandboxes(config))
        _drop_for_rerun(output, plans, config.execute, getattr(sandbox_factory, "image_id", None), console)
        agent_llm, user_llm = llms or build_llms(config)
        if llms is None:
            cleanup.callback(agent_llm.close)
            if user_llm is not agent_llm:
                cleanup.callback(user_llm.close)
        env = ExecuteEnv(config=config, agent_llm=agent_llm, user_llm=user_llm, sandbox_factory=sandbox_factory)
        stats = run_stage(
            plans,
            lambda plan: execute_plan(plan, env),
            output,
            workers=workers or config.workers,
            description="execute",
            label=_InfraWatch(config.execute.max_consecutive_infra_errors),
            console=console,
        )
    console.print(_summary(stats))
    return stats


def _drop_for_rerun(
    output: Path, plans: list[Plan], cfg: ExecuteConfig, image_id: str | None, console: Console
) -> None:
    infra, setup = drop_rerunnable(
        output, plans, infra_errors=cfg.retry_infra_errors, setup_errors=cfg.retry_setup_errors, image_id=image_id
    )
    if infra:
        console.print(f"rerunning {infra} trajectories that hit infrastructure errors last time")
    if setup:
        console.print(f"rerunning {setup} trajectories whose plan setup failed last time (plan or image changed)")


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """`kill` stops the stage the way Ctrl-C does: episodes abandoned, their containers removed, nothing half
    written. (Without this, SIGTERM ends the process on the spot and only the next run's reaper cleans up.)"""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _summary(stats: RunStats) -> str:
    labels = ", ".join(f"{name} {count}" for name, count in sorted(stats.labels.items())) or "none new"
    return (
        f"execute: {stats.ok} traces ({labels}), {stats.errors} errors, {stats.skipped} already done, "
        f"{stats.elapsed_s:.1f}s"
    )
