"""Hostile input files, through the real CLI: bad encodings, binary configs, traces from a newer ise, duplicate ids,
empty inputs, an unreachable endpoint. Each ends with one line naming the file (and line) and the cause, exit
code 2, and nothing written; export, report and view agree on what a valid traces file is."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from hostile_support import (
    EXPORT_FLAGS,
    intents_file,
    ise,
    one_line_error,
    plans_file,
    snapshot,
    traces_file,
    without_sandboxes,
    write_lines,
)
from trace_factory import make_trace

from ise.jsonl import done_ids
from ise.records import TRACE_SCHEMA_VERSION

TAXONOMY = Path(__file__).resolve().parents[1] / "configs" / "taxonomy"
BAD_UTF8 = b'{"id": "x", "request": "caf\xe9 \xff"}'


# --- encodings ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stage", ["simulate", "execute"])
def test_invalid_utf8_in_the_input_names_file_and_line(tmp_path: Path, stage: str) -> None:
    source = (intents_file if stage == "simulate" else plans_file)(tmp_path / "in.jsonl")
    with source.open("ab") as handle:
        handle.write(BAD_UTF8 + b"\n")
    one_line_error(
        ise(stage, "-i", source, "-o", tmp_path / "out.jsonl"), f"{source}:3: not valid UTF-8 (byte 28 of the line)"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]


@pytest.mark.parametrize("stage", ["simulate", "execute"])
def test_invalid_utf8_in_an_existing_output_names_it_and_keeps_it(tmp_path: Path, stage: str) -> None:
    source = (intents_file if stage == "simulate" else plans_file)(tmp_path / "in.jsonl")
    output = write_lines(tmp_path / "out.jsonl", ['{"id": "intent-0"}', BAD_UTF8])
    before = snapshot(tmp_path)
    line = one_line_error(ise(stage, "-i", source, "-o", output), f"{output}:2: not valid UTF-8", "existing output")
    assert "fix or move it" in line
    assert snapshot(tmp_path) == before


def test_a_torn_last_line_of_an_output_is_no_error(tmp_path: Path) -> None:
    """What kill -9 leaves (no newline, cut inside a UTF-8 character) is resume's to repair, not an error."""
    output = tmp_path / "out.jsonl"
    output.write_bytes(b'{"id": "a"}\n{"id": "caf\xc3')
    assert done_ids(output) == {"a"}


@pytest.mark.parametrize("command", ["export", "report", "view"])
def test_invalid_utf8_in_traces_names_file_and_line(tmp_path: Path, command: str) -> None:
    traces = traces_file(tmp_path / "run" / "traces.jsonl")
    with traces.open("ab") as handle:
        handle.write(BAD_UTF8 + b"\n")
    one_line_error(_reader(command, traces, tmp_path / "out"), f"{traces}:3: not valid UTF-8")
    assert not (tmp_path / "out").exists()


# --- configs and taxonomies -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (bytes(range(256)) * 4, "is not UTF-8 text (byte 129)"),
        (b"\x7fELF\x02\x01\x01\x00\x00\x00", "is not valid YAML"),
        (b"[" * 5000, "is not valid YAML"),
        (b"- just\n- a list\n", "must be a mapping"),
    ],
)
def test_a_binary_or_broken_config_is_one_line(tmp_path: Path, content: bytes, message: str) -> None:
    config = tmp_path / "config.yaml"
    config.write_bytes(content)
    traces = traces_file(tmp_path / "traces.jsonl")
    one_line_error(ise("export", "-c", config, "-i", traces, "-o", tmp_path / "out"), f"config {config}", message)
    assert not (tmp_path / "out").exists()


def test_a_config_that_is_a_folder_is_one_line(tmp_path: Path) -> None:
    one_line_error(ise("simulate", "-c", tmp_path, "-i", tmp_path / "x", "-o", tmp_path / "y"), "cannot read config")


