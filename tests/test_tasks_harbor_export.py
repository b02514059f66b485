"""Harbor task folders out and back: ise plans -> oracle trajectories -> `ise export --format harbor` -> import ->
the oracle and the do-nothing agent get the same verdicts as on the original plans, on the real engine."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from execute_support import make_plan

from ise import check_rules
from ise.config import Config
from ise.jsonl import write_atomic
from ise.records import AnswerCheck, Milestone, Plan, ShellCheck
from ise.sandbox.provider import Sandboxes, open_provider
from ise.stages.evaluate import run_eval
from ise.tasks import TaskSet
from ise.tasks.harbor import load_harbor

pytestmark = pytest.mark.docker

ISE = Path(sys.executable).with_name("ise")
CONFIG = Config()
ROWS = "tail -n +2 /workspace/sales.csv | wc -l"


def report_plan() -> Plan:
    """Two milestones, agent-owned files, a setup script, a check on who owns the result (the agent user)."""
    plan = make_plan("rows-report")
    owned = ShellCheck(
        id="owned", description="count.txt is the agent's", command="test $(stat -c %U /workspace/count.txt) = agent"
    )
    milestones = [plan.user.milestones[0].model_copy(update={"checks": ["count", "owned"]}), plan.user.milestones[1]]
    return plan.model_copy(
        update={
            "checks": [*plan.checks, owned],
            "user": plan.user.model_copy(update={"milestones": milestones}),
            "fixtures": plan.fixtures.model_copy(update={"setup_script": "chmod 0640 /workspace/sales.csv"}),
            "solution": [f"{ROWS} > count.txt", "echo 'report ready' > report.txt"],
        }
    )


def question_plan() -> Plan:
    """An answer check whose truth comes from the final state."""
    check = AnswerCheck(kind="answer", id="rows", description="row count", match="number", command=ROWS)
    milestone = Milestone(id="m1", ask="How many data rows does sales.csv have?", checks=["rows"])
    plan = make_plan("question", checks=[check], milestones=[milestone])
    return plan.model_copy(update={"solution": [ROWS]})


@pytest.fixture(scope="module")
def sandboxes() -> Iterator[Sandboxes]:
    with open_provider(CONFIG.sandbox, run_id="pytest-harbor-export") as factory:
        yield factory


def verdicts(tasks: TaskSet, output: Path, agent: str, sandboxes: Sandboxes) -> dict[str, bool]:
    summary = run_eval(tasks, output, CONFIG, agent=agent, workers=2, sandbox_factory=sandboxes)  # type: ignore[arg-type]
    return {t.id.removeprefix("harbor/"): t.passed == t.attempts for t in summary.tasks}


def test_exported_tasks_score_as_the_plans_did(tmp_path: Path, sandboxes: Sandboxes) -> None:
    plans = [report_plan(), question_plan()]
    run = tmp_path / "run"
    run.mkdir()
    write_atomic(run / "plans.jsonl", plans)
    original = TaskSet(suite="plans", plans=plans)
    oracle = verdicts(original, run / "traces.jsonl", "oracle", sandboxes)
    null = verdicts(original, tmp_path / "null.jsonl", "null", sandboxes)
    assert oracle == {"rows-report": True, "question": True}
    assert null == {"rows-report": False, "question": False}

    out = tmp_path / "sft"
    cli = [ISE, "export", "-i", run / "traces.jsonl", "-o", out, "--format", "harbor", "--no-render-check"]
    done = subprocess.run(cli, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    folder = out / "harbor"
    assert sorted(p.name for p in folder.iterdir()) == ["question", "rows-report"]
    task = folder / "question"
    assert (task / "tests" / "check_rules.py").read_bytes() == Path(check_rules.__file__).read_bytes()
    meta = tomllib.loads((task / "task.toml").read_text())
    assert meta["version"] == "1.0"
    assert meta["metadata"]["ise"]["plan_id"] == "question"
    assert meta["metadata"]["ise"]["trace_id"] == "question"
    assert "/logs/agent/answer.txt" in (task / "instruction.md").read_text()
    dockerfile = (folder / "rows-report" / "environment" / "Dockerfile").read_text()
    assert dockerfile.startswith("# Written by ise")
    assert "\nFROM ise-workspace:latest\n" in dockerfile
    assert "COPY --chown=1000:1000 --chmod=0644 files/workspace/sales.csv /workspace/sales.csv" in dockerfile

    back = load_harbor(folder, CONFIG)
    assert back.unimportable == []
    assert verdicts(back, tmp_path / "back-oracle.jsonl", "oracle", sandboxes) == oracle
    assert verdicts(back, tmp_path / "back-null.jsonl", "null", sandboxes) == null


def test_an_answer_the_agent_got_wrong_fails_the_exported_verifier(tmp_path: Path) -> None:
    """The exported verifier, run here on the host as Harbor would run it in the container, applies ise's rule."""
    answers = tmp_path / "answer.txt"
    spec = tmp_path / "checks.json"
    check = {"kind": "answer", "id": "n", "match": "number", "expected": "3", "answer_file": str(answers)}
    spec.write_text(json.dumps({"timeout_s": 5, "workdir": str(tmp_path), "checks": [check]}))
    rules = Path(check_rules.__file__)
    for answer, reward in (("**3** rows.", "1"), ("4", "0"), ("", "0")):
        answers.write_text(answer)
        subprocess.run([sys.executable, rules, spec, tmp_path / "reward.txt"], check=True, capture_output=True)
        assert (tmp_path / "reward.txt").read_text().strip() == reward, answer
