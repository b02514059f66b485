"""`ise export --format atif` on real trace files: every trajectory validates against ise/schemas/atif-v1.7.json,
steps and tool calls follow the trace, delegate conversations are embedded, and the validator rejects broken
documents."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hostile_support import ise
from jsonschema import Draft202012Validator
from trace_factory import make_trace, write_traces

from ise.errors import IseError
from ise.records import CheckResult, Message, Step, ToolCall, ToolSpec, Trace
from ise.tasks import atif
from ise.tasks.atif import ATIF_VERSION, SCHEMA_PATH, safe_file_stem, trace_to_atif, validate_atif, write_atif

DELEGATE = ToolSpec(name="delegate", description="Hand a sub-task to a sub-agent.", parameters={"type": "object"})


def delegating_trace(trace_id: str = "deleg-1") -> Trace:
    """A trace whose agent, in turn 2, delegates a count to a sub-agent, which runs one command and reports."""
    trace = make_trace(trace_id, turns=1)
    call = ToolCall(id="d1", name="delegate", arguments={"task": "count the lines of main.py"})
    sub_messages = [
        Message(role="system", content="You are a sub-agent."),
        Message(role="user", content="count the lines of main.py"),
        Message(
            role="assistant",
            content=None,
            tool_calls=[ToolCall(id="s1", name="bash", arguments={"command": "wc -l main.py"})],
        ),
        Message(role="tool", tool_call_id="s1", name="bash", content="3 main.py\n"),
        Message(role="assistant", content="main.py has 3 lines."),
    ]
    sub_step = Step(
        index=2,
        turn=2,
        message_index=2,
        tool_call_id="s1",
        tool="bash",
        arguments={"command": "wc -l main.py"},
        status="ok",
        result="3 main.py\n",
        exit_code=0,
    )
    delegate_step = Step(
        index=1,
        turn=2,
        message_index=len(trace.messages) + 1,
        tool_call_id="d1",
        tool="delegate",
        arguments=call.arguments,
        status="ok",
        result="main.py has 3 lines.",
        duration_s=1.5,
        sub_steps=[sub_step],
        sub_messages=sub_messages,
    )
    trace.messages += [
        Message(role="user", content="How long is main.py?"),
        Message(role="assistant", content="Asking a helper.", tool_calls=[call]),
        Message(role="tool", tool_call_id="d1", name="delegate", content="main.py has 3 lines."),
        Message(role="assistant", content="main.py has 3 lines."),
    ]
    trace.steps.append(delegate_step)
    trace.tools.append(DELEGATE)
    trace.tags.append("delegated")
    trace.turns = trace.user.turns = 2
    return trace


def answer_trace(trace_id: str = "answer-1") -> Trace:
    """A failed trace judged by an answer check (the agent said 2, the truth was 3)."""
    trace = make_trace(trace_id, passed=False)
    trace.outcome.checks.append(
        CheckResult(id="lines", passed=False, exit_code=0, kind="answer", answer="2", expected="3", reason="2 != 3")
    )
    return trace


@pytest.fixture
def traces(tmp_path: Path) -> list[Trace]:
    return [make_trace("ok-1"), make_trace("ok/2"), answer_trace(), delegating_trace()]


@pytest.fixture
def exported(tmp_path: Path, traces: list[Trace]) -> Path:
    source = tmp_path / "traces.jsonl"
    write_traces(source, traces)
    out = tmp_path / "out"
    done = ise(
        "export",
        "-i",
        source,
        "-o",
        out,
        "--format",
        "atif",
        "--include-failed",
        "--no-render-check",
        "--tokens",
        "approx",
    )
    assert done.exit_code == 0, done.output
    return out / "atif"


def _docs(atif_dir: Path) -> dict[str, dict[str, Any]]:
    """Every written trajectory by its session id (= the trace id)."""
    docs = [json.loads(path.read_text(encoding="utf-8")) for path in sorted(atif_dir.glob("*/*.json"))]
    return {doc["session_id"]: doc for doc in docs}


def test_every_exported_file_validates_against_the_schema(exported: Path, traces: list[Trace]) -> None:
    assert {path.parent.name for path in exported.glob("*/*.json")} <= {"train", "validation"}
    names = {path.name for path in exported.glob("*/*.json")}
    assert names == {f"{safe_file_stem(t.id)}.json" for t in traces}
    assert "ok/2.json" not in names
    assert any(name.startswith("ok_2-") for name in names)
    schema = Draft202012Validator(json.loads(SCHEMA_PATH.read_text(encoding="utf-8")))
    for doc in _docs(exported).values():
        assert list(schema.iter_errors(doc)) == []
        assert validate_atif(doc) == []
        assert doc["schema_version"] == ATIF_VERSION == "ATIF-v1.7"


def test_steps_follow_the_messages_and_results_follow_the_calls(exported: Path, traces: list[Trace]) -> None:
    docs = _docs(exported)
    for trace in traces:
        doc = docs[trace.id]
        conversation = [m for m in trace.messages if m.role != "tool"]
        assert [s["step_id"] for s in doc["steps"]] == list(range(1, len(conversation) + 1))
        assert [s["source"] for s in doc["steps"]] == [
            {"system": "system", "user": "user", "assistant": "agent"}[m.role] for m in conversation
        ]
        assert [s["message"] for s in doc["steps"]] == [m.content or "" for m in conversation]
        calls = [c["tool_call_id"] for s in doc["steps"] for c in s.get("tool_calls", [])]
        assert calls == [s.tool_call_id for s in trace.steps]
        results = {
            r["source_call_id"]: r for s in doc["steps"] for r in s.get("observation", {"results": []})["results"]
        }
        assert {cid: r["content"] for cid, r in results.items()} == {s.tool_call_id: s.result for s in trace.steps}
        assert doc["final_metrics"]["total_steps"] == len(conversation)


def test_a_failing_command_keeps_its_exit_code_and_status(exported: Path) -> None:
    doc = _docs(exported)["ok-1"]
    failing = doc["steps"][5]
    assert failing["tool_calls"][0]["arguments"] == {"command": "cat /workspace/app.ini"}
    result = failing["observation"]["results"][0]
    assert result["content"] == "cat: /workspace/app.ini: No such file"
    assert result["extra"]["ise"] == {
        "index": 1,
        "status": "failed",
        "exit_code": 1,
        "duration_s": 0.03,
        "perturbations": ["disk-noise"],
    }
    assert failing["extra"]["ise"]["turn"] == 2
    two_calls = doc["steps"][6]
    assert [r["source_call_id"] for r in two_calls["observation"]["results"]] == ["c3", "c4"]
    change = two_calls["observation"]["results"][0]["extra"]["ise"]["changes"]
    assert change == [{"path": "/workspace/app.ini", "change": "created", "size": 17, "mode": "0644"}]


def test_outcome_checks_and_provenance_go_under_extra(exported: Path) -> None:
    facts = _docs(exported)["answer-1"]["extra"]["ise"]
    assert facts["verdict"] == "failed"
    assert facts["termination"] == "user_done"
    assert facts["outcome"]["passed"] is False
    answer = [c for c in facts["outcome"]["checks"] if c["kind"] == "answer"]
    assert answer == [
        {
            "id": "lines",
            "passed": False,
            "exit_code": 0,
            "stdout": "",
            "stderr": "",
            "duration_s": 0.0,
            "timed_out": False,
            "kind": "answer",
            "answer": "2",
            "expected": "3",
            "reason": "2 != 3",
            "reward": None,
        }
    ]
    assert facts["env"]["config_hash"] == "cfg-abc123"
    assert facts["env"]["plan_proven"] is True
    assert facts["plan_id"] == "answer-1"
    assert facts["attempt"] == 0
    assert facts["user"]["final_message"] == "Thanks!"


def test_usage_totals_are_the_agents_and_the_user_simulator_is_kept_apart(exported: Path) -> None:
    doc = _docs(exported)["ok-1"]
    metrics = doc["final_metrics"]
    assert (metrics["total_prompt_tokens"], metrics["total_completion_tokens"]) == (3000, 200)
    assert metrics["extra"]["user_simulator_prompt_tokens"] == 900
    assert metrics["extra"]["agent_llm_calls"] == 4
    # Four completions, token counts per model only: no step can honestly be given metrics.
    assert not any("metrics" in step for step in doc["steps"])
    assert doc["agent"]["model_name"] == "qwen2.5-coder-0.5b"
    assert [t["function"]["name"] for t in doc["agent"]["tool_definitions"]] == ["bash", "write_file"]


def test_a_single_completion_gets_the_step_metrics() -> None:
    trace = make_trace("single", turns=1)
    trace.usage[0].calls = 1
    trace.messages = [*trace.messages[:2], Message(role="assistant", content="Nothing to do.")]
    trace.steps = []
    agent_steps = [s for s in trace_to_atif(trace)["steps"] if s["source"] == "agent"]
    assert agent_steps[0]["metrics"] == {"prompt_tokens": 3000, "completion_tokens": 200}


def test_a_delegate_conversation_is_an_embedded_subagent_trajectory(exported: Path) -> None:
    doc = _docs(exported)["deleg-1"]
    [sub] = doc["subagent_trajectories"]
    assert sub["trajectory_id"] == "deleg-1/delegate/d1"
    assert [s["source"] for s in sub["steps"]] == ["system", "user", "agent", "agent"]
    assert sub["steps"][2]["observation"]["results"][0] == {
        "source_call_id": "s1",
        "content": "3 main.py\n",
        "extra": {"ise": {"index": 2, "status": "ok", "exit_code": 0}},
    }
    assert sub["steps"][2]["extra"]["ise"]["turn"] == 2  # the parent's turn, not the sub-agent's own count
    assert sub["extra"]["ise"] == {"parent_step": 1, "parent_tool_call_id": "d1", "status": "ok", "duration_s": 1.5}
    assert "delegate" not in [t["function"]["name"] for t in sub["agent"]["tool_definitions"]]
    delegated = [r for s in doc["steps"] for r in s.get("observation", {"results": []})["results"]][-1]
    assert delegated["source_call_id"] == "d1"
    assert delegated["content"] == "main.py has 3 lines."
    assert delegated["subagent_trajectory_ref"] == [{"trajectory_id": "deleg-1/delegate/d1", "session_id": "deleg-1"}]


def _broken(mutate: Any) -> list[str]:
    doc = copy.deepcopy(trace_to_atif(delegating_trace()))
    assert validate_atif(doc) == []
    mutate(doc)
    return validate_atif(doc)


def test_the_validator_rejects_broken_documents() -> None:
    assert _broken(lambda d: d.pop("schema_version")) == ["(root): 'schema_version' is a required property"]
    assert _broken(lambda d: d.update(schema_version="ATIF-v9"))[0].startswith("schema_version: 'ATIF-v9' is not one")
    assert _broken(lambda d: d["steps"][1].update(source="assistant")) == [
        "steps/1/source: 'assistant' is not one of ['system', 'user', 'agent']"
    ]

    def orphan_result(doc: dict[str, Any]) -> None:
        doc["steps"][2]["observation"]["results"][0]["source_call_id"] = "nope"

    assert _broken(orphan_result) == [
        "steps/2/observation/results/0/source_call_id: 'nope' names no tool call of its step"
    ]
    assert _broken(lambda d: d["steps"][3].update(step_id=9)) == [
        "steps/3/step_id: 9 where 4 was due (ids count from 1)"
    ]
    assert _broken(lambda d: d["steps"][1].update(tool_calls=[])) == ["steps/1/tool_calls: [] is not of type 'null'"]
    assert _broken(lambda d: d["subagent_trajectories"][0].update(trajectory_id="other")) == [
        "steps/5/observation/results/0/subagent_trajectory_ref: 'deleg-1/delegate/d1' names no embedded subagent "
        "trajectory"
    ]
    assert _broken(lambda d: d["steps"][2].update(surprise=1)) == [
        "steps/2: Additional properties are not allowed ('surprise' was unexpected)"
    ]


def test_a_document_that_fails_its_schema_stops_the_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(atif, "ATIF_VERSION", "ATIF-v0")
    with pytest.raises(IseError, match=r"trace 'ok-1' does not validate against .*atif-v1\.7\.json: schema_version"):
        write_atif([make_trace("ok-1")], tmp_path / "atif")
    assert list((tmp_path / "atif").iterdir()) == []


def test_the_default_export_writes_no_atif_folder(tmp_path: Path) -> None:
    source = tmp_path / "traces.jsonl"
    write_traces(source, [make_trace("ok-1")])
    done = ise("export", "-i", source, "-o", tmp_path / "out", "--no-render-check", "--tokens", "approx")
    assert done.exit_code == 0, done.output
    assert (tmp_path / "out" / "openai").is_dir()
    assert not (tmp_path / "out" / "atif").exists()


def test_the_module_validates_files_from_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good, bad = tmp_path / "good.json", tmp_path / "bad.json"
    good.write_text(json.dumps(trace_to_atif(make_trace())), encoding="utf-8")
    bad.write_text("{not json", encoding="utf-8")
    assert atif.main([str(good)]) == 0
    assert atif.main([str(good), str(bad)]) == 1
    assert capsys.readouterr().out.startswith(f"{bad}: cannot be read as JSON")
