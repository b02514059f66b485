"""What stage 3 writes: one Trace per executed trajectory (read the comment below before changing anything)."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import Field

from ise.records.base import Record
from ise.records.chat import Message, ToolMode, ToolSpec
from ise.records.plan import Budgets, Complexity, Persona, Profile

# --- stage 3: execution traces ----------------------------------------------------------------------------------
# One Trace per plan, one JSONL line each, written by `ise execute`. This is the contract the export stage reads:
# fields are only ever added (with defaults), never renamed or repurposed, and TRACE_SCHEMA_VERSION goes up when
# anything changes.
#
# Reading a trace:
# - `messages` + `tools` are the SFT example as is (OpenAI chat shape; tool-call arguments are dicts here, JSON
#   strings on the wire). Every tool call has exactly one tool message, right after its assistant message. The
#   user simulator's closing verdict is not in `messages` (see `user.final_message`), so a finished episode ends
#   on the agent's answer; an episode cut by a budget may end on tool results.
# - `steps[i]` is what really ran for one tool call (join on tool_call_id; `message_index` points at the assistant
#   message). Delegated work nests: a delegate step holds its sub-agent's steps and its own conversation.
# - Outcome: `outcome.passed` (all checks passed at the end) is the ground truth; `termination` says why it
#   ended; `user.verdict` is the simulator's opinion, kept apart. Traces with termination infra_error broke for
#   reasons outside the agent (sandbox, endpoint): they have no checks and belong in no training set.
# - `failures` link what went wrong to what overcame it (see ise/recovery.py); `recoveries` counts the linked ones.

TRACE_SCHEMA_VERSION = 2
"""2: check kinds (CheckResult.kind, answer, expected), termination setup_error, TraceEnv.plan_sha256 and profile.
A version-1 trace reads as version 2 as it is (every added field has a default)."""


class TerminationReason(StrEnum):
    """Why an episode ended. infra_error (the run broke) and setup_error (the plan's own world could not be built)
    are nobody's outcome; the rest are the agent's."""

    USER_DONE = "user_done"
    """The user simulator declared the task done."""
    USER_GAVE_UP = "user_gave_up"
    MAX_TURNS = "max_turns"
    """The user-turn budget ran out without a verdict."""
    MAX_STEPS = "max_steps"
    """The agent used every tool step of a turn without answering."""
    WALL_CLOCK = "wall_clock"
    TOKEN_BUDGET = "token_budget"
    MODEL_ERROR = "model_error"
    """The agent's output could not be parsed, again and again (bounded retries)."""
    AGENT_ANSWERED = "agent_answered"
    """Single-turn (ise eval): the agent answered the task's only message."""
    ROLE_DRIFT = "role_drift"
    """The user simulator kept slipping into the assistant's role and no fallback message was left."""
    INFRA_ERROR = "infra_error"
    """The sandbox or an LLM endpoint failed: not the agent's fault; excluded from training by default."""
    SETUP_ERROR = "setup_error"
    """The plan's fixtures or setup script failed: the plan's fault. Excluded from training, not retried on a rerun
    unless the plan or the image changed (or `execute.retry_setup_errors`)."""


class TraceIntent(Record):
    """What the trajectory was about, for filtering and stats without reopening the plans."""

    domain: str
    complexity: Complexity
    persona: Persona
    tasks: list[str]
    tools: list[str]
    request: str
    expected_turns: int


class WorkspaceChange(Record):
    """One path a step created, modified or deleted (same fields as the sandbox's FileChange)."""

    path: str
    change: Literal["created", "modified", "deleted"]
    size: int | None = None
    mode: str | None = None
    sha256: str | None = None
    kind: Literal["file", "dir", "symlink", "other"] | None = None


StepStatus = Literal["ok", "failed", "error"]
"""ok: the tool did what was asked; failed: it ran but failed (non-zero exit, timeout, delegate that did not
finish); error: the call was refused before running (unknown tool, bad arguments, file tool error): a model error."""


class Step(Record):
    """One tool call and what really happened when it ran."""

    index: int
    """Position in execution order across the whole trace, sub-agent steps included (a delegate step is numbered
    before its own sub-steps)."""
    turn: int
    """The user turn (1-based) during which it ran."""
    message_index: int
    """Index of the assistant message that made the call: in Trace.messages for top-level steps, in the parent's
    sub_messages for sub-agent steps."""
    tool_call_id: str
    tool: str
    arguments: dict[str, Any]
    status: StepStatus
    result: str
    """Exactly what the model was shown as the tool message."""
    stdout: str = ""
    stderr: str = ""
    exit_code: int | None = None
    """Shell exit code (bash); None for tools that are not commands."""
    duration_s: float = 0.0
    """Sandbox time of this step (for delegate: its sub-agent's whole run, LLM calls included)."""
    timed_out: bool = False
    truncated: bool = False
    output_bytes: int = 0
    cwd: str | None = None
    """Working directory of the persistent shell after the step."""
    session_reset: bool = False
    """The persistent shell had to be restarted (e.g. a command that could not be stopped): cwd and variables
    were reset, and the model was told so."""
    error: str | None = None
    """Why the call was refused (status "error"), as shown to the model."""
    changes: list[WorkspaceChange] = Field(default_factory=list)
    """Workspace diff of this step alone (watched roots: workspace and agent home)."""
    perturbations: list[str] = Field(default_factory=list)
    """Ids of perturbations that fired right after this step."""
    llm_mode: ToolMode = "native"
    """How the completion that made this call was produced."""
    llm_latency_s: float = 0.0
    """Latency of that completion (shared by calls made in the same message)."""
    sub_steps: list[Step] = Field(default_factory=list)
    """delegate only: the sub-agent's steps."""
    sub_messages: list[Message] = Field(default_factory=list)
    """delegate only: the sub-agent's own conversation (system, task, its calls and results, its answer)."""


class PerturbationEvent(Record):
    id: str
    trigger: Literal["user_turn", "condition"]
    turn: int
    after_step: int | None
    """Index of the last step before it fired (None if none had run yet)."""
    message_index: int
    """How many messages the conversation had when it fired: it happened between messages[i-1] and messages[i]."""
    exit_code: int
    output: str = ""


class CheckResult(Record):
    id: str
    passed: bool
    exit_code: int
    """The command's exit code (0 for an answer check without a command)."""
    stdout: str = ""
    stderr: str = ""
    duration_s: float = 0.0
    timed_out: bool = False
    kind: Literal["shell", "answer", "reward"] = "shell"
    answer: str | None = None
    """answer checks: the agent's answer that was compared (as given, before normalisation)."""
    expected: str | None = None
    """answer checks: the expected value used (the literal, or what the check's command printed)."""
    reason: str | None = None
    """Why it failed, in a few words, when that is not plain from the exit code (answer checks)."""
    reward: float | None = None
    """reward checks: the reward the verifier wrote (None when it wrote none that could be read)."""


class CheckProbe(Record):
    """A milestone's checks run mid-episode (as root, after an agent answer) to tell the user simulator the truth."""

    turn: int
    milestone: str
    after_step: int | None
    results: list[CheckResult]


class Failure(Record):
    """A failed step or failed check probe, linked to what later overcame it (heuristic: ise/recovery.py)."""

    kind: Literal["step", "probe"]
    step: int | None
    """The failed step; for a probe, the last step before it."""
    check: str | None = None
    """The failed check (probe failures)."""
    recovered_by: int | None = None
    """The step that overcame it; None when never recovered."""
    evidence: Literal["same_target", "tool_fixed", "check_passed"] | None = None
    """same_target: a later step on the same command family or path succeeded; tool_fixed: after a refused call,
    the next call of that tool succeeded; check_passed: a related check passed later."""


class ErrorEvent(Record):
    kind: str
    """Model errors: malformed, empty, unknown_tool, bad_arguments, file_tool. Infra: setup (the plan's fixtures
    could not be seeded), sandbox (it broke), or the LLMError kind (rate_limit, server, connection, timeout, auth)."""
    message: str
    turn: int
    step: int | None = None
    role: Literal["agent", "user", "sandbox"] = "agent"


class UserSimReport(Record):
    """The user simulator's side: its own verdict (kept apart from the checks) and how well it stayed in role."""

    verdict: Literal["done", "give_up"] | None = None
    final_message: str | None = None
    """What it said with its verdict (not part of messages, which end on the agent's answer)."""
    turns: int = 0
    milestones_reached: int = 0
    drift_detected: int = 0
    """User drafts rejected by the role guard and regenerated."""
    drift_reasons: list[str] = Field(default_factory=list)
    fallbacks: int = 0
    """Turns where every draft drifted and the milestone's scripted ask was sent instead."""


class Outcome(Record):
    passed: bool
    """True iff every check of the plan passed at the end."""
    checks: list[CheckResult]
    agent_claimed_success: bool
    """The agent's last answer reads as a claim of success (heuristic on its wording)."""
    unverified_claim: bool
    """The agent (or the user simulator) said it was done, but the checks failed."""


class ModelUsage(Record):
    role: Literal["agent", "user"]
    model: str
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0


class Timing(Record):
    wall_s: float
    llm_s: float
    """Time spent waiting for LLM calls (agent, sub-agents, user simulator)."""
    sandbox_s: float
    """Time spent in the sandbox: setup, tools, probes, perturbations, checks."""
    setup_s: float = 0.0
    """Sandbox start and fixture seeding (part of sandbox_s)."""
    checks_s: float = 0.0
    """The final checks (part of sandbox_s)."""


class TraceEnv(Record):
    """Where and how it ran, so a trace can be reproduced or grouped by configuration."""

    image_id: str
    """Content-addressed id of the image the sandbox ran."""
    image: str = ""
    """The image's name (tag)."""
    backend: str = ""
    sandbox: dict[str, Any]
    """The effective sandbox settings (SandboxConfig: hardening and limits)."""
    budgets: Budgets
    """The budgets in force (the plan's, capped by the execute config)."""
    config_hash: str
    seed: int
    """Seed sent with every LLM call of this trajectory (derived from the config seed and the plan id)."""
    ise_version: str
    plan_sha256: str = ""
    """Hash of the plan it ran: a setup_error is retried only once the plan (or the image) changed."""
    profile: Profile = "user"
    """The sandbox profile it ran under."""
    plan_proven: bool = True
    """Its plan was proven (Plan.proven): export leaves traces of unproven plans out unless asked."""
    attempt: int = 0
    """Which attempt at its plan this trajectory is (0-based; see execute.attempts and ise eval --attempts)."""
    stop_at_success: bool = False
    """Its plan's attempts stop at the first verified success (execute.stop_at_success with attempts > 1), so how
    many attempts a plan has depends on their outcomes (ise/yields.py reads pass rates accordingly)."""


class Trace(Record):
    """One executed trajectory: the conversation, what every tool call really did, and how it ended."""

    schema_version: int = TRACE_SCHEMA_VERSION
    id: str
    """The plan's id (= the intent's id) for a plan's first attempt, `<plan>.a<i>` for attempt i (env.attempt)."""
    intent: TraceIntent
    messages: list[Message]
    """The agent's conversation in OpenAI chat shape: system, user, assistant (with tool_calls), tool."""
    tools: list[ToolSpec]
    """The tools the agent was offered."""
    steps: list[Step]
    events: list[PerturbationEvent] = Field(default_factory=list)
    probes: list[CheckProbe] = Field(default_factory=list)
    failures: list[Failure] = Field(default_factory=list)
    recoveries: int = 0
    """How many failures were overcome (failures with recovered_by set)."""
    outcome: Outcome
    termination: TerminationReason
    turns: int
    """User turns sent to the agent."""
    user: UserSimReport
    model_errors: list[ErrorEvent] = Field(default_factory=list)
    infra_error: ErrorEvent | None = None
    """What broke the episode: the sandbox or an endpoint (termination infra_error), or the plan's own fixtures or
    setup script (kind `setup`, termination setup_error)."""
    tags: list[str] = Field(default_factory=list)
    """infra_error, unverified_claim, role_drift, perturbed, recovered, delegated, timed_out, ..."""
    usage: list[ModelUsage] = Field(default_factory=list)
    timing: Timing
    env: TraceEnv

    @property
    def plan_id(self) -> str:
        """The id of the plan this trajectory ran (attempts at one plan share it)."""
        return self.id.removesuffix(f".a{self.env.attempt}") if self.env.attempt else self.id

    @property
    def errored(self) -> bool:
        """The agent was not measured: the run broke (infra_error) or the plan's world could not be built
        (setup_error). Such traces have no checks and belong in no training set or pass rate."""
        return self.infra_error is not None or self.termination in _UNMEASURED

    @property
    def verdict(self) -> Verdict:
        """The one label of a trace's outcome, shared by execute, report, viewer, export and eval."""
        if self.termination == TerminationReason.SETUP_ERROR:
            return "setup_error"
        if self.errored:
            return "infra_error"
        return "passed" if self.outcome.passed else "failed"


Verdict = Literal["passed", "failed", "infra_error", "setup_error"]
_UNMEASURED = frozenset({TerminationReason.INFRA_ERROR, TerminationReason.SETUP_ERROR})