def test_a_binary_taxonomy_file_is_one_line(tmp_path: Path) -> None:
    taxonomy = shutil.copytree(TAXONOMY, tmp_path / "taxonomy")
    (taxonomy / "tasks.yaml").write_bytes(bytes(range(256)))
    output = tmp_path / "out" / "intents.jsonl"
    result = ise("intents", "-c", f"intents.taxonomy={taxonomy}", "-c", "intents.embedding_model=hashing", "-o", output)
    one_line_error(result, f"taxonomy file {taxonomy / 'tasks.yaml'} is not UTF-8 text")
    assert not (tmp_path / "out").exists()


def test_workers_below_one_are_refused(tmp_path: Path) -> None:
    intents = intents_file(tmp_path / "intents.jsonl")
    usage = ise("simulate", "-i", intents, "-o", tmp_path / "plans.jsonl", "--workers", "0")
    assert usage.exit_code == 2
    assert "Invalid value for '--workers'" in usage.output
    assert "greater than or equal to 1" in usage.output
    config = ise("simulate", "-c", "workers=-3", "-i", intents, "-o", tmp_path / "plans.jsonl")
    one_line_error(config, "config: workers: Input should be greater than or equal to 1")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["intents.jsonl"]


# --- one reader of traces: schema versions, duplicates, empty files --------------------------------------------


def _reader(command: str, traces: Path, out: Path) -> Any:
    if command == "export":
        return ise("export", "-i", traces, "-o", out, *EXPORT_FLAGS)
    if command == "report":
        return ise("report", traces.parent, "-o", out / "report.html")
    return ise("view", traces, "-o", out / "viewer.html")


@pytest.mark.parametrize("command", ["export", "report", "view"])
def test_a_trace_from_a_newer_ise_is_refused_by_every_reader(tmp_path: Path, command: str) -> None:
    newer = json.loads(make_trace("t-new").model_dump_json())
    newer["schema_version"] = TRACE_SCHEMA_VERSION + 1
    traces = traces_file(tmp_path / "run" / "traces.jsonl")
    write_lines(tmp_path / "run" / "with-field.jsonl", [json.dumps({**newer, "judge": {"score": 1}})])
    with traces.open("a") as handle:
        handle.write(json.dumps(newer) + "\n")
    message = f"trace schema version {TRACE_SCHEMA_VERSION + 1} is newer than this ise reads"
    one_line_error(_reader(command, traces, tmp_path / "out"), f"{traces}:3: {message}", "upgrade ise")
    extra = tmp_path / "run" / "with-field.jsonl"
    if command != "report":  # the report reads RUN/traces.jsonl only
        one_line_error(_reader(command, extra, tmp_path / "out"), f"{extra}:1: {message}")
    assert not (tmp_path / "out").exists()


def _version_1(trace_id: str) -> dict[str, Any]:
    """A trace as version 1 wrote it: no check kinds, no plan hash or profile."""
    record: dict[str, Any] = json.loads(make_trace(trace_id).model_dump_json())
    record["schema_version"] = 1
    for key in ("plan_sha256", "profile"):
        record["env"].pop(key, None)
    for check in record["outcome"]["checks"]:
        for key in ("kind", "answer", "expected", "reason"):
            check.pop(key, None)
    return record


@pytest.mark.parametrize("command", ["export", "report", "view"])
def test_an_older_trace_is_read_as_it_is(tmp_path: Path, command: str) -> None:
    traces = write_lines(tmp_path / "run" / "traces.jsonl", [json.dumps(_version_1(f"old-{i}")) for i in range(3)])
    result = _reader(command, traces, tmp_path / "out")
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("command", ["export", "report", "view"])
def test_duplicate_trace_ids_are_refused_alike(tmp_path: Path, command: str) -> None:
    traces = traces_file(tmp_path / "run" / "traces.jsonl")
    with traces.open("a") as handle:
        handle.write(make_trace("t-0").model_dump_json() + "\n")
    message = f"{traces}:3: duplicate trace id 't-0' (first on line 1)"
    one_line_error(_reader(command, traces, tmp_path / "out"), message)
    assert not (tmp_path / "out").exists()


