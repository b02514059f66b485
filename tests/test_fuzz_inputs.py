"""Fuzzing every stage's input through the real CLI: a few hundred mutated lines each (truncations, byte flips, bad
UTF-8, wrong types, huge values, deep nesting) of intents for simulate, plans for execute, traces for export, report
and view, and a config file. Whatever the mutation, the command either works or ends with exit code 2 and one
`error:` line (never a traceback), and never leaves a partial output: after an error nothing was written, after
success every output line is whole JSON. Bad input is rejected before any sandbox starts (none can, here: the seam
fails every start) and the LLM is scripted, so this runs in seconds."""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hostile_support import EXPORT_FLAGS, intent, ise, plan, without_sandboxes
from trace_factory import make_trace
from typer.testing import Result

MUTATIONS = 200
SEED = 1234
HOSTILE: list[Any] = [
    None,
    True,
    0,
    -1,
    -(2**70),
    2**80,
    1e308,
    -1e308,
    0.5,
    "",
    "x",
    "\x00",
    "\u2028",
    "A" * 200_000,
    [],
    {},
    [None],
    {"id": {}},
    [[[[[[[[]]]]]]]],
]


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, (*prefix, index))


def _replaced(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    head, *rest = path
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[head] = _replaced(value[head], tuple(rest), new)
    return copy


def mutate(line: bytes, rng: random.Random) -> bytes:
    """One hostile variant of a JSON line."""
    kind = rng.randrange(9)
    if kind == 0:  # truncation
        return line[: rng.randrange(len(line))]
    if kind == 1:  # byte flips, any byte value
        data = bytearray(line)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        return bytes(data)
    if kind == 2:  # bad UTF-8 spliced in
        cut = rng.randrange(len(line))
        return line[:cut] + rng.choice([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf4\x90\x80\x80"]) + line[cut:]
    if kind == 3:  # a deep nest or a non-object
        return rng.choice([b"[" * 100_000, b'{"a":' * 50_000, b"123", b'"text"', b"null", b"[]", b"{}"])
    obj = json.loads(line)
    path = rng.choice(list(_paths(obj))[1:])
    if kind == 4:  # a key dropped
        parent = _get(obj, path[:-1])
        if isinstance(parent, dict):
            return json.dumps(_replaced(obj, path[:-1], {k: v for k, v in parent.items() if k != path[-1]})).encode()
    if kind == 5:  # an unknown key
        return json.dumps({**obj, rng.choice(["extra", "schema_version", "id"]): rng.choice(HOSTILE)}).encode()
    return json.dumps(_replaced(obj, path, rng.choice(HOSTILE)), ensure_ascii=rng.random() < 0.5).encode()


def _get(value: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        value = value[part]
    return value


def _check(result: Result, outputs: list[Path]) -> None:
    """Works, or one line and nothing written; never a traceback (ise() raises on any uncaught exception)."""
    assert result.exit_code in (0, 2), result.output
    if result.exit_code == 2:
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith("error: "), result.stderr
    for output in outputs:
        files = [output] if output.suffix else sorted(p for p in output.rglob("*.jsonl"))
        for path in files:
            if path.exists() and path.suffix == ".jsonl":
                data = path.read_bytes()
                assert data.endswith(b"\n") or not data, f"{path} ends in a partial line"
                for raw in data.splitlines():
                    json.loads(raw)


def _fuzz(tmp_path: Path, good: list[bytes], run: Callable[[Path, Path], tuple[Result, list[Path]]]) -> dict[int, int]:
    """Write each mutated file (the good lines, one mutated) and run the command on it in a fresh folder."""
    rng = random.Random(SEED)
    exits: dict[int, int] = {}
    for number in range(MUTATIONS):
        folder = tmp_path / f"m{number:03d}"
        folder.mkdir()
        lines = list(good)
        template = json.loads(rng.choice(good))
        template["id"] = f"mutant-{number}"  # so that a mutation that keeps the line valid is no duplicate
        lines.insert(rng.randrange(len(lines) + 1), mutate(json.dumps(template).encode(), rng))
        source = folder / "in.jsonl"
        source.write_bytes(b"".join(line.replace(b"\n", b" ") + b"\n" for line in lines))
        result, outputs = run(source, folder)
        _check(result, outputs)
        if result.exit_code == 2 and str(source) in result.stderr:
            assert sorted(p.name for p in folder.iterdir()) == ["in.jsonl"], "bad input, yet something was written"
        exits[result.exit_code] = exits.get(result.exit_code, 0) + 1
    return exits


def test_fuzz_simulate_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    without_sandboxes(monkeypatch)
    good = [intent(f"intent-{i}").model_dump_json().encode() for i in range(2)]

    def run(source: Path, folder: Path) -> tuple[Result, list[Path]]:
        output = folder / "plans.jsonl"
        return ise("simulate", "-i", source, "-o", output, "-c", "llm.kind=scripted"), [output]

    exits = _fuzz(tmp_path, good, run)
    assert exits.get(2, 0) > MUTATIONS // 2, exits


def test_fuzz_execute_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    without_sandboxes(monkeypatch)
    good = [plan(f"plan-{i}").model_dump_json().encode() for i in range(2)]

    def run(source: Path, folder: Path) -> tuple[Result, list[Path]]:
        output = folder / "traces.jsonl"
        return ise("execute", "-i", source, "-o", output, "-c", "llm.kind=scripted"), [output]

    exits = _fuzz(tmp_path, good, run)
    assert exits.get(2, 0) > MUTATIONS // 2, exits


@pytest.mark.parametrize("command", ["export", "report", "view"])
def test_fuzz_traces(tmp_path: Path, command: str) -> None:
    good = [make_trace(f"t-{i}").model_dump_json().encode() for i in range(2)]

    def run(source: Path, folder: Path) -> tuple[Result, list[Path]]:
        traces = source.rename(folder / "traces.jsonl")
        if command == "export":
            return ise("export", "-i", traces, "-o", folder / "sft", *EXPORT_FLAGS), [folder / "sft"]
        if command == "report":
            return ise("report", folder, "-o", folder / "report.html"), []
        return ise("view", traces, "-o", folder / "viewer.html"), []

    exits = _fuzz(tmp_path, good, run)  # the same seed: every reader sees the same files
    assert exits.get(2, 0) > MUTATIONS // 2, exits


CONFIG = """\
seed: 7
workers: 2
llm:
  kind: embedded
  temperature: 0.3
models:
  user:
    temperature: 0.2
intents:
  count: 5
  domains: [data, logs]
export:
  validation_fraction: 0.2
  formats: [openai, trl]
sandbox:
  image: ise-workspace:latest
"""
YAML_VALUES = [
    "~",
    "-1",
    "1e999",
    "[",
    "{",
    "'",
    "!!python/object:os.system",
    "&a [*a]",
    "0x_",
    "\x00",
    "yes",
    "{a: 1}",
]


def mutate_yaml(text: str, rng: random.Random) -> bytes:
    lines = text.splitlines()
    index = rng.randrange(len(lines))
    line = lines[index]
    kind = rng.randrange(5)
    if kind == 0:
        lines[index] = line[: rng.randrange(len(line) + 1)]
    elif kind == 1 and ":" in line:
        lines[index] = line.split(":", 1)[0] + ": " + rng.choice(YAML_VALUES)
    elif kind == 2:
        lines[index] = " " * rng.randint(1, 5) + line
    elif kind == 3:
        lines.insert(index, line)
    else:
        data = bytearray(text.encode())
        data[rng.randrange(len(data))] = rng.randrange(256)
        return bytes(data)
    return ("\n".join(lines) + "\n").encode()


def test_fuzz_config(tmp_path: Path) -> None:
    traces = tmp_path / "traces.jsonl"
    traces.write_text(make_trace("t-0").model_dump_json() + "\n")
    rng = random.Random(SEED)
    exits: dict[int, int] = {}
    for number in range(MUTATIONS):
        config = tmp_path / f"c{number:03d}.yaml"
        config.write_bytes(mutate_yaml(CONFIG, rng))
        out = tmp_path / f"out{number:03d}"
        result = ise("export", "-c", config, "-i", traces, "-o", out, *EXPORT_FLAGS)
        _check(result, [out])
        if result.exit_code == 2:
            assert not out.exists()
        else:
            assert (out / "export.json").exists()
        exits[result.exit_code] = exits.get(result.exit_code, 0) + 1
    assert exits.get(2, 0) > MUTATIONS // 4, exits
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == [], "no staging folder left"
