"""End to end with the embedded model (Qwen2.5-Coder-0.5B, constrained JSON) and real sandboxes: at least one demo
intent becomes a plan that passes the full dry run. The success rate itself is measured by bench/simulate_bench.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console
from simulate_support import DATA, docker_sandboxes

from ise.config import load_config
from ise.jsonl import read_records
from ise.plan_validation import validate
from ise.records import Plan
from ise.runner import errors_path
from ise.stages.simulate import run_simulate

# Up to 3 intents x 4 attempts of the 0.5B model on 2 CPU cores, each with dry runs: well past the default 900 s
# when the machine is shared (measured: >900 s at load 5); a quiet CI machine needs about half.
pytestmark = [pytest.mark.model, pytest.mark.docker, pytest.mark.timeout(2700)]


def test_the_embedded_model_writes_a_plan_that_survives_the_dry_run(tmp_path: Path) -> None:
    output = tmp_path / "plans.jsonl"
    config = load_config(["llm.kind=embedded", "simulate.max_attempts=4"])
    with docker_sandboxes() as sandboxes:
        stats = run_simulate(
            DATA / "demo_intents.jsonl", output, config, sandbox_factory=sandboxes, console=Console(width=120)
        )
        plans = list(read_records(output, Plan)) if output.exists() else []
        rejected = errors_path(output).read_text() if errors_path(output).exists() else ""
        assert plans, f"no demo intent got a valid plan; rejections: {rejected}"
        for plan in plans:  # what was kept passes the dry run again, from scratch
            assert validate(plan, sandboxes, config.simulate).problems == []
            assert plan.model == "qwen2.5-coder-0.5b"
            assert len(plan.solution) == len(plan.user.milestones)
    assert stats["plans"] == len(plans)
    assert stats["plans"] + stats["rejected"] == 3
