"""pass@1, pass@k and yield per domain x complexity cell, as `ise report` and `ise export` state them, from a real
traces file of plans with one to three attempts (some failed, some errored)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from trace_factory import make_delegating_trace, make_trace, write_traces

from ise.config import ExportConfig
from ise.provenance import attempt_id
from ise.records import TerminationReason, Trace
from ise.report import load_run, run_report, yield_rows
from ise.stages.export import export
from ise.yields import History, pass_within, yield_table

# plan -> (domain, complexity, outcome of each attempt in order). Every factory trace takes 12.5 s and 4160 tokens.
PLANS = {
    "p1": ("devops", "simple", ["pass"]),
    "p2": ("devops", "simple", ["fail", "pass"]),
    "p3": ("devops", "simple", ["fail", "fail", "fail"]),
    "p4": ("devops", "complex", ["infra", "pass"]),
    "p5": ("devops", "complex", ["fail", "setup"]),  # censored: one measured attempt of three
    "p6": ("data", "simple", ["fail", "fail", "pass"]),
    "p7": ("data", "simple", ["infra", "infra"]),  # never measured
    "p8": ("data", "simple", ["fail", "infra"]),  # censored
}


def _attempt(plan: str, index: int, domain: str, complexity: str, outcome: str) -> Trace:
    trace = make_trace(
        attempt_id(plan, index),
        domain=domain,
        complexity=complexity,
        passed=outcome == "pass",
        infra_error=outcome == "infra",
        termination=TerminationReason.SETUP_ERROR if outcome == "setup" else TerminationReason.USER_DONE,
    )
    trace.env.attempt = index
    trace.env.plan_proven = plan != "p1"  # export leaves p1 out: verified, not exported
    return trace


def _traces() -> list[Trace]:
    return [
        _attempt(plan, index, domain, complexity, outcome)
        for plan, (domain, complexity, outcomes) in PLANS.items()
        for index, outcome in enumerate(outcomes)
    ]


def _rate(value: float, low: float, high: float, plans: int) -> dict[str, float]:
    return {"value": value, "low": low, "high": high, "plans": plans}


OVERALL = {
    "plans": 8,
    "attempts": 17,
    "errored": 5,
    "verified": 4,
    # first measured attempts: p1, p4 passed of 7 measured plans
    "pass@1": _rate(0.2857, 0.0822, 0.6411, 7),
    # Kaplan-Meier: (1 - 2/7) (1 - 1/3: p2 of p2, p3, p6) (1 - 1/2: p6 of p3, p6) = 5/21 still failing
    "pass@k": _rate(0.7619, 0.3991, 0.9391, 7),
    "verified_per_plan": 0.5,
    "hours": 0.059,  # 17 x 12.5 s
    "verified_per_hour": 67.7647,
    "tokens": 70720,
    "verified_per_million_tokens": 56.5611,
}
CELLS = [
    {
        "domain": "data",
        "complexity": "simple",
        "plans": 3,
        "attempts": 7,
        "errored": 3,
        "verified": 1,
        "pass@1": _rate(0.0, 0.0, 0.6576, 2),
        "pass@k": _rate(1.0, 0.3424, 1.0, 2),  # p8 was censored after one failure; p6, the one left, passed
        "verified_per_plan": 0.3333,
        "hours": 0.0243,
        "verified_per_hour": 41.1429,
        "tokens": 29120,
        "verified_per_million_tokens": 34.3407,
    },
    {
        "domain": "data",
        "complexity": "complex",
        "plans": 0,
        "attempts": 0,
        "errored": 0,
        "verified": 0,
        "pass@1": None,
        "pass@k": None,
        "verified_per_plan": None,
        "hours": 0.0,
        "verified_per_hour": None,
        "tokens": 0,
        "verified_per_million_tokens": None,
    },
    {
        "domain": "devops",
        "complexity": "simple",
        "plans": 3,
        "attempts": 6,
        "errored": 0,
        "verified": 2,
        "pass@1": _rate(0.3333, 0.0615, 0.7923, 3),
        "pass@k": _rate(0.6667, 0.2077, 0.9385, 3),
        "verified_per_plan": 0.6667,
        "hours": 0.0208,
        "verified_per_hour": 96.0,
        "tokens": 24960,
        "verified_per_million_tokens": 80.1282,
    },
    {
        "domain": "devops",
        "complexity": "complex",
        "plans": 2,
        "attempts": 4,
        "errored": 2,
        "verified": 1,
        "pass@1": _rate(0.5, 0.0945, 0.9055, 2),
        "pass@k": _rate(0.5, 0.0945, 0.9055, 2),
        "verified_per_plan": 0.5,
        "hours": 0.0139,
        "verified_per_hour": 72.0,
        "tokens": 16640,
        "verified_per_million_tokens": 60.0962,
    },
]
VALUE = ' class="value"'
EXPORTED = {("data", "simple"): 1, ("data", "complex"): 0, ("devops", "simple"): 1, ("devops", "complex"): 1}


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    write_traces(run / "traces.jsonl", _traces())
    return run


def test_report_states_pass_at_k_and_yield_per_cell(run_dir: Path) -> None:
    table = yield_table(load_run(run_dir).traces or [])
    assert table["k"] == 3
    assert table["overall"] == OVERALL
    assert table["cells"] == CELLS
    console = Console(record=True, width=200)
    page = run_report(run_dir, console=console).read_text()
    headers, rows = yield_rows(load_run(run_dir)) or ([], [])
    assert headers[4:6] == ["pass@1", "pass@3"]
    assert rows[-1] == ["all", "all", "8", "17 (5)", "29%", "76%", "4", "0.50", "67.76", "56.56"]
    assert rows[1] == ["data", "complex", "0", "0 (0)", "n/a", "n/a", "0", "n/a", "n/a", "n/a"]
    for row in rows:
        cells = "".join(f"<td{VALUE if i > 1 else ''}>{v}</td>" for i, v in enumerate(row))
        assert f"<tr>{cells}</tr>" in page, row
    terminal = console.export_text()
    assert "pass@3" in terminal
    assert "67.76" in terminal
    assert "56.56" in terminal


def test_export_manifest_and_card_carry_the_same_figures(run_dir: Path) -> None:
    export(run_dir / "traces.jsonl", run_dir / "sft", ExportConfig(render_samples=0, token_counter="approx"))
    manifest = json.loads((run_dir / "sft" / "export.json").read_text())
    figures: dict[str, Any] = manifest["yield"]
    assert figures["k"] == 3
    assert figures["overall"] == {**OVERALL, "exported": 3}
    assert figures["cells"] == [{**cell, "exported": EXPORTED[cell["domain"], cell["complexity"]]} for cell in CELLS]
    assert sum(manifest["rows"].values()) == 3, "the exported count is the rows the export wrote"
    card = (run_dir / "sft" / "README.md").read_text()
    assert "| domain | complexity | plans | attempts (errored) | pass@1 | pass@3 | verified | exported |" in card
    assert "| all | all | 8 | 17 (5) | 29% | 76% | 4 | 3 | 0.50 | 67.76 | 56.56 |" in card
    assert "| data | complex | 0 | 0 (0) | n/a | n/a | 0 | 0 | n/a | n/a | n/a |" in card


def test_sub_agent_rows_are_not_more_verified_rows(tmp_path: Path) -> None:
    """A sub-agent conversation exported as a row of its own is part of its trajectory, not one more."""
    traces = [make_delegating_trace("partial", whole=False), make_delegating_trace("whole", whole=True)]
    write_traces(tmp_path / "traces.jsonl", traces)
    cfg = ExportConfig(render_samples=0, token_counter="approx", subagent_rows=True, validation_fraction=0)
    summary = export(tmp_path / "traces.jsonl", tmp_path / "sft", cfg)
    assert summary.rows["train"] == 3, "partial, its sub-agent, the whole delegation's sub-agent"
    overall = json.loads((tmp_path / "sft" / "export.json").read_text())["yield"]["overall"]
    assert overall["verified"] == 2
    assert overall["exported"] == 1, "the whole delegation is filtered; sub-agent rows are not trajectories"


def test_single_attempts_give_pass_at_1_for_both(tmp_path: Path) -> None:
    traces = [make_trace("a", passed=True), make_trace("b", passed=False), make_trace("c", infra_error=True)]
    table = yield_table(traces)
    assert table["k"] == 1
    overall = table["overall"]
    assert overall["pass@1"] == overall["pass@k"]
    assert overall["pass@1"]["value"] == 0.5
    assert overall["pass@1"]["plans"] == 2
    assert [(c["domain"], c["complexity"]) for c in table["cells"]] == [("devops", "medium")]


def test_no_attempts_no_figures(tmp_path: Path) -> None:
    table = yield_table([])
    assert table["cells"] == []
    assert table["overall"]["plans"] == 0
    assert table["overall"]["pass@1"] is None
    write_traces(tmp_path / "traces.jsonl", [])
    console = Console(record=True, width=200)
    page = run_report(tmp_path, console=console).read_text()
    assert 'id="yield"' not in page
    assert "pass@" not in console.export_text()


def test_every_attempt_run_uses_c_of_n() -> None:
    """stop_at_success off and every attempt ran: the unbiased c-of-n estimator, as ise eval's (1 of 2 -> pass@1 0.5,
    pass@2 1.0)."""
    histories = [History(first_success=2, measured=2, passed=1)]
    assert pass_within(histories, 1, 2) == 0.5
    assert pass_within(histories, 2, 2) == 1.0
    three = [History(first_success=1, measured=3, passed=1), History(first_success=None, measured=3, passed=0)]
    assert pass_within(three, 1, 3) == pytest.approx((1 / 3 + 0) / 2)
    assert pass_within(three, 3, 3) == 0.5
    assert pass_within([History(first_success=None, measured=0)], 3, 3) is None


def test_a_stopped_run_reads_the_prefix() -> None:
    """stop_at_success: plans have different attempt counts, so pass@1 is the share of first attempts that passed."""
    histories = [History(first_success=1, measured=1, passed=1), History(first_success=2, measured=2, passed=1)]
    assert pass_within(histories, 1, 2) == 0.5
    assert pass_within(histories, 2, 2) == 1.0
