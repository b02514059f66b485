"""Decontamination on real seed plans and an export-shaped folder: a training row (or plan) about an eval task is
refused under the rule it breaks (same plan id, same task text, same fixtures), the rest are kept, and the counts
are per rule. Also how an export's trl/ folder is read (ids from the line-aligned openai/ file, bad rows)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ise.errors import InputError
from ise.records import FileFixture, Plan
from ise.seeds import load_seed_tasks
from ise.train.data import read_dataset, read_rows
from ise.train.decontam import Decontaminator, plan_key, refuse_overlaps, row_key, split_plans

SEEDS = {plan.id: plan for plan in load_seed_tasks([]).plans}
EVAL = [SEEDS["seed/count-large-raw-files"], SEEDS["seed/dedupe-contacts-latest"]]


def _row(user: str, *, plan_id: str | None = None, row_id: str | None = None) -> dict[str, Any]:
    messages = [{"role": "user", "content": user}, {"role": "assistant", "content": "Done."}]
    return {"id": row_id, "messages": messages, "tools": [], "metadata": {"intent_id": plan_id}}


def _export(folder: Path, rows: list[dict[str, Any]]) -> Path:
    """An export's openai/ and trl/ train files, line-aligned (TRL rows carry no ids, as ise writes them)."""
    for name in ("openai", "trl"):
        (folder / name).mkdir(parents=True, exist_ok=True)
        lines = rows if name == "openai" else [{"messages": r["messages"], "tools": r["tools"]} for r in rows]
        (folder / name / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines), encoding="utf-8")
    return folder / "trl"


def test_each_rule_refuses_its_overlap_and_keeps_the_rest(tmp_path: Path) -> None:
    eval_task = EVAL[0]
    rows = [
        _row("Something unrelated about backups.", plan_id="seed/count-large-raw-files"),
        _row("  " + eval_task.user.milestones[0].ask.upper() + "\n", plan_id="seed/other"),  # case, spaces
        _row(eval_task.intent.request, plan_id="seed/another"),
        _row("Please total the sales column.", plan_id="seed/clean-sales-csv-and-total"),
    ]
    trl = read_rows(_export(tmp_path, rows) / "train.jsonl")
    assert [r.plan_id for r in trl] == [
        "seed/count-large-raw-files",
        "seed/other",
        "seed/another",
        "seed/clean-sales-csv-and-total",
    ]
    kept, refused = refuse_overlaps(trl, Decontaminator(EVAL))
    assert [r.plan_id for r in kept] == ["seed/clean-sales-csv-and-total"]
    assert refused == {"same plan id": 1, "same task text": 2}


def test_same_fixtures_under_another_id_and_text_is_refused() -> None:
    source = next(plan for plan in SEEDS.values() if plan.fixtures.files)
    disguised = source.model_copy(
        update={
            "id": "renamed",
            "intent": source.intent.model_copy(update={"request": "A fresh wording of the request."}),
            "user": source.user.model_copy(update={"milestones": []}),
        }
    )
    decontaminator = Decontaminator([source])
    assert decontaminator.overlap(plan_key(disguised)) == f"same fixtures as eval task {source.id}"
    changed = disguised.model_copy(
        update={"fixtures": disguised.fixtures.model_copy(update={"files": [FileFixture(path="x", content="y")]})}
    )
    assert decontaminator.overlap(plan_key(changed)) is None
    # a row learns its fixtures from the plans its traces ran
    rows = read_rows_from([_row("Unrelated words.", plan_id="renamed")])
    assert decontaminator.overlap(row_key(rows[0])) is None
    assert decontaminator.overlap(row_key(rows[0], {"renamed": disguised})) is not None


def read_rows_from(rows: list[dict[str, Any]]) -> Any:
    from ise.train.data import parse_row

    return [parse_row(json.dumps(r), f"rows.jsonl:{n}") for n, r in enumerate(rows, 1)]


def test_training_plans_are_split_from_the_eval_plans_by_the_same_rule() -> None:
    training: list[Plan] = [SEEDS["seed/sqlite-top-customer-q1"], EVAL[1], SEEDS["seed/zombie-parent"]]
    kept, refused = split_plans(training, Decontaminator(EVAL))
    assert [p.id for p in kept] == ["seed/sqlite-top-customer-q1", "seed/zombie-parent"]
    assert refused == {"same plan id": 1}


def test_tasks_without_fixtures_never_match_on_fixtures() -> None:
    def bare(plan: Plan, request: str) -> Plan:
        return plan.model_copy(
            update={
                "fixtures": plan.fixtures.model_copy(update={"files": [], "setup_script": None}),
                "intent": plan.intent.model_copy(update={"request": request}),
                "user": plan.user.model_copy(update={"milestones": []}),
            }
        )

    first, second = bare(EVAL[0], "One request."), bare(EVAL[1], "Another request.")
    assert plan_key(first).fixtures is None
    assert Decontaminator([first]).overlap(plan_key(second)) is None


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", r"rows\.jsonl:1: not JSON"),
        ('{"text": "hi"}', r"rows\.jsonl:1: no 'messages' list"),
        ('{"messages": [{"role": "narrator", "content": "x"}]}', r"message 0: not a message with a role"),
        (
            '{"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "tool_calls": '
            '[{"id": "c", "function": {"name": "bash", "arguments": "[1]"}}]}]}',
            r"message 1: a tool call without a name, or with arguments that are not an object",
        ),
    ],
)
def test_a_bad_row_is_one_error_naming_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text(line + "\n", encoding="utf-8")
    with pytest.raises(InputError, match=message):
        read_rows(path)


def test_a_folder_without_train_rows_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"no train\.jsonl in the folder"):
        read_dataset(tmp_path)
    with pytest.raises(InputError, match="no such file or folder"):
        read_dataset(tmp_path / "missing")
