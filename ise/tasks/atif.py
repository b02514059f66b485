"""ise traces as ATIF trajectories (Harbor's Agent Trajectory Interchange Format, ATIF-v1.7), validated before writing.

How a Trace maps onto ATIF (RFC 0001, v1.7):
- Every message of `Trace.messages` is one step, in order: system -> source "system", user -> "user", assistant ->
  "agent" (its text as `message`, its tool calls as `tool_calls`). The tool messages that answer an assistant
  message are that agent step's `observation.results` (`source_call_id` = the call's id, `content` = exactly what
  the model was shown), so tool messages add no steps of their own. Step ids count from 1.
- What really ran for a call (status, exit code, duration, timeout, truncation, cwd, workspace changes,
  perturbations fired) is the result's `extra.ise`; the agent step's `extra.ise` holds the user turn, the index
  of the message in Trace.messages and how the completion was produced (llm_mode, latency).
- A delegate call's sub-agent conversation becomes an embedded trajectory in `subagent_trajectories`
  (trajectory_id `<trace id>/delegate/<call id>`), referenced from the delegate result's `subagent_trajectory_ref`;
  the result's `content` is still the report the parent agent was shown.
- Metrics: ise counts tokens per model and role, not per completion, so a step gets `metrics` only when the whole
  episode was a single agent completion; `final_metrics` holds the agent's totals (sub-agents included) and, in
  its `extra`, the user simulator's tokens, which no step of the agent's conversation spent.
- Everything ATIF has no field for lives under the root `extra.ise`: verdict, outcome and every check result,
  termination, the user simulator's own verdict and closing message, failures and recoveries, perturbation
  events, mid-episode probes, model and infra errors, tags, intent, usage per model, timing and the environment
  (image, config hash, seed, plan hash, profile, plan_proven, attempt).
- Not filled, because ise does not record them: `timestamp`, `reasoning_content`, `reasoning_effort`,
  `cached_tokens`, costs, token ids and logprobs.

Structure is checked by ise/schemas/atif-v1.7.json (JSON Schema 2020-12); the cross-references JSON Schema cannot
express (sequential step ids, results naming a call of their own step, refs naming an embedded trajectory) are
checked here. `python -m ise.tasks.atif FILE...` validates files written by anyone.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

from ise.errors import IseError
from ise.records import Message, ModelUsage, Step, ToolSpec, Trace
from ise.stages.delegation import subagent_conversation

ATIF_VERSION = "ATIF-v1.7"
SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schemas" / "atif-v1.7.json"
AGENT_NAME = "ise"

NOTES = (
    "Written by ise from an execution trace. Tool results are the observation of the agent step that made the "
    "calls; per-step token metrics are absent because ise counts tokens per model, not per completion; outcome, "
    "checks, termination and provenance are under extra.ise."
)
_SOURCES = {"system": "system", "user": "user", "assistant": "agent"}
_STEP_FACTS = {
    "index",
    "status",
    "exit_code",
    "duration_s",
    "timed_out",
    "truncated",
    "cwd",
    "session_reset",
    "error",
    "changes",
    "perturbations",
}
"""Step fields worth keeping beside a result (stdout/stderr are left out: `content` is what the model saw)."""
_TRACE_FACTS = {
    "outcome",
    "termination",
    "turns",
    "user",
    "failures",
    "recoveries",
    "events",
    "probes",
    "model_errors",
    "infra_error",
    "tags",
    "intent",
    "usage",
    "timing",
    "env",
}
_MAX_PROBLEM = 300


# --- Trace -> ATIF ----------------------------------------------------------------------------------------------


def trace_to_atif(trace: Trace) -> dict[str, Any]:
    """The ATIF trajectory of one trace (a plain JSON-ready dict; see the module docstring for the mapping)."""
    subagents: list[dict[str, Any]] = []
    steps = _steps(trace, trace.messages, {s.tool_call_id: s for s in trace.steps}, subagents)
    _attribute_single_completion(steps, trace.usage)
    doc: dict[str, Any] = {
        "schema_version": ATIF_VERSION,
        "session_id": trace.id,
        "trajectory_id": trace.id,
        "agent": _agent(trace, trace.tools),
        "steps": steps,
        "notes": NOTES,
        "final_metrics": _final_metrics(trace.usage, len(steps)),
        "extra": {"ise": _ise_facts(trace)},
    }
    if subagents:
        doc["subagent_trajectories"] = subagents
    return doc


def _steps(
    trace: Trace, messages: list[Message], ran: dict[str, Step], subagents: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """One step per non-tool message; each tool message becomes a result of the agent step that made its call."""
    steps: list[dict[str, Any]] = []
    open_calls: dict[str, dict[str, Any]] = {}
    turn = 0
    for index, message in enumerate(messages):
        if message.role == "tool":
            owner = open_calls.get(message.tool_call_id or "")
            executed = ran.get(message.tool_call_id or "")
            # A tool message answering no call of the last agent step breaks the trace contract: it is attached
            # anyway, so validation names it instead of the export dropping it silently.
            target = owner if owner is not None else (steps[-1] if steps else None)
            if target is not None:
                result = _result(trace, message, executed, subagents)
                target.setdefault("observation", {"results": []})["results"].append(result)
            continue
        turn += message.role == "user"
        step = _message_step(message, len(steps) + 1, index, turn, ran)
        open_calls = {call.id: step for call in message.tool_calls}
        steps.append(step)
    for step in steps:  # extra last, after the observation, as in the RFC's examples
        if "extra" in step:
            step["extra"] = step.pop("extra")
    return steps


def _message_step(message: Message, step_id: int, index: int, turn: int, ran: dict[str, Step]) -> dict[str, Any]:
    step: dict[str, Any] = {"step_id": step_id, "source": _SOURCES[message.role], "message": message.content or ""}
    if message.role != "assistant":
        return step
    facts: dict[str, Any] = {"message_index": index, "turn": turn}
    if message.tool_calls:
        step["tool_calls"] = [
            {"tool_call_id": call.id, "function_name": call.name, "arguments": call.arguments}
            for call in message.tool_calls
        ]
        if (first := ran.get(message.tool_calls[0].id)) is not None:
            facts.update(turn=first.turn, llm_mode=first.llm_mode, llm_latency_s=first.llm_latency_s)
    step["extra"] = {"ise": facts}
    return step


def _result(trace: Trace, message: Message, step: Step | None, subagents: list[dict[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {"source_call_id": message.tool_call_id, "content": message.content or ""}
    if step is None:
        return result
    result["extra"] = {"ise": step.model_dump(mode="json", include=_STEP_FACTS, exclude_defaults=True)}
    if step.sub_messages:
        sub = _subagent(trace, step)
        subagents.append(sub)
        result["subagent_trajectory_ref"] = [{"trajectory_id": sub["trajectory_id"], "session_id": trace.id}]
    return result


def _subagent(trace: Trace, delegate: Step) -> dict[str, Any]:
    """The delegate's sub-agent conversation as an embedded trajectory (its own steps, numbered from 1)."""
    conversation = subagent_conversation(trace, delegate)
    nested: list[dict[str, Any]] = []
    steps = _steps(trace, conversation.messages, {s.tool_call_id: s for s in delegate.sub_steps}, nested)
    for step in steps:  # a sub-agent runs inside its parent's turn, whatever its own messages say
        if "extra" in step:
            step["extra"]["ise"]["turn"] = delegate.turn
    sub: dict[str, Any] = {
        "schema_version": ATIF_VERSION,
        "session_id": trace.id,
        "trajectory_id": conversation.id,
        "agent": _agent(trace, conversation.tools, role="sub-agent"),
        "steps": steps,
        "final_metrics": {"total_steps": len(steps)},
        "extra": {
            "ise": {
                "parent_step": delegate.index,
                "parent_tool_call_id": delegate.tool_call_id,
                "status": delegate.status,
                "duration_s": delegate.duration_s,
            }
        },
    }
    if nested:
        sub["subagent_trajectories"] = nested
    return sub


