"""Records that flow between stages. Every record forbids unknown fields so drift is caught at the boundary."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Record(BaseModel):
    """Base of every persisted record: unknown keys are errors, not silently dropped."""

    model_config = ConfigDict(extra="forbid")


# --- chat format shared by the LLM layer and traces (OpenAI chat shape) ---------------------------------------


class ToolSpec(Record):
    """A tool the model may call; `parameters` is a JSON schema object."""

    name: str
    description: str
    parameters: dict[str, Any]


class ToolCall(Record):
    id: str
    name: str
    arguments: dict[str, Any]


class Message(Record):
    role: Literal["system", "user", "assistant", "tool"]
    content: str | None = None
    tool_calls: list[ToolCall] = Field(default_factory=list)
    tool_call_id: str | None = None
    name: str | None = None


class Usage(Record):
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
        )


ToolMode = Literal["native", "constrained", "parsed", "text"]
"""How a completion was produced: native tool_calls, constrained json_schema decoding, tolerant parsing of
free text, or plain text with no tool call."""


class Completion(Record):
    """One LLM answer with its provenance, so traces can say how every call was made and what it cost."""

    message: Message
    usage: Usage = Field(default_factory=Usage)
    mode: ToolMode = "text"
    model: str = ""
    latency_s: float = 0.0


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


class Persona(Record):
    role: str
    industry: str
    experience: str
    style: str
    """Communication style, e.g. terse, chatty, anxious."""


class IntentDraft(Record):
    """What the LLM writes for one matrix cell."""

    request: str = Field(
        description="The user's first-person request in the persona's voice, with concrete names, numbers, paths."
    )
    deliverable: str = Field(description="What exactly must exist or be true when the work is done.")
    workspace: list[str] = Field(
        description="What the workspace is assumed to already contain (files, repos, services), one item each."
    )


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


class Check(Record):
    """A shell command, run as root against the final workspace, that proves part of the outcome."""

    id: str
    description: str
    command: str
    expect_exit: int = 0
    expect_stdout: str | None = None
    """If set, stdout must contain this text."""


class Budgets(Record):
    max_user_turns: int
    max_agent_steps_per_turn: int
    command_timeout_s: float
    wall_clock_s: float
    max_tokens: int


class Plan(Record):
    id: str
    """The intent's id."""
    intent: Intent
    fixtures: Fixtures
    user: UserCard
    perturbations: list[Perturbation] = Field(default_factory=list)
    checks: list[Check]
    budgets: Budgets
    attempts: int = 1
    """LLM attempts it took to produce a plan that passed validation."""
    model: str = ""
