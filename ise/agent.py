"""The agent side of an episode: its tools (JSON-schema specs), their execution in the sandbox, and the loop that
lets the agent work through one user turn.

What the model does wrong is data: an unknown tool, bad arguments or a refused file operation come back to it as a
tool message and are recorded; a reply that cannot be parsed is re-asked (bounded). What the infrastructure does
wrong (SandboxError, an infra LLMError) is not caught here: it ends the episode one level up.

The episode's clocks and budgets, and the exceptions that end it early, are ise/meter.py's.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ise.llm.base import LLM, LLMError
from ise.meter import EpisodeEnded, Meter
from ise.prompts import render
from ise.records import (
    Completion,
    ErrorEvent,
    Message,
    Step,
    StepStatus,
    TerminationReason,
    ToolCall,
    ToolSpec,
    WorkspaceChange,
)
from ise.sandbox.base import ExecResult, FileEntry, FileToolError, Sandbox, diff_snapshots

# --- tools -----------------------------------------------------------------------------------------------------


def _spec(name: str, description: str, **properties: tuple[str, str]) -> ToolSpec:
    """A tool whose arguments are all required strings: simple for small models, exact for validation."""
    return ToolSpec(
        name=name,
        description=description,
        parameters={
            "type": "object",
            "properties": {key: {"type": kind, "description": text} for key, (kind, text) in properties.items()},
            "required": list(properties),
            "additionalProperties": False,
        },
    )


BASH = _spec(
    "bash",
    "Run a command in a persistent, non-interactive bash session in the workspace; the working directory and "
    "environment carry over between calls. Returns stdout, stderr and the exit code.",
    command=("string", "The shell command to run."),
)
READ_FILE = _spec(
    "read_file", "Read a text file.", path=("string", "File path, absolute or relative to the workspace.")
)
WRITE_FILE = _spec(
    "write_file",
    "Create or overwrite a text file with the given content (parent directories are created).",
    path=("string", "File path, absolute or relative to the workspace."),
    content=("string", "The complete new content of the file."),
)
EDIT_FILE = _spec(
    "edit_file",
    "Replace one exact occurrence of `old` with `new` in a file; fails if `old` occurs zero or several times.",
    path=("string", "File path, absolute or relative to the workspace."),
    old=("string", "The exact text to replace, including whitespace."),
    new=("string", "The replacement text."),
)
LIST_DIR = _spec("list_dir", "List a directory's entries with kind, size and mode.", path=("string", "Directory path."))
DELEGATE = _spec(
    "delegate",
    "Hand a narrower, self-contained subtask to a sub-agent that works in the same workspace with its own "
    "context and the same tools (except delegate). Returns its final report.",
    task=("string", "The subtask, stated completely: the sub-agent sees nothing else of this conversation."),
)


WRITING_TOOLS = frozenset({"bash", "write_file", "edit_file"})
"""Tools that may change the workspace: only their steps pay for a snapshot (delegate's sub-steps carry theirs)."""


def agent_tools(*, delegate: bool) -> list[ToolSpec]:
    tools = [BASH, READ_FILE, WRITE_FILE, EDIT_FILE, LIST_DIR]
    return [*tools, DELEGATE] if delegate else tools


def argument_problem(spec: ToolSpec, arguments: dict[str, Any]) -> str | None:
    """Why these arguments do not fit the tool's schema, or None. Kept to the subset our specs use."""
    properties: dict[str, Any] = spec.parameters.get("properties", {})
    missing = [key for key in spec.parameters.get("required", []) if key not in arguments]
    if missing:
        return f"missing required argument(s): {', '.join(missing)}"
    unknown = [key for key in arguments if key not in properties]
    if unknown:
        return f"unknown argument(s): {', '.join(unknown)}; expected: {', '.join(properties)}"
    for key, value in arguments.items():
        if properties[key].get("type") == "string" and not isinstance(value, str):
            return f"argument {key!r} must be a string, got {type(value).__name__}"
    return None


# --- running one tool call -------------------------------------------------------------------------------------


@dataclass
class ToolOutcome:
    status: StepStatus
    result: str
    """The tool message shown to the model."""
    exec: ExecResult | None = None
    error: str | None = None


class ToolBox:
    """Executes file and shell tools in the sandbox as the agent user and turns outcomes into tool messages."""

    def __init__(
        self,
        sandbox: Sandbox,
        meter: Meter,
        *,
        command_timeout_s: float,
        output_limit: int,
        watch_roots: Sequence[str] | None = None,
    ) -> None:
        self.sandbox = sandbox
        self.meter = meter
        self.command_timeout_s = command_timeout_s
        self.output_limit = output_limit
        self.watch_roots = watch_roots
        """Roots whose changes each step records (None: the sandbox's own watch roots)."""
        self._snapshot: dict[str, FileEntry] | None = None

    def refresh_snapshot(self) -> None:
        """Re-read the watched state, so changes made by root (perturbations) are not blamed on the next step."""
        self._snapshot = self.meter.timed(lambda: self.sandbox.snapshot(self.watch_roots))

    def changes_since_last(self) -> list[WorkspaceChange]:
        before = self._snapshot
        self.refresh_snapshot()
        assert self._snapshot is not None
        if before is None:
            return []
        return [WorkspaceChange.model_validate(c.model_dump()) for c in diff_snapshots(before, self._snapshot)]

    def run(self, call: ToolCall, spec: ToolSpec) -> ToolOutcome:
        if problem := argument_problem(spec, call.arguments):
            return _refused(f"bad arguments for {call.name}: {problem}")
        args = call.arguments
        if call.name == "bash":
            return self._bash(args["command"])
        try:
            return self._file_tool(call.name, args)
        except FileToolError as exc:
            return _refused(f"{call.name} failed: {exc}")

    def _bash(self, command: str) -> ToolOutcome:
        result: ExecResult = self.meter.timed(lambda: self.sandbox.run(command, timeout_s=self.command_timeout_s))
        status: StepStatus = "ok" if result.exit_code == 0 and not result.timed_out else "failed"
        return ToolOutcome(status=status, result=format_exec(result, self.command_timeout_s), exec=result)

    def _file_tool(self, name: str, args: dict[str, str]) -> ToolOutcome:
        sandbox = self.sandbox
        if name == "read_file":
            text: str = self.meter.timed(lambda: sandbox.read_file(args["path"]))
            return ToolOutcome(status="ok", result=self._clip(text))
        if name == "write_file":
            self.meter.timed(lambda: sandbox.write_file(args["path"], args["content"]))
            size = len(args["content"].encode())
            return ToolOutcome(status="ok", result=f"wrote {size} bytes to {args['path']}")
        if name == "edit_file":
            self.meter.timed(lambda: sandbox.edit_file(args["path"], args["old"], args["new"]))
            return ToolOutcome(status="ok", result=f"edited {args['path']}: replaced 1 occurrence")
        if name == "list_dir":
            entries: list[FileEntry] = self.meter.timed(lambda: sandbox.list_dir(args["path"]))
            lines = [f"{e.kind:<7} {e.mode} {e.size:>9} {e.path}" for e in entries]
            return ToolOutcome(status="ok", result=self._clip("\n".join(lines) or "(empty directory)"))
        raise AssertionError(f"no handler for tool {name}")  # specs and handlers are defined together

    def _clip(self, text: str) -> str:
        data = text.encode()
        if len(data) <= self.output_limit:
            return text
        kept = data[: self.output_limit].decode(errors="ignore")
        return f"{kept}\n[truncated: showing {self.output_limit} of {len(data)} bytes]"


REPEAT_NOTE = "\n[note: same call and same result as your previous step]"
"""Appended to a result that repeats the previous step exactly: small models otherwise loop on one call."""


def repeats_previous(previous: Step, step: Step) -> bool:
    same_call = (previous.tool, previous.arguments) == (step.tool, step.arguments)
    return same_call and previous.result.removesuffix(REPEAT_NOTE) == step.result


def _exec_fields(result: ExecResult | None, *, elapsed: float) -> dict[str, Any]:
    """The command's record for a Step; for tools that are not commands, just how long the step took."""
    if result is None:
        return {"duration_s": round(elapsed, 4)}
    return {
        "stdout": result.stdout,
        "stderr": result.stderr,
        "exit_code": result.exit_code,
        "duration_s": round(result.duration_s, 4),
        "timed_out": result.timed_out,
        "truncated": result.truncated,
        "output_bytes": result.output_bytes,
        "cwd": result.cwd,
        "session_reset": result.session_reset,
    }


def _refused(message: str) -> ToolOutcome:
    return ToolOutcome(status="error", result=f"error: {message}", error=message)


def format_exec(result: ExecResult, timeout_s: float) -> str:
    parts = [result.stdout.rstrip("\n")] if result.stdout else []
    if result.stderr:
        parts.append("stderr:\n" + result.stderr.rstrip("\n"))
    if result.truncated:
        parts.append(f"[output truncated: {result.output_bytes} bytes in all]")
    if result.timed_out:
        parts.append(f"[timed out after {timeout_s:g}s; the command was killed]")
    if result.session_reset:
        parts.append("[the shell session was restarted: working directory and variables are reset]")
    parts.append(f"[exit code {result.exit_code}]")
    return "\n".join(parts)


# --- the agent loop --------------------------------------------------------------------------------------------


@dataclass
class AgentContext:
    """What every agent (top-level or delegated) of one episode shares."""

    llm: LLM
    toolbox: ToolBox
    meter: Meter
    seed: int
    malformed_retries: int
    max_delegate_steps: int
    on_step: Callable[[Step], None]
    """Called after every step (any depth): the episode fires perturbations there."""
    admin: bool = False
    """The agent works as root (admin profile): its prompts say so."""
    model_errors: list[ErrorEvent] = field(default_factory=list)
    step_count: int = 0
    turn: int = 0

    def next_index(self) -> int:
        self.step_count += 1
        return self.step_count - 1


class Agent:
    """Runs an agent conversation: ask the model, run its tool calls, feed results back, until it answers."""

    def __init__(self, ctx: AgentContext, *, tools: list[ToolSpec], max_steps: int) -> None:
        self.ctx = ctx
        self.tools = {t.name: t for t in tools}
        self.specs = tools
        self.max_steps = max_steps

    def run_turn(self, messages: list[Message], steps: list[Step]) -> str | None:
        """Work until the model answers without tool calls; appends to `messages` and `steps`. Returns the answer,
        or None when the step budget ran out first."""
        for _ in range(self.max_steps):
            completion = self._complete(messages)
            message = completion.message
            messages.append(message)
            if not message.tool_calls:
                return message.content or ""
            message_index = len(messages) - 1
            for call in message.tool_calls:
                step = self._step(call, completion, message_index)
                if steps and repeats_previous(steps[-1], step):
                    step.result += REPEAT_NOTE
                steps.append(step)
                messages.append(Message(role="tool", content=step.result, tool_call_id=call.id, name=call.name))
                self.ctx.on_step(step)
        return None

    def _complete(self, messages: list[Message]) -> Completion:
        """Ask the model; an unparsable reply is shown back as a transient hint (not kept in the conversation)."""
        ctx = self.ctx
        request = messages
        empty: Completion | None = None
        for attempt in range(ctx.malformed_retries + 1):
            try:
                completion = ctx.meter.chat("agent", ctx.llm, request, tools=self.specs, seed=ctx.seed + attempt)
            except LLMError as exc:
                if exc.is_infra:
                    raise
                ctx.model_errors.append(ErrorEvent(kind=exc.kind, message=str(exc), turn=ctx.turn))
                hint = (
                    f"Your last reply could not be used ({exc}). Reply again: either call one of the tools "
                    f"({', '.join(self.tools)}) with valid JSON arguments, or answer in plain text."
                )
                request = [*messages, Message(role="user", content=hint)]
                continue
            if completion.message.content or completion.message.tool_calls:
                return completion
            empty = completion
            ctx.model_errors.append(ErrorEvent(kind="empty", message="empty reply", turn=ctx.turn))
            request = [*messages, Message(role="user", content="Your reply was empty. Use a tool or answer.")]
        if empty is not None and ctx.model_errors[-1].kind == "empty":
            return empty  # an empty answer is still an answer: the user and the checks judge it
        raise EpisodeEnded(TerminationReason.MODEL_ERROR, "the agent's replies could not be parsed")

    def _step(self, call: ToolCall, completion: Completion, message_index: int) -> Step:
        ctx = self.ctx
        ctx.meter.check()
        index = ctx.next_index()
        started = time.monotonic()
        spec = self.tools.get(call.name)
        sub_steps: list[Step] = []
        sub_messages: list[Message] = []
        if spec is None:
            outcome = _refused(f"unknown tool {call.name!r}; available: {', '.join(self.tools)}")
        elif call.name == "delegate" and argument_problem(spec, call.arguments) is None:
            outcome = self._delegate(call.arguments["task"], sub_messages, sub_steps)
        else:
            outcome = ctx.toolbox.run(call, spec)
        if outcome.error is not None:
            kind = (
                "unknown_tool" if spec is None else "bad_arguments" if "bad arguments" in outcome.error else "file_tool"
            )
            ctx.model_errors.append(ErrorEvent(kind=kind, message=outcome.error, turn=ctx.turn, step=index))
        return Step(
            index=index,
            turn=ctx.turn,
            message_index=message_index,
            tool_call_id=call.id,
            tool=call.name,
            arguments=call.arguments,
            status=outcome.status,
            result=outcome.result,
            error=outcome.error,
            changes=ctx.toolbox.changes_since_last() if call.name in WRITING_TOOLS else [],
            llm_mode=completion.mode,
            llm_latency_s=round(completion.latency_s, 4),
            sub_steps=sub_steps,
            sub_messages=sub_messages,
            **_exec_fields(outcome.exec, elapsed=time.monotonic() - started),
        )

    def _delegate(self, task: str, sub_messages: list[Message], sub_steps: list[Step]) -> ToolOutcome:
        ctx = self.ctx
        sub = Agent(ctx, tools=agent_tools(delegate=False), max_steps=ctx.max_delegate_steps)
        sub_messages += [
            Message(role="system", content=render("agent_system.jinja", subagent=True, admin=ctx.admin)),
            Message(role="user", content=task),
        ]
        answer = sub.run_turn(sub_messages, sub_steps)
        if answer is None:
            return ToolOutcome(
                status="failed",
                result=f"the sub-agent used all {ctx.max_delegate_steps} steps without finishing; "
                f"it ran {len(sub_steps)} tool calls",
            )
        return ToolOutcome(status="ok", result=answer or "(the sub-agent finished without a report)")