def _agent(trace: Trace, tools: list[ToolSpec], role: str = "agent") -> dict[str, Any]:
    models = sorted((u for u in trace.usage if u.role == "agent"), key=lambda u: -u.calls)
    agent: dict[str, Any] = {"name": AGENT_NAME, "version": trace.env.ise_version}
    if models:
        agent["model_name"] = models[0].model
    # OpenAI function-tool shape: what the agent was offered, as most trajectory readers expect it.
    agent["tool_definitions"] = [
        {"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.parameters}}
        for t in tools
    ]
    agent["extra"] = {"role": role, "agent_models": [u.model for u in models]}
    return agent


def _final_metrics(usage: list[ModelUsage], total_steps: int) -> dict[str, Any]:
    agent = [u for u in usage if u.role == "agent"]
    user = [u for u in usage if u.role == "user"]
    return {
        "total_prompt_tokens": sum(u.prompt_tokens for u in agent),
        "total_completion_tokens": sum(u.completion_tokens for u in agent),
        "total_steps": total_steps,
        "extra": {
            "agent_llm_calls": sum(u.calls for u in agent),
            "user_simulator_prompt_tokens": sum(u.prompt_tokens for u in user),
            "user_simulator_completion_tokens": sum(u.completion_tokens for u in user),
            "user_simulator_llm_calls": sum(u.calls for u in user),
        },
    }


def _attribute_single_completion(steps: list[dict[str, Any]], usage: list[ModelUsage]) -> None:
    """Per-step metrics only where they are certain: one agent completion in all, so one agent step spent it all."""
    agent_usage = [u for u in usage if u.role == "agent"]
    agent_steps = [s for s in steps if s["source"] == "agent"]
    if len(agent_usage) == 1 and agent_usage[0].calls == 1 and len(agent_steps) == 1:
        only = agent_usage[0]
        agent_steps[0]["model_name"] = only.model
        agent_steps[0]["metrics"] = {"prompt_tokens": only.prompt_tokens, "completion_tokens": only.completion_tokens}


def _ise_facts(trace: Trace) -> dict[str, Any]:
    facts: dict[str, Any] = {
        "trace_schema_version": trace.schema_version,
        "plan_id": trace.id,
        "attempt": trace.env.attempt,
        "verdict": trace.verdict,
    }
    facts.update(trace.model_dump(mode="json", include=_TRACE_FACTS))
    return facts


# --- validation -------------------------------------------------------------------------------------------------


@cache
def _validator() -> Draft202012Validator:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def validate_atif(doc: object) -> list[str]:
    """Every problem of an ATIF document, as `path: cause` lines; empty when it is valid."""
    errors = sorted(_validator().iter_errors(doc), key=lambda e: [str(p) for p in e.absolute_path])
    if errors:
        return [_clip(f"{_path(e.absolute_path)}: {e.message}") for e in errors]
    assert isinstance(doc, dict)  # the schema's root type, checked just above
    return _reference_problems(doc, "")


def _reference_problems(trajectory: dict[str, Any], where: str) -> list[str]:
    """Cross-references of one trajectory and, recursively, of its embedded subagents."""
    problems: list[str] = []
    embedded = [sub.get("trajectory_id") for sub in trajectory.get("subagent_trajectories") or []]
    problems += [f"{where}subagent_trajectories: trajectory_id {tid!r} is not unique" for tid in _repeated(embedded)]
    call_ids: list[str] = []
    for position, step in enumerate(trajectory["steps"]):
        at = f"{where}steps/{position}"
        if step["step_id"] != position + 1:
            problems.append(f"{at}/step_id: {step['step_id']} where {position + 1} was due (ids count from 1)")
        own_calls = {call["tool_call_id"] for call in step.get("tool_calls") or []}
        call_ids += [call["tool_call_id"] for call in step.get("tool_calls") or []]
        for number, result in enumerate((step.get("observation") or {}).get("results", [])):
            problems += _result_problems(result, own_calls, set(embedded), f"{at}/observation/results/{number}")
    problems += [f"{where}steps: tool_call_id {cid!r} is used by more than one call" for cid in _repeated(call_ids)]
    for number, sub in enumerate(trajectory.get("subagent_trajectories") or []):
        problems += _reference_problems(sub, f"{where}subagent_trajectories/{number}/")
    return problems


def _result_problems(result: dict[str, Any], own_calls: set[str], embedded: set[Any], at: str) -> list[str]:
    problems = []
    source = result.get("source_call_id")
    if source is not None and source not in own_calls:
        problems.append(f"{at}/source_call_id: {source!r} names no tool call of its step")
    for ref in result.get("subagent_trajectory_ref") or []:
        tid = ref.get("trajectory_id")
        if tid is not None and tid not in embedded and not ref.get("trajectory_path"):
            problems.append(f"{at}/subagent_trajectory_ref: {tid!r} names no embedded subagent trajectory")
    return problems


def _repeated(values: list[Any]) -> list[Any]:
    seen: set[Any] = set()
    repeated = []
    for value in values:
        if value in seen:
            repeated.append(value)
        seen.add(value)
    return repeated


def _path(parts: Any) -> str:
    return "/".join(str(p) for p in parts) or "(root)"


def _clip(text: str) -> str:
    return text if len(text) <= _MAX_PROBLEM else text[: _MAX_PROBLEM - 3] + "..."


# --- files ------------------------------------------------------------------------------------------------------


def safe_file_stem(trace_id: str) -> str:
    """A file name for an id: kept as is when it is already safe, else cleaned and suffixed with a hash of the id
    (so two ids that clean to the same text still get two files)."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "_", trace_id).lstrip(".")[:120]
    if cleaned == trace_id:
        return trace_id
    return f"{cleaned or 'trace'}-{hashlib.sha256(trace_id.encode()).hexdigest()[:10]}"


def write_atif(traces: list[Trace], out_dir: Path) -> int:
    """One `<safe id>.json` ATIF trajectory per trace in out_dir (created); how many were written.

    A document that fails its schema is ise's bug, not bad input: it stops the export (whose staging folder is then
    discarded) with the trace id, the schema and the first problems."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for trace in traces:
        doc = trace_to_atif(trace)
        if problems := validate_atif(doc):
            more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
            raise IseError(
                f"ATIF trajectory of trace {trace.id!r} does not validate against {SCHEMA_PATH}: "
                + "; ".join(problems[:3])
                + more
            )
        text = json.dumps(doc, ensure_ascii=False, indent=2) + "\n"
        (out_dir / f"{safe_file_stem(trace.id)}.json").write_text(text, encoding="utf-8")
    return len(traces)


def main(argv: list[str]) -> int:
    """Validate ATIF files: one `file: problem` line each, exit 1 when any is invalid (or not JSON)."""
    failed = False
    for name in argv:
        try:
            problems = validate_atif(json.loads(Path(name).read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            problems = [f"cannot be read as JSON ({err})"]
        failed = failed or bool(problems)
        for problem in problems:
            print(f"{name}: {problem}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
