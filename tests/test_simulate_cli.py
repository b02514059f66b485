"""`ise simulate` as a user runs it: bad input is one clear line and nothing written; a scripted run end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from simulate_support import CARD, GOOD_WORLD, docker_sandboxes, intent

from ise.runner import errors_path
from ise.sandbox import lifecycle
from ise.sandbox.docker_api import shared_api
from ise.stages.simulate import stats_path

ISE = Path(sys.executable).with_name("ise")


def ise(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ISE, *map(str, args)], capture_output=True, text=True, timeout=300, check=False)


def assert_nothing_written(output: Path) -> None:
    assert not output.exists()
    assert not errors_path(output).exists()
    assert not stats_path(output).exists()


def test_a_line_that_is_not_json_is_named_and_nothing_is_written(tmp_path: Path) -> None:
    intents = tmp_path / "intents.jsonl"
    intents.write_text(intent("a").model_dump_json() + "\n" + '{"id": "b", "persona": \n')
    output = tmp_path / "plans.jsonl"
    done = ise("simulate", "-i", intents, "-o", output, "-c", "llm.kind=scripted")
    assert done.returncode == 2
    assert f"error: {intents}:2: invalid Intent: record: Invalid JSON" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert_nothing_written(output)


def test_a_line_that_breaks_the_schema_is_named_with_its_field(tmp_path: Path) -> None:
    broken = intent("b").model_dump(exclude={"request"})
    intents = tmp_path / "intents.jsonl"
    intents.write_text(intent("a").model_dump_json() + "\n\n" + json.dumps(broken) + "\n")
    output = tmp_path / "plans.jsonl"
    done = ise("simulate", "-i", intents, "-o", output, "-c", "llm.kind=scripted")
    assert done.returncode == 2
    assert done.stderr.strip() == f"error: {intents}:3: invalid Intent: request: Field required"
    assert_nothing_written(output)


def test_an_empty_or_missing_input_is_an_error(tmp_path: Path) -> None:
    empty = tmp_path / "intents.jsonl"
    empty.write_text("\n")
    assert (
        ise("simulate", "-i", empty, "-o", tmp_path / "p.jsonl").stderr.strip() == f"error: {empty}: no intents to plan"
    )
    missing = ise("simulate", "-i", tmp_path / "nope.jsonl", "-o", tmp_path / "p.jsonl")
    assert missing.returncode == 2
    assert "cannot read" in missing.stderr
    assert_nothing_written(tmp_path / "p.jsonl")


@pytest.mark.docker
def test_a_missing_sandbox_image_says_how_to_build_it(tmp_path: Path) -> None:
    with docker_sandboxes():  # the engine answers; only the image is missing
        intents = tmp_path / "intents.jsonl"
        intents.write_text(intent("a").model_dump_json() + "\n")
        output = tmp_path / "plans.jsonl"
        done = ise(
            "simulate", "-i", intents, "-o", output, "-c", "llm.kind=scripted", "-c", "sandbox.image=ise-nope:latest"
        )
    assert done.returncode == 2
    assert (
        done.stderr.strip() == "error: sandbox image ise-nope:latest not found: build it with `ise sandbox build nope` "
        "(from a source checkout holding sandbox_images/nope)"
    )
    assert_nothing_written(output)


@pytest.mark.docker
def test_a_scripted_run_end_to_end(tmp_path: Path) -> None:
    intents = tmp_path / "intents.jsonl"
    intents.write_text(intent("a").model_dump_json() + "\n")
    script = tmp_path / "replies.jsonl"
    script.write_text(json.dumps({"json": GOOD_WORLD}) + "\n" + json.dumps({"json": CARD}) + "\n")
    output = tmp_path / "out" / "plans.jsonl"
    with docker_sandboxes():
        done = ise(
            "simulate", "-i", intents, "-o", output, "-c", "llm.kind=scripted", "-c", f"llm.script={script}",
            "--workers", "2",
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    [plan] = [json.loads(line) for line in output.read_text().splitlines()]
    assert (plan["id"], plan["attempts"], plan["model"]) == ("a", 1, "scripted")
    stats = json.loads(stats_path(output).read_text())
    assert (stats["plans"], stats["validation_pass_rate"]) == (1, 1.0)
    assert "validation pass rate" in done.stderr
    assert errors_path(output).read_text() == ""
    leaked = [c for c in lifecycle.ours(shared_api()) if c["Labels"][lifecycle.LABEL_RUN].startswith("simulate-")]
    assert leaked == []
