"""Build realistic Trace records in Python for export/report/viewer tests (no pipeline run needed).

`make_trace` gives a two-turn episode: the agent lists the workspace, answers, is asked for more, runs a command
that fails, fixes it (a failure->recovery span), a perturbation fires in between, and the final checks run.
"""

from __future__ import annotations

from typing import Any

from ise.records import (
    Budgets,
    CheckProbe,
    CheckResult,
    ErrorEvent,
    Failure,
    Message,
    ModelUsage,
    Outcome,
    Persona,
    PerturbationEvent,
    Step,
    TerminationReason,
    Timing,
    ToolCall,
    ToolSpec,
    Trace,
    TraceEnv,
    TraceIntent,
    UserSimReport,
    WorkspaceChange,
)

BASH = ToolSpec(
    name="bash",
    description="Run a shell command in the persistent session.",
    parameters={"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]},
)
WRITE_FILE = ToolSpec(
    name="write_file",
    description="Write a text file.",
    parameters={
        "type": "object",
        "properties": {"path": {"type": "string"}, "content": {"type": "string"}},
        "required": ["path", "content"],
    },
)


def _call(call_id: str, name: str, **arguments: Any) -> ToolCall:
    return ToolCall(id=call_id, name=name, arguments=arguments)


def make_trace(
    trace_id: str = "t-0001",
    *,
    domain: str = "devops",
    complexity: str = "medium",
    passed: bool = True,
    turns: int = 2,
    recovered: bool = True,
    infra_error: bool = False,
    drift: int = 0,
    termination: TerminationReason = TerminationReason.USER_DONE,
    persona_role: str = "site reliability engineer",
) -> Trace:
    """A consistent trace: every tool call has one tool message and one Step; steps, events, failures agree."""
    messages = [
        Message(role="system", content="You are an OS agent. Use the tools to do the user's work."),
        Message(role="user", content="Please list what is in /workspace/app and tell me the Python version."),
        Message(
            role="assistant", content="Let me look.", tool_calls=[_call("c1", "bash", command="ls /workspace/app")]
        ),
        Message(role="tool", tool_call_id="c1", name="bash", content="main.py\nrequirements.txt\n"),
        Message(role="assistant", content="The app has main.py and requirements.txt <b>&amp; no tests</b>."),
    ]
    steps = [
        Step(
            index=0,
            turn=1,
            message_index=2,
            tool_call_id="c1",
            tool="bash",
            arguments={"command": "ls /workspace/app"},
            status="ok",
            result="main.py\nrequirements.txt\n",
            stdout="main.py\nrequirements.txt\n",
            exit_code=0,
            duration_s=0.04,
        )
    ]
    failures: list[Failure] = []
    events: list[PerturbationEvent] = []
    if turns >= 2:
        messages += [
            Message(role="user", content="Now write a config file app.ini with port=8080 and check it."),
            Message(role="assistant", content=None, tool_calls=[_call("c2", "bash", command="cat /workspace/app.ini")]),
            Message(role="tool", tool_call_id="c2", name="bash", content="cat: /workspace/app.ini: No such file"),
            Message(
                role="assistant",
                content="It does not exist yet; creating it.",
                tool_calls=[
                    _call("c3", "write_file", path="/workspace/app.ini", content="[app]\nport=8080\n"),
                    _call("c4", "bash", command="grep -c port /workspace/app.ini"),
                ],
            ),
            Message(role="tool", tool_call_id="c3", name="write_file", content="wrote 17 bytes"),
            Message(role="tool", tool_call_id="c4", name="bash", content="1\n"),
            Message(role="assistant", content="Done: /workspace/app.ini sets port=8080."),
        ]
        steps += [
            Step(
                index=1,
                turn=2,
                message_index=6,
                tool_call_id="c2",
                tool="bash",
                arguments={"command": "cat /workspace/app.ini"},
                status="failed",
                result="cat: /workspace/app.ini: No such file",
                stderr="cat: /workspace/app.ini: No such file",
                exit_code=1,
                duration_s=0.03,
                perturbations=["disk-noise"],
            ),
            Step(
                index=2,
                turn=2,
                message_index=8,
                tool_call_id="c3",
                tool="write_file",
                arguments={"path": "/workspace/app.ini", "content": "[app]\nport=8080\n"},
                status="ok",
                result="wrote 17 bytes",
                duration_s=0.02,
                changes=[WorkspaceChange(path="/workspace/app.ini", change="created", size=17, mode="0644")],
            ),
            Step(
                index=3,
                turn=2,
                message_index=8,
                tool_call_id="c4",
                tool="bash",
                arguments={"command": "grep -c port /workspace/app.ini"},
                status="ok",
                result="1\n",
                stdout="1\n",
                exit_code=0,
                duration_s=0.03,
            ),
        ]
        failures.append(
            Failure(
                kind="step",
                step=1,
                recovered_by=2 if recovered else None,
                evidence="same_target" if recovered else None,
            )
        )
        events.append(
            PerturbationEvent(
                id="disk-noise", trigger="condition", turn=2, after_step=1, message_index=8, exit_code=0, output="ok"
            )
        )
    checks = [
        CheckResult(
            id="config-exists", passed=passed, exit_code=0 if passed else 1, stdout="port=8080" if passed else ""
        ),
        CheckResult(id="listed", passed=True, exit_code=0),
    ]
    tags = ["perturbed"] if events else []
    if recovered and failures:
        tags.append("recovered")
    infra = None
    if infra_error:
        infra = ErrorEvent(kind="sandbox", message="container died", turn=turns, role="sandbox")
        termination = TerminationReason.INFRA_ERROR
        tags.append("infra_error")
    return Trace(
        id=trace_id,
        intent=TraceIntent(
            domain=domain,
            complexity=complexity,  # type: ignore[arg-type]
            persona=Persona(role=persona_role, industry="fintech", experience="senior", style="terse"),
            tasks=["list-files", "write-config"],
            tools=["ls", "cat"],
            request="List my app and write its config.",
            expected_turns=turns,
        ),
        messages=messages,
        tools=[BASH, WRITE_FILE],
        steps=steps,
        events=events,
        probes=[CheckProbe(turn=1, milestone="m1", after_step=0, results=[checks[1]])],
        failures=failures,
        recoveries=sum(f.recovered_by is not None for f in failures),
        outcome=Outcome(passed=passed, checks=checks, agent_claimed_success=True, unverified_claim=not passed),
        termination=termination,
        turns=turns,
        user=UserSimReport(
            verdict="done", final_message="Thanks!", turns=turns, milestones_reached=turns, drift_detected=drift
        ),
        infra_error=infra,
        tags=tags,
        usage=[
            ModelUsage(
                role="agent",
                model="qwen2.5-coder-0.5b",
                calls=4,
                prompt_tokens=3000,
                completion_tokens=200,
                latency_s=6.0,
            ),
            ModelUsage(
                role="user", model="qwen2.5-coder-0.5b", calls=2, prompt_tokens=900, completion_tokens=60, latency_s=2.0
            ),
        ],
        timing=Timing(wall_s=12.5, llm_s=8.0, sandbox_s=3.1, setup_s=0.4, checks_s=0.2),
        env=TraceEnv(
            image_id="ise-sandbox:test",
            sandbox={"network": "none"},
            budgets=Budgets(
                max_user_turns=4, max_agent_steps_per_turn=8, command_timeout_s=30, wall_clock_s=600, max_tokens=16000
            ),
            config_hash="cfg-abc123",
            seed=7,
            ise_version="0.1.0",
        ),
    )


def write_traces(path: Any, traces: list[Trace]) -> None:
    path.write_text("".join(t.model_dump_json() + "\n" for t in traces), encoding="utf-8")


DELEGATE = ToolSpec(
    name="delegate",
    description="Hand a self-contained subtask to a sub-agent.",
    parameters={"type": "object", "properties": {"task": {"type": "string"}}, "required": ["task"]},
)


def make_delegating_trace(
    trace_id: str = "d-0001", *, whole: bool = True, finished: bool = True, passed: bool = True, attempt: int = 0
) -> Trace:
    """A one-turn trace whose agent delegates: at once (`whole`: its only top-level call is delegate) or after
    looking itself (`ls` first). The sub-agent runs `wc -l` and reports; unless `finished`, it ran out of steps
    with its last call answered but no report (as ise/agent.py records it)."""
    trace = make_trace(trace_id, turns=1, passed=passed, recovered=False)
    task = "Count the lines of /workspace/app/main.py and report the number."
    sub_messages = [
        Message(role="system", content="You are a sub-agent working in a Linux workspace."),
        Message(role="user", content=task),
        Message(role="assistant", content=None, tool_calls=[_call("s1", "bash", command="wc -l app/main.py")]),
        Message(role="tool", tool_call_id="s1", name="bash", content="3 app/main.py\n[exit code 0]"),
    ]
    if finished:
        sub_messages.append(Message(role="assistant", content="app/main.py has 3 lines."))
    report = "app/main.py has 3 lines." if finished else "the sub-agent used all 8 steps without finishing"
    head = trace.messages[:2] if whole else trace.messages[:4]
    trace.messages = [
        *head,
        Message(role="assistant", content=None, tool_calls=[_call("d1", "delegate", task=task)]),
        Message(role="tool", tool_call_id="d1", name="delegate", content=report),
        Message(role="assistant", content="main.py has 3 lines."),
    ]
    first = 0 if whole else 1
    sub_step = Step(
        index=first + 1,
        turn=1,
        message_index=2,
        tool_call_id="s1",
        tool="bash",
        arguments={"command": "wc -l app/main.py"},
        status="ok",
        result="3 app/main.py\n[exit code 0]",
        stdout="3 app/main.py\n",
        exit_code=0,
    )
    delegate = Step(
        index=first,
        turn=1,
        message_index=len(head),
        tool_call_id="d1",
        tool="delegate",
        arguments={"task": task},
        status="ok" if finished else "failed",
        result=report,
        sub_steps=[sub_step],
        sub_messages=sub_messages,
    )
    trace.steps = [delegate] if whole else [trace.steps[0], delegate]
    trace.tools = [BASH, WRITE_FILE, DELEGATE]
    trace.tags = ["delegated", "delegated_whole_request"] if whole else ["delegated"]
    trace.id = f"{trace_id}.a{attempt}" if attempt else trace_id
    trace.env.attempt = attempt
    return trace
