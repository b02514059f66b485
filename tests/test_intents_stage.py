"""The whole `ise intents` stage with the scripted LLM: files written, dedup over the pool, stats, resume, and the
command line's handling of bad input (one error line, exit 2, nothing written)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from ise.config import Config, load_config
from ise.embeddings import HashingEmbedder, MiniLMEmbedder
from ise.jsonl import read_dicts, read_records
from ise.llm.scripted import ScriptedLLM
from ise.records import Intent, Message, ToolSpec
from ise.sampling import IntentCell, sample_cells
from ise.stages.intents import IntentsPaths, intent_prompt, run_intents
from ise.taxonomy import load_taxonomy

ROOT = Path(__file__).resolve().parents[1]
TAXONOMY = ROOT / "configs" / "taxonomy"


def config(*overrides: str) -> Config:
    return load_config([f"intents.taxonomy={TAXONOMY}", "seed=5", *overrides])


def cells_of(cfg: Config, count: int) -> list[IntentCell]:
    return sample_cells(load_taxonomy(TAXONOMY), count, cfg.intents.complexity_priors, cfg.seed)


def draft_for(cell: IntentCell) -> dict[str, Any]:
    """A plausible draft built from the cell itself, so different cells get different requests."""
    taxonomy = load_taxonomy(TAXONOMY)
    jobs = "; then ".join(taxonomy.task(task_id).summary.lower() for task_id in cell.tasks)
    folder = f"/srv/{cell.persona.industry.replace(' ', '-')}/{cell.id[-6:]}"
    return {
        "request": f"As a {cell.persona.role}, I need this done in {folder}: {jobs}.",
        "deliverable": f"The results are saved in {folder}/out.",
        "workspace": [f"{folder} with the input files"],
    }


class CellResponder:
    """Answers each prompt with the draft for its cell; `overrides` replaces the draft of chosen cells."""

    def __init__(self, cells: Sequence[IntentCell], overrides: dict[str, dict[str, Any]] | None = None) -> None:
        taxonomy = load_taxonomy(TAXONOMY)
        self.by_prompt = {intent_prompt(cell, taxonomy): cell for cell in cells}
        self.overrides = overrides or {}
        self.asked: list[str] = []

    def __call__(self, messages: Sequence[Message], tools: Sequence[ToolSpec], schema: dict[str, Any] | None) -> Any:
        cell = next(self.by_prompt[m.content] for m in messages if m.content in self.by_prompt)
        self.asked.append(cell.id)
        return {"json": self.overrides.get(cell.id, draft_for(cell))}


def test_stage_writes_pool_duplicates_and_stats(tmp_path: Path) -> None:
    cfg = config()
    cells = cells_of(cfg, 24)
    first = draft_for(cells[0])
    copy = {**first, "request": first["request"].upper()}  # the same text, shouted: an exact duplicate
    paraphrase = {
        **first,
        "request": "Could you do this for me in "
        + first["request"].split(" in ", 1)[1].replace("; then ", ", and after that, "),
    }
    responder = CellResponder(cells, {cells[5].id: copy, cells[9].id: paraphrase})
    output = tmp_path / "run" / "intents.jsonl"
    stats = run_intents(cfg, output, count=24, llm=ScriptedLLM(responder=responder), embedder=MiniLMEmbedder())
    paths = IntentsPaths.for_output(output)

    raw = list(read_records(paths.raw, Intent))
    final = list(read_records(output, Intent))
    duplicates = list(read_dicts(paths.duplicates))
    assert len(raw) == 24
    assert {d["id"]: (d["duplicate_of"], d["method"]) for d in duplicates if d["duplicate_of"] == cells[0].id} == {
        cells[5].id: (cells[0].id, "exact"),
        cells[9].id: (cells[0].id, "semantic"),
    }
    assert len(final) + len(duplicates) == 24
    assert [i.id for i in final] == [c.id for c in cells if c.id in {i.id for i in final}]  # sampling order
    assert {d["id"] for d in duplicates}.isdisjoint({i.id for i in final})

    saved = json.loads(paths.stats.read_text())
    assert saved == stats.model_dump(mode="json")
    assert (stats.sampled, stats.realised, stats.failed, stats.kept) == (24, 24, 0, len(final))
    assert stats.duplicates["exact"] == 1
    assert stats.dedup_threshold == MiniLMEmbedder.default_threshold
    assert 1.0 < stats.vendi <= len(final)
    assert sum(cell.sampled for cell in stats.cells) == 24
    assert sum(cell.kept for cell in stats.cells) == len(final)
    assert len(stats.cells) == 12 * 3
    assert stats.facets["style"].covered == 6
    assert 0 < stats.distinct["1"] < stats.distinct["2"] <= stats.distinct["3"] <= 1


def test_rerun_after_interruption_realises_only_the_rest(tmp_path: Path) -> None:
    cfg = config("intents.embedding_model=hashing")
    cells = cells_of(cfg, 12)
    output = tmp_path / "intents.jsonl"
    complete = tmp_path / "complete" / "intents.jsonl"
    run_intents(cfg, complete, count=12, llm=ScriptedLLM(responder=CellResponder(cells)), embedder=HashingEmbedder())

    paths = IntentsPaths.for_output(output)
    shutil.copy(IntentsPaths.for_output(complete).raw, paths.raw)
    lines = paths.raw.read_text().splitlines(keepends=True)
    paths.raw.write_text("".join(lines[:5]) + lines[5][:40])  # killed while writing the sixth intent

    responder = CellResponder(cells)
    run_intents(cfg, output, count=12, llm=ScriptedLLM(responder=responder), embedder=HashingEmbedder())
    done_before = {json.loads(line)["id"] for line in lines[:5]}
    assert sorted(responder.asked) == sorted(c.id for c in cells if c.id not in done_before)
    raw_ids = [record["id"] for record in read_dicts(paths.raw)]
    assert sorted(raw_ids) == sorted(c.id for c in cells)  # nothing lost, nothing twice
    assert output.read_text() == complete.read_text()  # same pool as an uninterrupted run
    assert paths.stats.read_text() == IntentsPaths.for_output(complete).stats.read_text()

    again = CellResponder(cells)
    run_intents(cfg, output, count=12, llm=ScriptedLLM(responder=again), embedder=HashingEmbedder())
    assert again.asked == []


def test_pool_holds_only_this_runs_cells(tmp_path: Path) -> None:
    cfg = config("intents.embedding_model=hashing")
    output = tmp_path / "intents.jsonl"
    big = cells_of(cfg, 10)
    run_intents(cfg, output, count=10, llm=ScriptedLLM(responder=CellResponder(big)), embedder=HashingEmbedder())
    other = config("intents.embedding_model=hashing", "seed=6")
    small = cells_of(other, 4)
    stats = run_intents(
        other, output, count=4, llm=ScriptedLLM(responder=CellResponder(small)), embedder=HashingEmbedder()
    )
    assert {i.id for i in read_records(output, Intent)} <= {c.id for c in small}
    assert stats.realised == 4
    assert len(list(read_dicts(IntentsPaths.for_output(output).raw))) == 14  # the raw file keeps everything


def test_failed_cells_are_counted_and_listed(tmp_path: Path) -> None:
    cfg = config("intents.embedding_model=hashing", "intents.max_attempts=2")
    cells = cells_of(cfg, 6)
    responder = CellResponder(cells, {cells[2].id: {"request": "?"}})
    output = tmp_path / "intents.jsonl"
    stats = run_intents(cfg, output, count=6, llm=ScriptedLLM(responder=responder), embedder=HashingEmbedder())
    assert (stats.realised, stats.failed) == (5, 1)
    errors = list(read_dicts(IntentsPaths.for_output(output).errors))
    assert [e["id"] for e in errors] == [cells[2].id]
    assert responder.asked.count(cells[2].id) == 2


# --- the command line ---------------------------------------------------------------------------------------------


def ise(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from ise.cli import main; main()", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_cli_runs_with_a_scripted_backend_and_resumes(tmp_path: Path) -> None:
    cfg = config()
    cells = cells_of(cfg, 6)
    replies = tmp_path / "replies.jsonl"
    replies.write_text("".join(json.dumps({"json": draft_for(cell)}) + "\n" for cell in cells))
    settings = tmp_path / "run.yaml"
    settings.write_text(
        f"seed: 5\nllm: {{kind: scripted, script: {replies}}}\n"
        f"intents: {{taxonomy: {TAXONOMY}, embedding_model: hashing}}\n"
    )
    output = tmp_path / "out" / "intents.jsonl"
    done = ise("intents", "-c", str(settings), "-n", "6", "-o", str(output))
    assert done.returncode == 0, done.stderr
    assert "Vendi score" in done.stderr
    kept = len(list(read_records(output, Intent)))
    assert kept + len(list(read_dicts(output.with_name("intents.duplicates.jsonl")))) == 6
    assert {i.id for i in read_records(output.with_name("intents.raw.jsonl"), Intent)} == {c.id for c in cells}
    # every reply is used up: the rerun succeeds only because it skips what is done
    again = ise("intents", "-c", str(settings), "-n", "6", "-o", str(output))
    assert again.returncode == 0, again.stderr


@pytest.fixture
def broken_taxonomy(tmp_path: Path) -> Path:
    target = tmp_path / "taxonomy"
    shutil.copytree(TAXONOMY, target)
    (target / "tasks.yaml").write_text("files:\n  - {id: x, summary: [unclosed\n")
    return target


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["-c", "missing.yaml"], "cannot read config missing.yaml"),
        (["-c", "intents.colour=red"], "config: unknown key 'intents.colour'"),
        (["-c", "intents.count=-3"], "config: intents.count: Input should be greater than or equal to 1"),
        (["-c", "intents.complexity_priors={simple: 1, epic: 2}"], "unknown level 'epic'"),
        (["-c", "intents.taxonomy=BROKEN"], "tasks.yaml is not valid YAML"),
        (["-c", "intents.taxonomy=NOWHERE"], "does not exist"),
    ],
)
def test_cli_bad_input_is_one_line_and_writes_nothing(
    overrides: list[str], message: str, tmp_path: Path, broken_taxonomy: Path
) -> None:
    args = [arg.replace("BROKEN", str(broken_taxonomy)).replace("NOWHERE", str(tmp_path / "no")) for arg in overrides]
    output = tmp_path / "out" / "intents.jsonl"
    base = ["-c", "llm.kind=scripted", "-c", f"intents.taxonomy={TAXONOMY}"]
    result = ise("intents", *base, *args, "-o", str(output), cwd=tmp_path)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert message in lines[0]
    assert not (tmp_path / "out").exists()


def test_cli_output_that_is_a_directory(tmp_path: Path) -> None:
    (tmp_path / "out.jsonl").mkdir()
    result = ise("intents", "-c", "llm.kind=scripted", "-o", str(tmp_path / "out.jsonl"))
    assert result.returncode == 2
    assert "is a directory" in result.stderr
    assert list((tmp_path / "out.jsonl").iterdir()) == []
