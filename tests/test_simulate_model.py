"""End to end with the embedded model and real sandboxes: a demo intent becomes a plan that passes the full dry run.

Plans need the 1.5B model (the demo config's simulate model): the 0.5B model got no plan for any demo intent in
4 attempts each. One intent keeps this within a CI budget on 2 cores; the success rate over every demo intent is
measured by bench/simulate_bench.py."""

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

# Up to 4 attempts of the 1.5B model (about 10 tokens/s on 2 cores) writing up to 3,072 tokens per part.
pytestmark = [pytest.mark.model, pytest.mark.docker, pytest.mark.timeout(2700)]
DEMO_CONFIG = Path(__file__).parents[1] / "configs" / "demo.yaml"


def test_the_embedded_model_writes_a_plan_that_survives_the_dry_run(tmp_path: Path) -> None:
    intents, output = tmp_path / "intents.jsonl", tmp_path / "plans.jsonl"
    intents.write_text((DATA / "demo_intents.jsonl").read_text().splitlines()[0] + "\n")  # demo-sales-totals
    # The demo's models, with the full validation: the reference solution must make every check pass.
    config = load_config(
        [str(DEMO_CONFIG), "simulate.max_attempts=4", "simulate.verify_solution=true", "simulate.seeds=[]"]
    )
    with docker_sandboxes() as sandboxes:
        stats = run_simulate(intents, output, config, sandbox_factory=sandboxes, console=Console(width=120))
        plans = list(read_records(output, Plan)) if output.exists() else []
        rejected = errors_path(output).read_text() if errors_path(output).exists() else ""
        assert plans, f"no demo intent got a valid plan; rejections: {rejected}"
        for plan in plans:  # what was kept passes the dry run again, from scratch
            assert validate(plan, sandboxes, config.simulate).problems == []
            assert plan.model == config.llm_for("simulate").model == "qwen2.5-coder-1.5b"
            assert len(plan.solution) == len(plan.user.milestones)
    assert stats["plans"] == len(plans)
    assert stats["plans"] + stats["rejected"] == 1
