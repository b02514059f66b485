"""`ise export` end to end on real files: filters, split, formats, Parquet round trip, rejects, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from trace_factory import make_trace, write_traces

from ise import trace_file
from ise.config import ExportConfig
from ise.errors import InputError, IseError
from ise.records import TRACE_SCHEMA_VERSION as V
from ise.records import Message, Trace
from ise.stages import export as export_module
from ise.stages.export import export
from ise.stages.export_selection import split_intents
from ise.stages.export_summary import SPLITS
from ise.stages.sft_files import canonical_from_arrow

# No template server in these tests: the render check and real token counts are in test_export_model.py.
NO_MODEL = {"render_samples": 0, "token_counter": "approx"}


def _cfg(**overrides: Any) -> ExportConfig:
    return ExportConfig(**{**NO_MODEL, **overrides})


def _ids(out: Path, fmt: str = "openai") -> dict[str, set[str]]:
    return {split: {json.loads(line)["id"] for line in _lines(out / fmt / f"{split}.jsonl")} for split in SPLITS}


def _lines(path: Path) -> list[str]:
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _all_ids(out: Path) -> set[str]:
    ids = _ids(out)
    return ids["train"] | ids["validation"]


@pytest.fixture
def mixed(tmp_path: Path) -> Path:
    """Ten traces, each a different case for the filters."""
    traces = [
        make_trace("ok-1"),
        make_trace("ok-2", domain="data"),
        make_trace("ok-3", complexity="complex"),
        make_trace("failed-1", passed=False),
        make_trace("failed-2", passed=False, recovered=False),
        make_trace("no-recovery", recovered=False),
        make_trace("one-turn", turns=1),
        make_trace("infra", infra_error=True, passed=False),
        make_trace("infra-passed", infra_error=True, passed=True),
        make_trace("ok-4", domain="web"),
    ]
    path = tmp_path / "traces.jsonl"
    write_traces(path, traces)
    return path


def test_default_export_keeps_verified_successes_without_infra_errors(mixed: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    summary = export(mixed, out, _cfg())
    assert _all_ids(out) == {"ok-1", "ok-2", "ok-3", "ok-4", "no-recovery", "one-turn"}
    assert summary.filtered == {"checks_failed": 2, "infra_error": 2}
    filtered = {json.loads(line)["id"]: json.loads(line)["reason"] for line in _lines(out / "filtered.jsonl")}
    assert filtered == {
        "failed-1": "checks_failed",
        "failed-2": "checks_failed",
        "infra": "infra_error",
        "infra-passed": "infra_error",
    }
    manifest = json.loads((out / "export.json").read_text())
    assert manifest["read"] == 10
    assert manifest["rows"]["train"] + manifest["rows"]["validation"] == 6
    card = (out / "README.md").read_text()
    assert "traces read: 10" in card
    for fact in ["checks_failed: 2", "infra_error: 2", "`qwen2.5-coder-0.5b`", "`ise-sandbox:test`", "`cfg-abc123`"]:
        assert fact in card


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"include_failed": True}, {"ok-1", "ok-2", "ok-3", "ok-4", "no-recovery", "one-turn", "failed-1", "failed-2"}),
        ({"require_recovery": True}, {"ok-1", "ok-2", "ok-3", "ok-4"}),
        ({"require_recovery": True, "include_failed": True}, {"ok-1", "ok-2", "ok-3", "ok-4", "failed-1"}),
        ({"min_user_turns": 2}, {"ok-1", "ok-2", "ok-3", "ok-4", "no-recovery"}),
        ({"max_user_turns": 1}, {"one-turn"}),
        ({"exclude_infra_errors": False}, {"ok-1", "ok-2", "ok-3", "ok-4", "no-recovery", "one-turn", "infra-passed"}),
    ],
)
def test_filters(mixed: Path, tmp_path: Path, overrides: dict[str, Any], expected: set[str]) -> None:
    export(mixed, tmp_path / "out", _cfg(**overrides))
    assert _all_ids(tmp_path / "out") == expected


def test_max_tokens_drops_long_conversations(tmp_path: Path) -> None:
    long = make_trace("long")
    long.messages[3] = Message(role="tool", tool_call_id="c1", name="bash", content="x" * 8000)
    path = tmp_path / "traces.jsonl"
    write_traces(path, [make_trace("short"), long])
    summary = export(path, tmp_path / "out", _cfg(max_tokens=1500))
    assert _all_ids(tmp_path / "out") == {"short"}
    assert summary.filtered == {"too_many_tokens": 1}
    assert "approx" in summary.token_counter


def test_split_is_by_intent_seeded_and_order_independent(tmp_path: Path) -> None:
    traces = [make_trace(f"intent-{i:03d}") for i in range(50)]
    write_traces(tmp_path / "a.jsonl", traces)
    write_traces(tmp_path / "b.jsonl", list(reversed(traces)))
    export(tmp_path / "a.jsonl", tmp_path / "a", _cfg(validation_fraction=0.2, seed=1))
    export(tmp_path / "b.jsonl", tmp_path / "b", _cfg(validation_fraction=0.2, seed=1))
    export(tmp_path / "a.jsonl", tmp_path / "c", _cfg(validation_fraction=0.2, seed=2))
    a, b, c = _ids(tmp_path / "a"), _ids(tmp_path / "b"), _ids(tmp_path / "c")
    assert (len(a["train"]), len(a["validation"])) == (40, 10)
    assert not a["train"] & a["validation"]
    assert a == b, "the split does not depend on input order"
    assert a["validation"] != c["validation"], "another seed holds out other intents"
    for fmt in ("trl", "sharegpt"):
        assert len(_lines(tmp_path / "a" / fmt / "validation.jsonl")) == 10


def test_split_holds_out_whole_intents() -> None:
    held = split_intents(["x", "x", "y", "z", "z", "z"], 0.4, seed=0)
    assert len(held) == 1
    assert split_intents(["only"], 0.5, seed=0) == set(), "a single intent stays in train"
    assert len(split_intents([f"i{n}" for n in range(5)], 0.01, seed=0)) == 1, "a non-zero fraction holds out one"


def test_validation_rejects_broken_conversations_with_reasons(tmp_path: Path) -> None:
    empty_turn = make_trace("empty-turn")
    empty_turn.messages[4] = Message(role="assistant", content="")
    orphan_call = make_trace("orphan-call")
    del orphan_call.messages[3]
    path = tmp_path / "traces.jsonl"
    write_traces(path, [make_trace("good"), empty_turn, orphan_call])
    summary = export(path, tmp_path / "out", _cfg())
    assert _all_ids(tmp_path / "out") == {"good"}
    assert summary.rejected == 2
    rejects = {r["id"]: r for r in map(json.loads, _lines(tmp_path / "out" / "rejects.jsonl"))}
    assert rejects["empty-turn"]["line"] == 2
    assert rejects["empty-turn"]["reasons"] == ["message 4 (assistant): empty assistant turn"]
    assert any("await results (c1)" in reason for reason in rejects["orphan-call"]["reasons"])
    assert "rejected by validation or the render check: 2" in (tmp_path / "out" / "README.md").read_text()


def test_parquet_round_trip_gives_the_jsonl_rows_back(mixed: Path, tmp_path: Path) -> None:
    import datasets
    import pyarrow.parquet as pq

    out = tmp_path / "out"
    export(mixed, out, _cfg(include_failed=True, validation_fraction=0.3))
    for split in SPLITS:
        jsonl_rows = [json.loads(line) for line in _lines(out / "openai" / f"{split}.jsonl")]
        assert jsonl_rows
        with_datasets = datasets.load_dataset(
            "parquet", data_files=str(out / "parquet" / f"{split}.parquet"), split="train"
        )
        assert [canonical_from_arrow(r) for r in with_datasets] == jsonl_rows
        with_pyarrow = pq.read_table(out / "parquet" / f"{split}.parquet").to_pylist()
        assert [canonical_from_arrow(r) for r in with_pyarrow] == jsonl_rows
        assert isinstance(with_pyarrow[0]["messages"][2]["tool_calls"][0]["function"]["arguments"], str)


def test_trl_file_loads_with_datasets_and_keeps_arguments_exact(mixed: Path, tmp_path: Path) -> None:
    import datasets

    out = tmp_path / "out"
    export(mixed, out, _cfg(validation_fraction=0.3))
    files = {split: str(out / "trl" / f"{split}.jsonl") for split in SPLITS}
    loaded = datasets.load_dataset("json", data_files=files)
    assert set(loaded) == {"train", "validation"}
    assert loaded["train"].column_names == ["messages", "tools"]  # what SFTTrainer reads for tool-calling data
    written = [json.loads(line) for line in _lines(out / "trl" / "train.jsonl")]
    assert list(loaded["train"]) == written, "no argument keys merged in, no nulls added"
    call = written[0]["messages"][8]["tool_calls"][0]["function"]
    assert call == {"name": "write_file", "arguments": {"path": "/workspace/app.ini", "content": "[app]\nport=8080\n"}}


def test_formats_can_be_chosen(mixed: Path, tmp_path: Path) -> None:
    export(mixed, tmp_path / "out", _cfg(formats=["trl"]))
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "README.md", "export.json", "filtered.jsonl", "rejects.jsonl", "trl",
    ]  # fmt: skip


# --- bad input and atomicity ---------------------------------------------------------------------------------


def _previous_export(tmp_path: Path) -> Path:
    out = tmp_path / "out"
    good = tmp_path / "good.jsonl"
    write_traces(good, [make_trace("before")])
    export(good, out, _cfg(validation_fraction=0.0))
    return out


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(
    ("bad_line", "message"),
    [
        ('{"id": "x", "messages": [', "traces.jsonl:3: not valid JSON"),
        ("[1, 2, 3]", f"traces.jsonl:3: not a Trace (schema v{V}): record"),
        (
            f'{{"schema_version": {V + 1}, "id": "x"}}',
            f"traces.jsonl:3: trace schema version {V + 1} is newer than this ise reads (up to {V})",
        ),
        (
            '{"id": "x", "persona": {}, "domain": "d"}',
            f"traces.jsonl:3: not a Trace (schema v{V}): intent: Field required",
        ),
    ],
)
def test_bad_input_is_one_error_naming_the_line_and_writes_nothing(tmp_path: Path, bad_line: str, message: str) -> None:
    out = _previous_export(tmp_path)
    before = _snapshot(out)
    path = tmp_path / "traces.jsonl"
    write_traces(path, [make_trace("a"), make_trace("b")])
    with path.open("a") as handle:
        handle.write(bad_line + "\n")
        handle.write(make_trace("c").model_dump_json() + "\n")
    with pytest.raises(InputError) as caught:
        export(path, out, _cfg())
    assert message in str(caught.value)
    assert len(str(caught.value).splitlines()) == 1
    assert _snapshot(out) == before, "the previous export is untouched"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == [], "no staging left behind"


def test_extra_field_from_a_newer_writer_is_named(tmp_path: Path) -> None:
    record = json.loads(make_trace("a").model_dump_json())
    record["judge_score"] = 0.9
    path = tmp_path / "traces.jsonl"
    path.write_text(json.dumps(record) + "\n")
    with pytest.raises(InputError, match=rf"traces.jsonl:1: not a Trace \(schema v{V}\): judge_score: Extra inputs"):
        export(path, tmp_path / "out", _cfg())
    assert not (tmp_path / "out").exists()


def test_duplicate_trace_ids_are_an_error(tmp_path: Path) -> None:
    path = tmp_path / "traces.jsonl"
    write_traces(path, [make_trace("a"), make_trace("b"), make_trace("a")])
    with pytest.raises(InputError, match=r"traces.jsonl:3: duplicate trace id 'a' \(first on line 1\)"):
        export(path, tmp_path / "out", _cfg())


def test_failure_while_writing_keeps_the_previous_export(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fault injection: the Parquet writer dies after the JSONL files were written."""
    out = _previous_export(tmp_path)
    before = _snapshot(out)
    path = tmp_path / "traces.jsonl"
    write_traces(path, [make_trace("new")])

    def disk_full(*_: Any, **__: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(export_module, "write_parquet", disk_full)
    with pytest.raises(OSError, match="No space left"):
        export(path, out, _cfg())
    assert _snapshot(out) == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_refuses_to_replace_a_folder_it_did_not_write(tmp_path: Path, mixed: Path) -> None:
    precious = tmp_path / "project"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    with pytest.raises(IseError, match="not an ise export folder"):
        export(mixed, precious, _cfg())
    assert (precious / "notes.txt").read_text() == "keep me"


def test_rerun_replaces_the_export(mixed: Path, tmp_path: Path) -> None:
    out = _previous_export(tmp_path)
    export(mixed, out, _cfg(include_failed=True))
    assert "before" not in _all_ids(out)
    assert "failed-1" in _all_ids(out)


def test_cli_export_reports_counts_and_bad_input_exits_2(mixed: Path, tmp_path: Path) -> None:
    ise = [sys.executable, "-c", "from ise.cli import main; main()"]
    out = tmp_path / "out"
    done = subprocess.run(
        [
            *ise,
            "export",
            "-i",
            str(mixed),
            "-o",
            str(out),
            "--include-failed",
            "--no-render-check",
            "--tokens",
            "approx",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert _all_ids(out) >= {"failed-1", "ok-1"}
    assert "8 rows" in done.stdout + done.stderr
    broken = tmp_path / "broken.jsonl"
    broken.write_text(mixed.read_text() + "not json\n")
    failed = subprocess.run(
        [*ise, "export", "-i", str(broken), "-o", str(tmp_path / "out2")], capture_output=True, text=True, check=False
    )
    assert failed.returncode == 2
    assert failed.stderr.strip().splitlines() == [
        f"error: {broken}:11: not valid JSON (Expecting value: line 1 column 1 (char 0))"
    ]
    assert not (tmp_path / "out2").exists()


def test_trace_round_trips_through_the_factory_file(tmp_path: Path) -> None:
    """Guard for the helpers above: the factory writes lines that Trace reads back unchanged."""
    trace = make_trace("x")
    write_traces(tmp_path / "t.jsonl", [trace])
    assert Trace.model_validate_json(_lines(tmp_path / "t.jsonl")[0]) == trace


def test_parallel_and_serial_exports_are_identical(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Spans small enough that the input makes many worker jobs, so the forked workers really run."""
    monkeypatch.setattr(trace_file, "SPAN_BYTES", 64 << 10)
    traces = [make_trace(f"t{i:04d}", passed=i % 4 != 0, domain=("a", "b", "c")[i % 3]) for i in range(450)]
    write_traces(tmp_path / "traces.jsonl", traces)
    export(tmp_path / "traces.jsonl", tmp_path / "serial", _cfg(), processes=1)
    export(tmp_path / "traces.jsonl", tmp_path / "parallel", _cfg(), processes=2)
    assert _snapshot(tmp_path / "serial") == _snapshot(tmp_path / "parallel")
    assert sum(json.loads((tmp_path / "parallel" / "export.json").read_text())["rows"].values()) == 337


def test_spans_cover_every_line_once(tmp_path: Path) -> None:
    path = tmp_path / "lines.jsonl"
    lines = [f'{{"n": {i}, "pad": "{"x" * (i * 37 % 500)}"}}' for i in range(2000)]
    lines[700] = ""
    lines[1500] = '{"long": "' + "y" * 300_000 + '"}'
    path.write_text("\n".join(lines))  # no newline at the end
    spans = list(trace_file.file_spans(path, size=4096))
    assert len(spans) > 100
    read = [(lineno, raw.decode()) for span in spans for lineno, raw in trace_file.read_span(span)]
    assert read == [(i + 1, line) for i, line in enumerate(lines) if line]


def test_bad_line_deep_in_a_parallel_read_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(trace_file, "SPAN_BYTES", 64 << 10)
    path = tmp_path / "traces.jsonl"
    write_traces(path, [make_trace(f"t{i:04d}") for i in range(450)])
    lines = path.read_text().splitlines()
    lines[411] = lines[411].replace('"turns":2', '"turns":"two"')
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match=rf"traces.jsonl:412: not a Trace \(schema v{V}\): turns: Input should be"):
        export(path, tmp_path / "out", _cfg(), processes=2)
    assert not (tmp_path / "out").exists()
