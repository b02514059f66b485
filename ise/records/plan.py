"""What stages 1 and 2 write: intents (a realised matrix cell) and plans (the world, the user card, the checks)."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag, ValidationInfo, field_validator, model_validator

from ise.completeness import cut_off_reason
from ise.records.base import Record

# --- fixtures: the state seeded before the agent starts ---------------------------------------------------------


class FileFixture(Record):
    path: str
    """Absolute, or relative to /workspace."""
    content: str = ""
    encoding: Literal["text", "base64"] = "text"
    mode: str = "0644"
    owner: Literal["agent", "root"] = "agent"


class DirFixture(Record):
    path: str
    mode: str = "0755"
    owner: Literal["agent", "root"] = "agent"


class Fixtures(Record):
    files: list[FileFixture] = Field(default_factory=list)
    dirs: list[DirFixture] = Field(default_factory=list)
    setup_script: str | None = None
    """Shell run as root after files and dirs are in place; must exit 0."""


# --- stage 1: intents -----------------------------------------------------------------------------------------

Complexity = Literal["simple", "medium", "complex"]

Profile = Literal["user", "admin"]
"""The sandbox a plan needs. user: the agent is an unprivileged user, the root filesystem read-only. admin: the
agent is root in the container, the root filesystem writable (the container's own layer), the capabilities system
work needs; network, limits and no-new-privileges stay (see ise/sandbox/config.py)."""


class Persona(Record):
    role: str
    industry: str
    experience: str
    style: str
    """Communication style, e.g. terse, chatty, anxious."""


class IntentDraft(Record):
    """What the LLM writes for one matrix cell."""

    # Bounds reach the model as minLength/maxLength/minItems/maxItems under constrained decoding: no empty drafts,
    # and a small model that rambles is cut off instead of running to max_tokens.
    request: str = Field(
        min_length=30,
        max_length=1000,
        description="The user's first-person request in the persona's voice, with concrete names, numbers, paths.",
    )
    deliverable: str = Field(
        min_length=10, max_length=400, description="What exactly must exist or be true when the work is done."
    )
    workspace: list[Annotated[str, Field(max_length=200)]] = Field(
        min_length=1,
        max_length=6,
        description="What the workspace is assumed to already contain (files, repos, services), one item each.",
    )

    @field_validator("request", "deliverable")
    @classmethod
    def _whole(cls, text: str, info: ValidationInfo) -> str:
        # a cut-off draft goes back to the model with this reason (ise/llm/structured.chat_json), then to the errors
        if reason := cut_off_reason(text, sentence=info.field_name == "request"):
            raise ValueError(f"cut off: {reason}. Write it whole")
        return text


class Intent(Record):
    """One realised cell of the persona x domain x task/tool x complexity matrix."""

    id: str
    """Derived from the sampled tuple and seed: reruns are deterministic and resumable."""
    persona: Persona
    domain: str
    tasks: list[str]
    """Task template ids combined in this intent (more for higher complexity)."""
    tools: list[str]
    """Command-line tools the tasks exercise."""
    complexity: Complexity
    expected_turns: int
    request: str
    deliverable: str
    workspace: list[str]
    missing: list[str] = Field(default_factory=list)
    """Requirements of the sampled tasks the request does not mention (flagged, not fatal)."""
    model: str = ""
    seed: int = 0


# --- stage 2: simulation plans --------------------------------------------------------------------------------


class Milestone(Record):
    id: str
    ask: str
    """What the simulated user asks for at this step, in their own words."""
    checks: list[str] = Field(default_factory=list)
    """Ids of the checks that prove this milestone."""


class HiddenFact(Record):
    fact: str
    reveal_when: str
    """When the user may reveal it, e.g. 'asked which port the service uses'."""


class UserCard(Record):
    """Everything the user simulator knows; the agent never sees it."""

    persona: str
    """Voice and manner of speaking."""
    goal: str
    """The hidden overall goal; never revealed up front."""
    milestones: list[Milestone]
    hidden_facts: list[HiddenFact] = Field(default_factory=list)
    on_failure: str = "Point out what went wrong, briefly, and ask the agent to fix it."
    on_question: str = "Answer from hidden facts when relevant; otherwise say you don't know."
    on_partial: str = "Acknowledge what works and ask for the rest."


class Perturbation(Record):
    """A mid-task fault, run as root in the sandbox when its trigger fires."""

    id: str
    description: str
    script: str
    at_user_turn: int | None = None
    """Fire right after this user turn (1-based) is sent."""
    when: str | None = None
    """Or: fire after the first agent step at which this shell condition exits 0."""


class ShellCheck(Record):
    """A shell command, run as root against the final state, that proves part of the outcome."""

    kind: Literal["shell"] = "shell"
    id: str
    description: str
    command: str
    expect_exit: int = 0
    expect_stdout: str | None = None
    """If set, stdout must contain this text."""


AnswerMatch = Literal["exact", "contains", "regex", "number", "one_of", "script"]


class AnswerCheck(Record):
    """The agent's answer, compared with an expected value after normalisation (ise/checks.py documents it).

    Which answer: the agent's last answer while the check's milestone was the current one (the answer of the turn
    that completed it); for a check no milestone names, the episode's final answer. The expected value is
    `expected` (`options` for one_of), or what `command` prints: it runs as root at check time with the answer on
    stdin and in $ISE_ANSWER, must exit 0, and its stripped stdout is the expected value (for one_of, one
    accepted answer per line), so the truth can be computed from the final state."""

    kind: Literal["answer"]
    id: str
    description: str
    match: AnswerMatch = "exact"
    expected: str | None = None
    """exact, contains: the text; regex: the pattern (searched); number: the value."""
    options: list[str] = Field(default_factory=list)
    """one_of: the accepted answers."""
    tolerance: float = Field(default=0.0, ge=0)
    """number: the largest accepted absolute difference."""
    case_sensitive: bool = False
    command: str | None = None
    verify: str | None = None
    """script: a shell script, run as root, that accepts the answer ($ISE_ANSWER) given the expected value
    ($ISE_EXPECTED) by exiting 0 (how suites with their own comparators, e.g. AgentBench-OS, score answers)."""

    @field_validator("command", "verify")
    @classmethod
    def _command_not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("command is empty")
        return value

    @model_validator(mode="after")
    def _expectation(self) -> AnswerCheck:
        given = self.expected is not None or bool(self.options)
        if self.command is not None and given:
            raise ValueError(f"answer check {self.id}: give `expected`/`options` or `command`, not both")
        if (self.match == "script") != (self.verify is not None):
            raise ValueError(f"answer check {self.id}: `verify` goes with match script, and only with it")
        if self.command is None:
            _static_expectation_problem(self)
        return self


def _static_expectation_problem(check: AnswerCheck) -> None:
    """Raises ValueError when a literal expectation cannot work (checked when the plan is read)."""
    if check.match == "one_of":
        if not check.options or any(not o.strip() for o in check.options):
            raise ValueError(f"answer check {check.id}: one_of needs non-empty `options`")
        return
    if check.options:
        raise ValueError(f"answer check {check.id}: `options` is only for one_of")
    if check.expected is None or not check.expected.strip():
        raise ValueError(f"answer check {check.id}: `expected` is missing or empty")
    if check.match == "regex":
        try:
            re.compile(check.expected)
        except re.error as exc:
            raise ValueError(f"answer check {check.id}: invalid regex {check.expected!r}: {exc}") from None
    if check.match == "number":
        try:
            float(check.expected.replace(",", ""))
        except ValueError:
            raise ValueError(f"answer check {check.id}: expected {check.expected!r} is not a number") from None


class RewardCheck(Record):
    """A verifier in Harbor's manner: after the episode a folder of test files is copied into a fresh root-owned
    `root` (whatever the agent left there removed first), `command` runs as root from `workdir`, and the reward it
    writes under `reward_dir` (reward.txt: a number; reward.json: see ise/checks.py) decides: pass when the reward
    is at least `threshold`."""

    kind: Literal["reward"]
    id: str
    description: str
    files: list[FileFixture] = Field(min_length=1)
    """The tests folder; paths relative to `root`."""
    root: str = "/tests"
    command: str = "bash /tests/test.sh"
    workdir: str = "/workspace"
    reward_dir: str = "/logs/verifier"
    threshold: float = 1.0
    timeout_s: float | None = Field(default=None, gt=0)
    """The verifier's own time limit (Harbor's [verifier] timeout_sec); else execute.check_timeout_s."""


def _check_kind(value: Any) -> str:
    """Plans written before check kinds existed have no `kind`: they are shell checks."""
    if isinstance(value, dict):
        return str(value.get("kind", "shell"))
    return str(getattr(value, "kind", "shell"))


Check = Annotated[
    Annotated[ShellCheck, Tag("shell")] | Annotated[AnswerCheck, Tag("answer")] | Annotated[RewardCheck, Tag("reward")],
    Discriminator(_check_kind),
]
"""A success check, discriminated on `kind` (shell when absent)."""


class Budgets(Record):
    max_user_turns: int
    max_agent_steps_per_turn: int
    command_timeout_s: float
    wall_clock_s: float
    max_tokens: int


class Origin(Record):
    """Where an imported task came from (ise/tasks): its suite, its own id there and its category."""

    suite: str
    """e.g. harbor, agentbench-os:dev, seeds."""
    task_id: str
    category: str = ""
    path: str = ""
    """The file or folder it was read from."""


class Plan(Record):
    id: str
    """The intent's id."""
    intent: Intent
    fixtures: Fixtures
    user: UserCard
    perturbations: list[Perturbation] = Field(default_factory=list)
    checks: list[Check]
    budgets: Budgets
    solution: list[str] = Field(default_factory=list)
    """Reference shell per milestone, run in order as the agent, that the dry run saw turn every check green.
    What a milestone's script prints on stdout is its reference answer (for answer checks). For audit,
    re-validation and oracle replay only: never shown to the agent or the user simulator."""
    profile: Profile = "user"
    """The sandbox the plan needs (the config may force one: sandbox.profile)."""
    watch: list[str] = Field(default_factory=list)
    """Absolute paths outside the workspace and the agent's home whose changes every step records (the roots the
    plan seeds are watched anyway)."""
    attempts: int = 1
    """LLM attempts it took to produce a plan that passed validation."""
    model: str = ""
    pruned: list[str] = Field(default_factory=list)
    """Ids of the checks and perturbations the model wrote but the dry run disproved, dropped by validation."""
    calibrated: list[str] = Field(default_factory=list)
    """Ids of the checks whose expected output is what the solved run printed, not what the model guessed."""
    proven: bool = True
    """Every check failed on the initial state and passed after the reference solution, each in a fresh sandbox.
    False only when simulate.verify_solution was off: export leaves such plans' traces out by default."""
    origin: Origin | None = None
    """Set for tasks imported from a suite (ise/tasks); None for plans ise wrote."""
