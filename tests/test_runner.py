"""The stage runner: resume after an interruption (including kill -9 of a real process), errors captured per record,
systemic failures stop the stage."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from ise.errors import IseError
from ise.jsonl import read_dicts
from ise.records import Record
from ise.runner import StageAborted, errors_path, run_stage


class Item(Record):
    id: str
    value: int


class Done(Record):
    id: str
    square: int


def square(item: Item) -> Done:
    return Done(id=item.id, square=item.value**2)


def items(n: int) -> list[Item]:
    return [Item(id=f"item-{i}", value=i) for i in range(n)]


def output_ids(path: Path) -> list[str]:
    return [record["id"] for record in read_dicts(path)]


def test_processes_everything_with_workers(tmp_path: Path) -> None:
    output = tmp_path / "out.jsonl"
    stats = run_stage(items(50), square, output, workers=4, label=lambda d: "even" if d.square % 2 == 0 else "odd")
    assert (stats.total, stats.ok, stats.errors, stats.skipped) == (50, 50, 0, 0)
    assert stats.labels == {"even": 25, "odd": 25}
    squares = {record["id"]: record["square"] for record in read_dicts(output)}
    assert squares == {f"item-{i}": i * i for i in range(50)}


def test_rerun_skips_done_and_repairs_a_torn_line(tmp_path: Path) -> None:
    output = tmp_path / "out.jsonl"
    run_stage(items(10), square, output)
    lines = output.read_text().splitlines(keepends=True)
    output.write_text("".join(lines[:4]) + lines[4][:15])  # as if killed in the middle of a write
    calls: list[str] = []

    def tracked(item: Item) -> Done:
        calls.append(item.id)
        return square(item)

    stats = run_stage(items(10), tracked, output)
    assert stats.skipped == 4
    assert sorted(calls) == sorted(f"item-{i}" for i in range(4, 10))
    ids = output_ids(output)
    assert sorted(ids) == sorted(f"item-{i}" for i in range(10))
    assert len(ids) == len(set(ids))


def test_failures_are_recorded_and_retried_on_rerun(tmp_path: Path) -> None:
    output = tmp_path / "out.jsonl"
    flaky = {"item-3", "item-7"}

    def sometimes(item: Item) -> Done:
        if item.id in flaky:
            raise ValueError(f"cannot square {item.id}")
        return square(item)

    stats = run_stage(items(10), sometimes, output)
    assert (stats.ok, stats.errors) == (8, 2)
    errors = list(read_dicts(errors_path(output)))
    assert {error["id"] for error in errors} == flaky
    assert all(error["error"] == "ValueError" and "cannot square" in error["message"] for error in errors)
    flaky.clear()
    stats = run_stage(items(10), sometimes, output)
    assert (stats.skipped, stats.ok) == (8, 2)
    assert sorted(output_ids(output)) == sorted(f"item-{i}" for i in range(10))


def test_consecutive_failures_abort_the_stage(tmp_path: Path) -> None:
    def broken(item: Item) -> Done:
        raise ConnectionError("endpoint down")

    with pytest.raises(StageAborted, match=r"3 records failed in a row.*endpoint down"):
        run_stage(items(10), broken, tmp_path / "out.jsonl", max_consecutive_errors=3)
    assert len(list(read_dicts(errors_path(tmp_path / "out.jsonl")))) == 3


def test_duplicate_input_ids_are_refused(tmp_path: Path) -> None:
    with pytest.raises(IseError, match="duplicate input id 'item-1'"):
        run_stage([*items(3), Item(id="item-1", value=9)], square, tmp_path / "out.jsonl")
    assert not (tmp_path / "out.jsonl").exists()


WORKER = """
import sys, time
from pathlib import Path
from ise.records import Record
from ise.runner import run_stage

class Item(Record):
    id: str
    value: int

def slow_square(item):
    time.sleep(0.02)
    return Item(id=item.id, value=item.value ** 2)

run_stage([Item(id=f"item-{i}", value=i) for i in range(int(sys.argv[2]))], slow_square, Path(sys.argv[1]), workers=3)
"""


def test_kill_9_mid_run_then_rerun_loses_nothing_and_duplicates_nothing(tmp_path: Path) -> None:
    output, n = tmp_path / "out.jsonl", 400
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    process = subprocess.Popen([sys.executable, str(script), str(output), str(n)], env=env)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if output.exists() and output.read_bytes().count(b"\n") >= 60:
                break
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    written = output.read_bytes().count(b"\n")
    assert 60 <= written < n, "the kill must land mid-run"

    rerun = subprocess.run([sys.executable, str(script), str(output), str(n)], env=env, timeout=120, check=False)
    assert rerun.returncode == 0
    ids = output_ids(output)
    counts = Counter(ids)
    assert set(counts) == {f"item-{i}" for i in range(n)}  # no loss
    assert max(counts.values()) == 1  # no duplicates
    values = {record["id"]: record["value"] for record in read_dicts(output)}
    assert all(values[f"item-{i}"] == i * i for i in range(n))
