"""`ise report` on a run folder built from real records: the page holds the plots and the right numbers."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from rich.console import Console
from trace_factory import make_trace, write_traces

from ise.config import ExportConfig
from ise.errors import InputError
from ise.records import Intent, Persona
from ise.report import key_numbers, load_run, run_report
from ise.stages.export import export

DOMAINS = ["devops", "data", "web"]
LEVELS = ["simple", "medium", "complex"]


def _intent(i: int) -> Intent:
    return Intent(
        id=f"t{i}",
        persona=Persona(role="analyst", industry="retail", experience="junior", style="chatty"),
        domain=DOMAINS[i % 3],
        tasks=["task"],
        tools=["ls"],
        complexity=LEVELS[i % 3],  # type: ignore[arg-type]
        expected_turns=2,
        request=f"Request number {i}",
        deliverable="done",
        workspace=[],
    )


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """12 intents and traces: every third failed, one infra error, recoveries on even ids, drift on some turns."""
    run = tmp_path / "run"
    run.mkdir()
    traces = [
        make_trace(
            f"t{i}",
            domain=DOMAINS[i % 3],
            complexity=LEVELS[i % 3],
            passed=i % 3 != 0,
            recovered=i % 2 == 0,
            infra_error=i == 4,
            drift=1 if i < 3 else 0,
        )
        for i in range(12)
    ]
    write_traces(run / "traces.jsonl", traces)
    (run / "intents.jsonl").write_text("".join(_intent(i).model_dump_json() + "\n" for i in range(12)))
    cells = [
        {"domain": d, "complexity": c, "sampled": 2, "kept": 1 + (d == "web" and c == "complex")}
        for d in DOMAINS
        for c in LEVELS
    ]
    stats = {"sampled": 18, "kept": 12, "vendi": 7.125, "distinct": {"1": 0.5, "2": 0.75, "3": 0.875}, "cells": cells}
    (run / "intents.stats.json").write_text(json.dumps(stats))
    export(run / "traces.jsonl", run / "sft", ExportConfig(render_samples=0, token_counter="approx"))
    return run


def test_report_page_holds_the_plots_and_numbers(run_dir: Path) -> None:
    console = Console(record=True, width=140)
    output = run_report(run_dir, console=console)
    assert output == run_dir / "report.html"
    page = output.read_text()
    for title in [
        "matrix coverage: intents kept / sampled",
        "complexity mix",
        "domain mix",
        "verified success per cell: passed / run",
        "verdict",
        "termination reason",
        "user turns",
        "tool calls",
        "failures and recoveries",
        "user simulator: role drift",
        "duration per trajectory",
        "tokens per trajectory",
        "distinct-n of the requests (unique / all n-grams)",
        "Vendi score: effective number of distinct intents",
    ]:
        assert f'aria-label="{title}"' in page, title
    # The heatmap cell of web x complex holds 2 of 2 sampled intents; devops x simple 1 of 2.
    assert re.search(r'data-row="web" data-col="complex" data-value="2"><title>web, complex: 2/2</title>', page)
    assert 'data-row="devops" data-col="simple" data-value="1"' in page
    numbers = dict(key_numbers(load_run(run_dir)))
    assert numbers["verified success (checks passed)"] == "8 / 12 (67%)"
    assert numbers["infra errors"] == "1 / 12 (8%)"
    assert numbers["failures recovered"] == "6 / 12 (50%)"
    assert numbers["user-simulator drift (drafts rejected / user turns)"] == "3 / 24 (12%)"
    assert numbers["Vendi score (intents)"] == "7.12"
    assert numbers["distinct-1 / -2 / -3"] == "0.500 / 0.750 / 0.875"
    assert numbers["intents kept"] == "12 of 18 sampled"
    assert numbers["SFT rows (train / validation)"] == "6 / 1"
    assert numbers["left out by export filters / rejected"] == "5 / 0"
    for label, value in numbers.items():
        assert f'<td>{label}</td><td class="value">{value}</td>' in page
    terminal = console.export_text()
    assert "8 / 12 (67%)" in terminal
    assert "7.12" in terminal
    assert "plans.jsonl" in page, "missing stages are named"


def test_report_page_is_self_contained(run_dir: Path) -> None:
    page = run_report(run_dir, console=Console(record=True)).read_text()
    assert "<script src" not in page
    assert "<link" not in page
    assert re.findall(r'(?:src|href)="(?!#)', page) == []


def test_report_tolerates_missing_stages(tmp_path: Path) -> None:
    write_traces(tmp_path / "traces.jsonl", [make_trace("only")])
    page = run_report(tmp_path, console=Console(record=True)).read_text()
    assert "intents.jsonl, intents.stats.json, plans.jsonl, sft/export.json" in page
    assert 'aria-label="verdict"' in page
    assert 'aria-label="complexity mix"' in page, "mix falls back to the traces"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "traces.jsonl" in run_report(empty, console=Console(record=True)).read_text()


def test_report_names_a_bad_line(tmp_path: Path) -> None:
    write_traces(tmp_path / "traces.jsonl", [make_trace("a")])
    with (tmp_path / "traces.jsonl").open("a") as handle:
        handle.write("{oops\n")
    with pytest.raises(InputError, match=r"traces.jsonl:2: not valid JSON"):
        run_report(tmp_path, console=Console(record=True))
    assert not (tmp_path / "report.html").exists()
    with pytest.raises(InputError, match="is not a run folder"):
        run_report(tmp_path / "nope", console=Console(record=True))
