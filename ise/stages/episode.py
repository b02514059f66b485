"""One episode of stage 3: a plan run live in a fresh sandbox, returned as a Trace (the stage around it is
ise/stages/execute.py).

Per plan: a fresh hardened sandbox with the plan's fixtures, then turns of (user simulator speaks -> agent works
with real tools until it answers -> the current milestone's checks are probed). Perturbations fire when the plan
says. The episode ends on the user's verdict or a budget; the plan's checks then decide the outcome. Single-turn
(ise eval's default): the task's request is the only user message, there is no simulator, and the episode ends
when the agent answers it.

Failures are sorted by whose they are. The agent's mistakes are data in the trace. A broken sandbox or endpoint
ends the episode as `infra_error`; a plan whose own fixtures or setup fail, as `setup_error`. Ctrl-C abandons the
episode (Interrupted): nothing is returned.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal

from ise.agent import Agent, AgentContext, ToolBox
from ise.checks import answer_for, run_check
from ise.config import Config, ExecuteConfig
from ise.llm.base import LLM, LLMError
from ise.meter import EpisodeEnded, Meter
from ise.prompts import render
from ise.provenance import attempt_id, config_hash, ise_version, trajectory_seed
from ise.records import (
    Budgets,
    Check,
    CheckProbe,
    CheckResult,
    ErrorEvent,
    Message,
    Perturbation,
    PerturbationEvent,
    Plan,
    Profile,
    Step,
    TerminationReason,
    ToolSpec,
    Trace,
    UserSimReport,
)
from ise.recovery import flatten
from ise.runner import stop_requested
from ise.sandbox.base import Sandbox, SandboxError, SandboxInfo, SetupScriptFailed
from ise.sandbox.provider import SandboxFactory
from ise.scope import watched_roots
from ise.stages.delegation import DELEGATE_TOOL, offered_tools
from ise.stages.trace_build import build_trace
from ise.usersim import MilestoneView, UserSimulator, execution_digest


@dataclass
class ExecuteEnv:
    """Everything episodes share within one run of the stage."""

    config: Config
    agent_llm: LLM
    user_llm: LLM
    sandbox_factory: SandboxFactory
    config_hash: str = ""
    version: str = ""
    single_turn: bool = False
    """The request is the only user message (ise eval); no user simulator."""
    stop_at_success: bool = False
    """This run's attempts at a plan stop at its first verified success (recorded in each trace's env)."""

    def __post_init__(self) -> None:
        self.config_hash = self.config_hash or config_hash(self.config)
        self.version = self.version or ise_version()


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
    attempt: int = 0
    tools: list[ToolSpec] = field(default_factory=list)
    """The top-level agent's tools, as offered (delegate only where execute.delegate_for says)."""
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


def execute_plan(plan: Plan, env: ExecuteEnv, *, attempt: int = 0) -> Trace:
    """Run one episode (attempt `attempt` at the plan, which picks its seed and id) and return its trace; raises
    only Interrupted (Ctrl-C) or a bug."""
    cfg = env.config.execute
    budgets = cfg.capped(plan.budgets)
    meter = Meter(wall_clock_s=budgets.wall_clock_s, max_tokens=budgets.max_tokens, stop=stop_requested)
    seed = trajectory_seed(env.config.seed, attempt_id(plan.id, attempt))
    episode = Episode(plan=plan, env=env, budgets=budgets, seed=seed, meter=meter, attempt=attempt)
    episode.profile = env.config.sandbox.resolve(plan.profile)
    episode.tools = offered_tools(plan.intent.complexity, cfg)
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
        (_answer_once if env.single_turn else _converse)(episode, ctx)
    except EpisodeEnded as ended:
        episode.termination = ended.reason
    started = time.monotonic()
    episode.final_checks = [episode.run_check(c, episode.final_answer_for(c)) for c in episode.plan.checks]
    episode.checks_s = time.monotonic() - started


def _converse(episode: Episode, ctx: AgentContext) -> None:
    plan, budgets = episode.plan, episode.budgets
    agent = _top_level_agent(episode, ctx)
    user = UserSimulator(
        episode.env.user_llm, episode.meter, plan, regenerations=episode.cfg.user_regenerations, seed=episode.seed
    )
    view = MilestoneView(current=0, asked=set())
    turn_start = 0
    # One more simulator call than user turns: after the last answer the user may still give a verdict.
    for turn in range(1, budgets.max_user_turns + 2):
        ctx.turn = turn
        digest = execution_digest(
            list(flatten(episode.steps))[turn_start:], episode.probes, episode.plan.checks, turn=turn
        )
        said = user.next_turn(episode.messages, digest, view, turn=turn, max_turns=budgets.max_user_turns)
        episode.user.drift_detected += len(said.rejected)
        episode.user.drift_reasons += said.rejected
        episode.user.fallbacks += said.fallback
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


def _answer_once(episode: Episode, ctx: AgentContext) -> None:
    """Single-turn: the request is the only user message; every check is compared with the agent's answer."""
    plan = episode.plan
    agent = _top_level_agent(episode, ctx)
    ctx.turn = 1
    episode.messages.append(Message(role="user", content=plan.intent.request))
    episode.user.turns = 1
    episode.milestone_of_turn[1] = [c.id for c in plan.checks]
    episode.fire_at_turn(1)
    answer = agent.run_turn(episode.messages, episode.steps)
    if answer is None:
        raise EpisodeEnded(TerminationReason.MAX_STEPS, "the agent used every step without answering")
    episode.last_answer = answer
    episode.answers = {m.id: answer for m in plan.user.milestones}
    raise EpisodeEnded(TerminationReason.AGENT_ANSWERED)


def _top_level_agent(episode: Episode, ctx: AgentContext) -> Agent:
    """The agent the user talks to, with its system prompt: the prompt names delegate only when it is offered
    (a model told of a tool it lacks calls it anyway)."""
    delegate = any(t.name == DELEGATE_TOOL for t in episode.tools)
    prompt = render("agent_system.jinja", subagent=False, admin=episode.profile == "admin", delegate=delegate)
    episode.messages.append(Message(role="system", content=prompt))
    return Agent(ctx, tools=episode.tools, max_steps=episode.budgets.max_agent_steps_per_turn)


def _mark_infra(episode: Episode, kind: str, message: str) -> None:
    setup = kind == "setup"
    episode.termination = TerminationReason.SETUP_ERROR if setup else TerminationReason.INFRA_ERROR
    turn = episode.ctx.turn if episode.ctx else 0
    role = "sandbox" if kind in ("sandbox", "setup") else episode.meter.last_role
    episode.infra_error = ErrorEvent(kind=kind, message=_clip(message, 2000), turn=turn, role=role)


def _clip(text: str, limit: int = 4000) -> str:
    return text if len(text) <= limit else text[:limit] + f"... [{len(text) - limit} more chars]"
