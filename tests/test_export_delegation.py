"""`ise export` and delegation, through the CLI: a trajectory that handed the whole request to a sub-agent is
filtered (delegated_whole_request) unless --include-whole-delegation, and --subagent-rows exports each sub-agent
conversation as a row of its own, validated, in its parent's split."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from trace_factory import make_delegating_trace, make_trace, write_traces
from typer.testing import CliRunner

from ise.cli import app
from ise.stages.export_selection import split_intents
from ise.stages.export_summary import SPLITS
from ise.stages.sft_files import canonical_from_arrow
from ise.stages.sft_rows import openai_messages, validate_conversation

NO_MODEL = ["--no-render-check", "--tokens", "approx"]


def export(traces: Path, out: Path, *flags: str) -> str:
    result = CliRunner().invoke(app, ["export", "-i", str(traces), "-o", str(out), *NO_MODEL, *flags])
    assert result.exit_code == 0, result.output
    return result.output


def rows(out: Path, split: str, fmt: str = "openai") -> list[dict[str, Any]]:
    lines = (out / fmt / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def all_rows(out: Path) -> dict[str, dict[str, Any]]:
    return {row["id"]: {**row, "split": split} for split in SPLITS for row in rows(out, split)}


def jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_whole_delegation_is_filtered_unless_asked_for(tmp_path: Path) -> None:
    untagged = make_delegating_trace("whole-untagged")
    untagged.tags = ["delegated"]  # written before the tag existed: the steps decide, not the tag
    traces = tmp_path / "traces.jsonl"
    write_traces(
        traces,
        [make_trace("works"), make_delegating_trace("whole"), make_delegating_trace("after", whole=False), untagged],
    )

    output = export(traces, tmp_path / "default")
    assert set(all_rows(tmp_path / "default")) == {"works", "after"}
    assert jsonl(tmp_path / "default" / "filtered.jsonl") == [
        {"id": "whole", "line": 2, "reason": "delegated_whole_request"},
        {"id": "whole-untagged", "line": 4, "reason": "delegated_whole_request"},
    ]
    manifest = json.loads((tmp_path / "default" / "export.json").read_text())
    assert manifest["filtered"] == {"delegated_whole_request": 2}
    assert manifest["filters"]["include_whole_delegation"] is False
    assert "delegated_whole_request 2" in output

    export(traces, tmp_path / "kept", "--include-whole-delegation")
    assert set(all_rows(tmp_path / "kept")) == {"works", "whole", "after", "whole-untagged"}
    assert jsonl(tmp_path / "kept" / "filtered.jsonl") == []


def test_a_failed_whole_delegation_is_filtered_for_its_failure_first(tmp_path: Path) -> None:
    traces = tmp_path / "traces.jsonl"
    write_traces(traces, [make_trace("works"), make_delegating_trace("whole-failed", passed=False)])
    export(traces, tmp_path / "out")
    assert jsonl(tmp_path / "out" / "filtered.jsonl") == [{"id": "whole-failed", "line": 2, "reason": "checks_failed"}]


def delegating_traces() -> list[Any]:
    """Twelve plans: whole delegations and delegations after own work, one second attempt, one failed parent,
    one sub-agent that never reported, and a trace with no delegation at all."""
    traces = [make_delegating_trace(f"plan-{i}", whole=i % 2 == 0) for i in range(8)]
    traces += [
        make_delegating_trace("plan-8", whole=False, attempt=1),
        make_delegating_trace("failed", passed=False, whole=False),
        make_delegating_trace("unfinished", finished=False, whole=False),
        make_trace("plain"),
    ]
    return traces


def test_subagent_rows_are_rows_of_their_own_in_their_parents_split(tmp_path: Path) -> None:
    traces, out = tmp_path / "traces.jsonl", tmp_path / "out"
    source = delegating_traces()
    write_traces(traces, source)
    flags = ["--subagent-rows", "--validation-fraction", "0.4", "--format", "openai", "--format", "parquet"]
    export(traces, out, *flags, "--format", "atif")
    exported = all_rows(out)

    subs = {i: r for i, r in exported.items() if r["metadata"]["subagent"]}
    expected_parents = [f"plan-{i}" for i in range(8)] + ["plan-8.a1"]  # not the failed one's, not the unfinished
    assert sorted(subs) == sorted(f"{p}/delegate/d1" for p in expected_parents)
    # Whole delegations lose their own row but keep the sub-agent's (real terminal work); the rest keep both.
    assert {i for i, r in exported.items() if not r["metadata"]["subagent"]} == {
        "plan-1", "plan-3", "plan-5", "plan-7", "plan-8.a1", "unfinished", "plain",
    }  # fmt: skip

    held_out = split_intents([t.plan_id for t in source if t.outcome.passed], 0.4, 0)
    assert {r["split"] for r in subs.values()} == set(SPLITS)  # the split test below means something
    for row_id, row in subs.items():
        parent_id = row_id.removesuffix("/delegate/d1")
        meta = row["metadata"]
        assert meta["parent_id"] == parent_id
        assert meta["intent_id"] == parent_id.removesuffix(".a1")  # the plan id: attempts share a split
        assert row["split"] == ("validation" if meta["intent_id"] in held_out else "train")
        if parent_id in exported:
            assert exported[parent_id]["split"] == row["split"]
            assert exported[parent_id]["metadata"]["parent_id"] is None
        assert (meta["user_turns"], meta["tool_calls"], meta["termination"]) == (1, 1, "agent_answered")
        assert validate_conversation(row["messages"], row["tools"]) == []

    parent = next(t for t in source if t.id == "plan-1")
    sub = subs["plan-1/delegate/d1"]
    assert sub["messages"] == openai_messages(parent.steps[1].sub_messages)
    assert [m["role"] for m in sub["messages"]] == ["system", "user", "assistant", "tool", "assistant"]
    assert sub["messages"][1]["content"] == parent.steps[1].arguments["task"]
    assert sub["messages"][-1]["content"] == "app/main.py has 3 lines."
    assert [t["function"]["name"] for t in sub["tools"]] == ["bash", "write_file"]  # what the sub-agent had

    rejects = jsonl(out / "rejects.jsonl")
    assert [(r["id"], r["stage"]) for r in rejects] == [("unfinished/delegate/d1", "validation")]
    assert "conversation does not end with an assistant answer" in rejects[0]["reasons"]

    for split in SPLITS:
        parquet = [canonical_from_arrow(r) for r in pq.read_table(out / "parquet" / f"{split}.parquet").to_pylist()]
        assert parquet == rows(out, split)
        atif = {p.stem for p in (out / "atif" / split).glob("*.json")}
        assert atif == {r["id"] for r in rows(out, split) if not r["metadata"]["subagent"]}
    stats = json.loads((out / "export.json").read_text())["stats"]
    assert sum(stats[split]["subagent_rows"] for split in SPLITS) == len(subs)


def test_without_the_flag_no_subagent_rows_are_written(tmp_path: Path) -> None:
    traces, out = tmp_path / "traces.jsonl", tmp_path / "out"
    write_traces(traces, delegating_traces())
    export(traces, out)
    assert not any(row["metadata"]["subagent"] for row in all_rows(out).values())
    assert jsonl(out / "rejects.jsonl") == []
