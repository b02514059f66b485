"""Plans proven or marked: without the solved run a plan is `proven: false`, export leaves its traces out unless
asked (`unproven` in filtered.jsonl), and the report counts them apart."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from simulate_support import GOOD_WORLD, good_plan, intent
from trace_factory import make_trace, write_traces

from ise.config import ExportConfig, SimulateConfig, load_config
from ise.records import Trace
from ise.report import key_numbers, load_run
from ise.stages.export import export
from ise.stages.export_summary import SPLITS
from ise.stages.plan_drafts import WorldDraft, plan_from_draft

ROOT = Path(__file__).resolve().parent.parent
NO_MODEL = {"render_samples": 0, "token_counter": "approx"}


def unproven(trace: Trace) -> Trace:
    return trace.model_copy(update={"env": trace.env.model_copy(update={"plan_proven": False})})


@pytest.mark.parametrize("verify", [True, False])
def test_a_plan_is_proven_only_when_its_solution_is_run(verify: bool) -> None:
    world = WorldDraft.model_validate(GOOD_WORLD)
    plan = plan_from_draft(intent(), world, None, SimulateConfig(verify_solution=verify), attempts=1, model="m")
    assert plan.proven is verify
    assert bool(plan.solution) is verify


def test_every_shipped_config_proves_its_plans() -> None:
    configs = sorted((ROOT / "configs").glob("*.yaml"))
    assert configs
    for path in configs:
        assert load_config([str(path)]).simulate.verify_solution, path


@pytest.fixture
def traces(tmp_path: Path) -> Path:
    path = tmp_path / "traces.jsonl"
    write_traces(path, [make_trace("proven-1"), unproven(make_trace("unproven-1")), make_trace("proven-2")])
    return path


def exported_ids(out: Path) -> set[str]:
    return {json.loads(line)["id"] for split in SPLITS for line in (out / "openai" / f"{split}.jsonl").open()}


def test_export_leaves_unproven_traces_out_and_says_so(traces: Path, tmp_path: Path) -> None:
    summary = export(traces, tmp_path / "out", ExportConfig(**NO_MODEL))
    assert exported_ids(tmp_path / "out") == {"proven-1", "proven-2"}
    assert summary.filtered == {"unproven": 1}
    filtered = [json.loads(line) for line in (tmp_path / "out" / "filtered.jsonl").open()]
    assert filtered == [{"id": "unproven-1", "line": 2, "reason": "unproven"}]


def test_include_unproven_keeps_them(traces: Path, tmp_path: Path) -> None:
    summary = export(traces, tmp_path / "out", ExportConfig(include_unproven=True, **NO_MODEL))
    assert exported_ids(tmp_path / "out") == {"proven-1", "unproven-1", "proven-2"}
    assert not summary.filtered


def test_the_cli_flag(traces: Path, tmp_path: Path) -> None:
    def run(*flags: str) -> set[str]:
        out = tmp_path / f"out{len(flags)}"
        ise = [sys.executable, "-c", "from ise.cli import main; main()"]
        command = [*ise, "export", "-i", str(traces), "-o", str(out), "--no-render-check"]
        done = subprocess.run([*command, "-c", "export.token_counter=approx", *flags], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return exported_ids(out)

    assert run() == {"proven-1", "proven-2"}
    assert run("--include-unproven") == {"proven-1", "unproven-1", "proven-2"}


def test_the_report_counts_unproven_plans_and_traces_apart(traces: Path) -> None:
    run_dir = traces.parent
    plans = [good_plan(), good_plan().model_copy(update={"id": "other", "proven": False})]
    (run_dir / "plans.jsonl").write_text("".join(p.model_dump_json() + "\n" for p in plans))
    numbers = dict(key_numbers(load_run(run_dir)))
    assert numbers["plans not proven solvable"] == "1 / 2 (50%)"
    assert numbers["of unproven plans (left out of export)"] == "1 / 3 (33%)"
