"""Hostile paths, through the real CLI: no command can write over its input or a run's data, and an output that
cannot be written (read-only folder, a file where a folder should be, a folder where a file should be) is one line,
exit code 2, with nothing written and no temporary file left behind."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from hostile_support import (
    EXPORT_FLAGS,
    intents_file,
    ise,
    one_line_error,
    plans_file,
    read_only_folder,
    snapshot,
    traces_file,
)

# --- output = input -------------------------------------------------------------------------------------------


def test_view_and_report_never_write_over_the_traces(tmp_path: Path) -> None:
    traces = traces_file(tmp_path / "run" / "traces.jsonl")
    before = snapshot(tmp_path)
    one_line_error(ise("view", traces, "-o", traces), "refusing to write an HTML page", str(traces))
    one_line_error(ise("report", traces.parent, "-o", traces), "refusing to write an HTML page")
    one_line_error(ise("report", traces.parent, "-o", tmp_path / "run" / "intents.stats.json"), ".json")
    assert snapshot(tmp_path) == before


def test_a_page_never_replaces_a_file_that_is_not_a_page(tmp_path: Path) -> None:
    run = traces_file(tmp_path / "run" / "traces.jsonl").parent
    card = run / "sft" / "README.md"
    card.parent.mkdir()
    card.write_text("# my dataset card\n")
    os.link(run / "traces.jsonl", run / "linked.html")  # a hard link to the traces, named like a page
    before = snapshot(tmp_path)
    one_line_error(ise("report", run, "-o", card), "is not an HTML page")
    one_line_error(ise("view", run, "-o", run / "linked.html"), "is an input of this command", "same file")
    assert snapshot(tmp_path) == before
    assert ise("view", run, "-o", run / "page.html").exit_code == 0
    assert ise("view", run, "-o", run / "page.html").exit_code == 0, "its own page it replaces"


@pytest.mark.parametrize("stage", ["simulate", "execute"])
def test_a_stage_refuses_its_input_as_output(tmp_path: Path, stage: str) -> None:
    source = (intents_file if stage == "simulate" else plans_file)(tmp_path / "in.jsonl")
    os.link(source, tmp_path / "hard-link.jsonl")
    before = snapshot(tmp_path)
    one_line_error(ise(stage, "-i", source, "-o", source), f"output {source} is an input of this command")
    one_line_error(ise(stage, "-i", source, "-o", tmp_path / "hard-link.jsonl"), "same file as")
    one_line_error(ise(stage, "-i", source, "-o", tmp_path / "." / "in.jsonl"), "is an input")
    assert snapshot(tmp_path) == before


def test_export_refuses_its_input_and_a_folder_holding_it(tmp_path: Path) -> None:
    traces = traces_file(tmp_path / "run" / "traces.jsonl")
    inside = traces_file(tmp_path / "run" / "sft" / "openai" / "train.jsonl")
    (tmp_path / "run" / "sft" / "export.json").write_text("{}\n")
    before = snapshot(tmp_path)
    one_line_error(ise("export", "-i", traces, "-o", traces, *EXPORT_FLAGS), "is an input of this command")
    one_line_error(ise("export", "-i", inside, "-o", tmp_path / "run" / "sft", *EXPORT_FLAGS), "holds the input")
    assert snapshot(tmp_path) == before


def test_config_and_taxonomy_files_are_inputs_too(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("seed: 3\n")
    before = snapshot(tmp_path)
    one_line_error(ise("intents", "-c", config, "-o", config), "is an input of this command")
    one_line_error(ise("simulate", "-c", config, "-i", intents_file(tmp_path / "i.jsonl"), "-o", config), "input")
    taxonomy = Path(__file__).resolve().parents[1] / "configs" / "taxonomy"
    tasks = taxonomy / "tasks.yaml"
    kept = tasks.read_bytes()
    one_line_error(ise("intents", "-c", f"intents.taxonomy={taxonomy}", "-o", tasks), f"{tasks} is an input")
    assert tasks.read_bytes() == kept
    assert snapshot(tmp_path) == {**before, "i.jsonl": (tmp_path / "i.jsonl").read_bytes()}


# --- outputs that cannot be written --------------------------------------------------------------------------


def _commands(tmp_path: Path) -> dict[str, Callable[[Path], list[str | Path]]]:
    """Each command with its inputs made (outside `tmp_path / "out"`), writing to the output it is given."""
    inputs = tmp_path / "in"
    intents, plans = intents_file(inputs / "intents.jsonl"), plans_file(inputs / "plans.jsonl")
    traces = traces_file(inputs / "traces.jsonl")
    return {
        "intents": lambda out: ["intents", "-o", out, "-c", "intents.embedding_model=hashing", "-n", "1"],
        "simulate": lambda out: ["simulate", "-i", intents, "-o", out],
        "execute": lambda out: ["execute", "-i", plans, "-o", out],
        "export": lambda out: ["export", "-i", traces, "-o", out, *EXPORT_FLAGS],
        "report": lambda out: ["report", inputs, "-o", out],
        "view": lambda out: ["view", traces, "-o", out],
    }


COMMANDS = ["intents", "simulate", "execute", "export", "report", "view"]


@pytest.mark.parametrize("command", COMMANDS)
def test_an_output_in_a_read_only_folder_is_one_line(tmp_path: Path, command: str) -> None:
    args = _commands(tmp_path)[command]
    with read_only_folder(tmp_path / "out") as folder:
        one_line_error(ise(*args(folder / "result.html")), "cannot write", str(folder))
        one_line_error(ise(*args(folder / "deeper" / "result.html")), "cannot write", str(folder))
        assert list(folder.iterdir()) == []


@pytest.mark.parametrize("command", COMMANDS)
def test_an_output_under_a_file_is_one_line(tmp_path: Path, command: str) -> None:
    args = _commands(tmp_path)[command]
    blocker = tmp_path / "out"
    blocker.write_text("a file, not a folder\n")
    one_line_error(ise(*args(blocker / "result.html")), "cannot write", f"{blocker} is a file, not a folder")
    assert blocker.read_text() == "a file, not a folder\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "out"]


@pytest.mark.parametrize("command", ["intents", "simulate", "execute", "report", "view"])
def test_an_output_that_is_a_folder_is_one_line_and_leaves_no_temp_file(tmp_path: Path, command: str) -> None:
    args = _commands(tmp_path)[command]
    folder = tmp_path / "out" / "result.html"
    folder.mkdir(parents=True)
    one_line_error(ise(*args(folder)), str(folder), "is a directory")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["result.html"]
    assert list(folder.iterdir()) == []


def test_export_to_a_device_or_a_file_is_refused(tmp_path: Path) -> None:
    args = _commands(tmp_path)["export"]
    one_line_error(ise(*args(Path("/dev/null"))), "is not an ise export folder")
    one_line_error(ise(*args(tmp_path / "in" / "plans.jsonl")), "is not an ise export folder")


@pytest.mark.parametrize("command", ["simulate", "execute"])
def test_a_stage_never_appends_to_a_device(tmp_path: Path, command: str) -> None:
    one_line_error(ise(*_commands(tmp_path)[command](Path("/dev/null"))), "/dev/null is not a regular file")


@pytest.mark.parametrize("command", ["report", "view"])
def test_a_missing_parent_folder_of_a_page_is_made(tmp_path: Path, command: str) -> None:
    output = tmp_path / "out" / "new" / "deeper" / "page.html"
    result = ise(*_commands(tmp_path)[command](output))
    assert result.exit_code == 0, result.output
    assert output.read_text().startswith("<!doctype html>")
    assert [p.name for p in output.parent.iterdir()] == ["page.html"], "no temporary file left"
    assert oct(output.stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def test_the_export_folder_follows_the_umask(tmp_path: Path) -> None:
    output = tmp_path / "out" / "sft"
    assert ise(*_commands(tmp_path)["export"](output)).exit_code == 0
    assert oct(output.stat().st_mode & 0o777) == oct(0o777 & ~_umask())
    assert [p.name for p in output.parent.iterdir()] == ["sft"], "no staging folder left"


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
