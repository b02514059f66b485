"""Realising one sampled cell into an Intent with the scripted LLM: prompt, schema, repair, errors, mention check."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from ise.jsonl import read_dicts, read_records
from ise.llm.scripted import ScriptedLLM
from ise.llm.structured import StructuredOutputError
from ise.records import Intent, IntentDraft, Message, ToolSpec
from ise.runner import run_stage
from ise.sampling import IntentCell, sample_cells
from ise.stages.intents import intent_examples, intent_messages, intent_prompt, mentions, missing_requirements, realise
from ise.taxonomy import Taxonomy, load_taxonomy

PRIORS = {"simple": 0.1, "medium": 0.4, "complex": 0.5}
GOOD = {
    "request": "Please find every file over 500 MB under /srv/media and list them by size, biggest first.",
    "deliverable": "/srv/media/large_files.txt lists each file over 500 MB with its size, largest first.",
    "workspace": ["/srv/media with about 300 video files", "enough space in /srv for a report"],
}


@pytest.fixture(scope="module")
def taxonomy() -> Taxonomy:
    return load_taxonomy(Path(__file__).resolve().parents[1] / "configs" / "taxonomy")


def complex_cell(taxonomy: Taxonomy) -> IntentCell:
    cells = sample_cells(taxonomy, 30, PRIORS, seed=2)
    return next(cell for cell in cells if cell.complexity == "complex")


def test_prompt_carries_persona_tasks_and_mentions(taxonomy: Taxonomy) -> None:
    cell = complex_cell(taxonomy)
    prompt = intent_prompt(cell, taxonomy)
    persona = cell.persona
    for text in (persona.role, persona.industry, persona.experience, persona.style):
        assert text in prompt
    assert taxonomy.facet("style", persona.style).hint in prompt
    for task_id in cell.tasks:
        task = taxonomy.task(task_id)
        assert task.summary in prompt
        assert f'"{task.requires[0].split("|")[0]}' in prompt
    assert "You are an " + persona.experience in prompt or "You are a " + persona.experience in prompt
    assert "{{" not in prompt
    assert "{%" not in prompt


def test_realise_builds_an_intent_from_the_draft(taxonomy: Taxonomy) -> None:
    cell = sample_cells(taxonomy, 30, PRIORS, seed=2)[0]
    llm = ScriptedLLM([{"json": GOOD}])
    intent = realise(cell, taxonomy=taxonomy, llm=llm, max_attempts=3)
    assert intent.id == cell.id
    assert (intent.persona, intent.domain, intent.tasks) == (cell.persona, cell.domain, cell.tasks)
    assert (intent.complexity, intent.expected_turns, intent.seed) == (cell.complexity, cell.expected_turns, 2)
    assert intent.request == GOOD["request"]
    assert intent.workspace == GOOD["workspace"]
    expected_tools = [tool for task_id in cell.tasks for tool in taxonomy.task(task_id).tools]
    assert intent.tools == list(dict.fromkeys(expected_tools))
    assert intent.model == "scripted"
    # the model was asked for the IntentDraft schema (constrained decoding on backends that support it)
    assert llm.calls[0]["response_schema"] == IntentDraft.model_json_schema()


def test_invalid_output_is_repaired_with_the_validation_error(taxonomy: Taxonomy) -> None:
    cell = sample_cells(taxonomy, 30, PRIORS, seed=2)[0]
    short = {**GOOD, "request": "do it"}
    no_workspace = {key: value for key, value in GOOD.items() if key != "workspace"}
    llm = ScriptedLLM([{"content": "Sure! Here is the request."}, {"json": short}, {"json": GOOD}])
    intent = realise(cell, taxonomy=taxonomy, llm=llm, max_attempts=3)
    assert intent.request == GOOD["request"]
    assert len(llm.calls) == 3
    second: list[Message] = llm.calls[1]["messages"]
    assert "no JSON value found" in (second[-1].content or "")
    third: list[Message] = llm.calls[2]["messages"]
    assert "request: String should have at least 30 characters" in (third[-1].content or "")

    llm = ScriptedLLM([{"json": no_workspace}, {"json": GOOD}])
    realise(cell, taxonomy=taxonomy, llm=llm, max_attempts=2)
    assert "workspace: Field required" in (llm.calls[1]["messages"][-1].content or "")


def test_exhausted_attempts_go_to_the_errors_file(taxonomy: Taxonomy, tmp_path: Path) -> None:
    cells = sample_cells(taxonomy, 3, PRIORS, seed=9)
    bad_id = cells[1].id

    def responder(messages: Sequence[Message], tools: Sequence[ToolSpec], schema: dict[str, Any] | None) -> Any:
        if any(m.content == intent_prompt(cells[1], taxonomy) for m in messages):
            return {"json": {"request": "too short"}}
        return {"json": GOOD}

    llm = ScriptedLLM(responder=responder)
    with pytest.raises(StructuredOutputError, match="no valid IntentDraft after 2 attempts"):
        realise(cells[1], taxonomy=taxonomy, llm=llm, max_attempts=2)

    output = tmp_path / "intents.raw.jsonl"
    stats = run_stage(cells, lambda cell: realise(cell, taxonomy=taxonomy, llm=llm, max_attempts=2), output)
    assert (stats.ok, stats.errors) == (2, 1)
    assert {intent.id for intent in read_records(output, Intent)} == {cells[0].id, cells[2].id}
    errors = list(read_dicts(tmp_path / "intents.raw.errors.jsonl"))
    assert [error["id"] for error in errors] == [bad_id]
    assert errors[0]["error"] == "StructuredOutputError"
    assert "deliverable: Field required" in errors[0]["message"]


def test_mentions_matches_word_stems_and_alternatives() -> None:
    assert mentions("Compressed logs please", "compress")
    assert mentions("set up log rotation", "rotat|logrotate")
    assert mentions("Please gzip the old ones", "compress|gzip")
    assert mentions("files with the same content", "duplicate|same content")
    assert not mentions("files with the same name", "duplicate|same content")  # both words of an alternative
    assert mentions("Add a CRON job", "cron|schedul")
    assert not mentions("move the reports folder", "cron|schedul")
    assert mentions("export it to /tmp/out.csv", "csv")


def test_missing_requirements_are_flagged_not_fatal(taxonomy: Taxonomy) -> None:
    task = taxonomy.task("backup.zip_share")  # requires "zip|archive" and "exclud|without|..."
    assert missing_requirements("Zip the reports folder but leave out the drafts", [task]) == []
    assert missing_requirements("Zip the reports folder for Anna", [task]) == [task.requires[1]]
    cell = sample_cells(taxonomy, 30, PRIORS, seed=2)[0]
    unrelated = {**GOOD, "request": "Hello there, I would like a nice cup of tea with lemon on the side."}
    intent = realise(cell, taxonomy=taxonomy, llm=ScriptedLLM([{"json": unrelated}]), max_attempts=1)
    assert intent.missing  # kept, but flagged
    required = {req for task_id in cell.tasks for req in taxonomy.task(task_id).requires}
    assert set(intent.missing) <= required
    json.loads(intent.model_dump_json())


def test_the_demonstration_comes_from_another_domain(taxonomy: Taxonomy) -> None:
    cells = sample_cells(taxonomy, 40, PRIORS, seed=4)
    assert {cell.domain for cell in cells} >= {"data", "logs"}
    for cell in cells:
        messages = intent_messages(cell, taxonomy)
        assert [m.role for m in messages] == ["user", "assistant", "user"]
        assert messages[-1].content == intent_prompt(cell, taxonomy)
        shown = IntentDraft.model_validate_json(messages[1].content or "")
        example = next(e for e in intent_examples() if e.answer == shown)
        assert example.domain != cell.domain
        assert example.persona.role in (messages[0].content or "")