def test_an_empty_traces_file_is_nothing_to_export_or_view_but_a_run_to_report(tmp_path: Path) -> None:
    traces = write_lines(tmp_path / "run" / "traces.jsonl", ["", "  "])
    one_line_error(_reader("export", traces, tmp_path / "out"), f"{traces}: no traces in the file, nothing to export")
    one_line_error(_reader("view", traces, tmp_path / "out"), f"no traces to view: {traces} holds none")
    assert not (tmp_path / "out").exists()
    assert _reader("report", traces, tmp_path / "out").exit_code == 0


# --- export validation: NUL bytes and protocol markers -------------------------------------------------------


def _with_tool_output(trace_id: str, content: str) -> str:
    """The trace with the first tool result replaced."""
    trace = make_trace(trace_id)
    first = next(i for i, m in enumerate(trace.messages) if m.role == "tool")
    messages = list(trace.messages)
    messages[first] = messages[first].model_copy(update={"content": content})
    return trace.model_copy(update={"messages": messages}).model_dump_json()


def test_export_rejects_nul_bytes_and_protocol_markers_with_reasons(tmp_path: Path) -> None:
    marker = "0123456789abcdef0123456789abcdef"
    traces = write_lines(
        tmp_path / "traces.jsonl",
        [
            _with_tool_output("clean", "main.py\nrequirements.txt\n"),
            _with_tool_output("md5sum", f"{marker}  main.py\n"),
            _with_tool_output("nul", "ELF\x00\x01binary"),
            _with_tool_output("leak", f"{marker}\nmain.py\n"),
        ],
    )
    out = tmp_path / "out"
    assert ise("export", "-i", traces, "-o", out, "-c", "export.validation_fraction=0", *EXPORT_FLAGS).exit_code == 0
    kept = [json.loads(line)["id"] for line in (out / "openai" / "train.jsonl").read_text().splitlines()]
    assert kept == ["clean", "md5sum"]
    rejects = {r["id"]: r["reasons"] for r in map(json.loads, (out / "rejects.jsonl").read_text().splitlines())}
    assert rejects["nul"] == ["message 3 (tool): NUL byte in the content"]
    leak = "message 3 (tool): tool result starts with a 32-hex-digit token (a sandbox protocol marker?)"
    assert rejects["leak"] == [leak]
    assert json.loads((out / "export.json").read_text())["rejected"] == 2
    assert b"\\u0000" not in (out / "openai" / "train.jsonl").read_bytes()


# --- an unreachable endpoint ---------------------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _unreachable() -> list[str]:
    url = f"http://127.0.0.1:{_closed_port()}/v1"
    settings = ["llm.kind=openai", f"llm.base_url={url}", "llm.max_retries=1", "llm.retry_backoff_s=0.05"]
    return [arg for setting in [*settings, "llm.timeout_s=2"] for arg in ("-c", setting)]


def test_intents_with_the_endpoint_down_fails_in_bounded_time(tmp_path: Path) -> None:
    output = tmp_path / "out" / "intents.jsonl"
    started = time.monotonic()
    settings = ["-c", "intents.embedding_model=hashing", "-c", "intents.max_attempts=1", *_unreachable()]
    done = subprocess.run(
        [Path(sys.executable).with_name("ise"), "intents", "-o", output, "-n", "3", *settings],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert time.monotonic() - started < 60
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: nothing produced: all 3 records failed on infrastructure")
    assert "cannot reach" in lines[0]
    assert "rerun to resume" in lines[0]
    assert not output.exists(), "no pool"
    assert (tmp_path / "out" / "intents.raw.jsonl").read_bytes() == b"", "nothing realised"
    assert len((tmp_path / "out" / "intents.raw.errors.jsonl").read_text().splitlines()) == 3


def test_simulate_with_the_endpoint_down_fails_in_bounded_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    without_sandboxes(monkeypatch)
    intents = intents_file(tmp_path / "intents.jsonl", n=3)
    output = tmp_path / "plans.jsonl"
    started = time.monotonic()
    result = ise("simulate", "-i", intents, "-o", output, *_unreachable(), "-c", "simulate.max_attempts=1")
    assert time.monotonic() - started < 60
    one_line_error(result, "nothing produced: all 3 records failed on infrastructure", "cannot reach")
    assert output.read_bytes() == b""
    assert len((tmp_path / "plans.errors.jsonl").read_text().splitlines()) == 3
