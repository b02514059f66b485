"""`ise eval`: the estimators against known values, and the stage on the real Docker backend — the controls
(oracle passes, null fails), attempts with pass@k, errors kept apart, resume, the CLI and its bad input."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from execute_support import docker_engine  # noqa: F401  (a fixture, requested by name)
from typer.testing import CliRunner

from ise.cli import app
from ise.config import Config
from ise.controls import stdout_of
from ise.evalstats import pass_at_k, pass_hat_k, suite_figure, wilson
from ise.jsonl import read_records
from ise.llm.scripted import Reply, ScriptedLLM
from ise.records import Message, Plan, ToolSpec
from ise.stages.evaluate import run_eval
from ise.tasks import TaskSet
from ise.trace_file import load_traces

DATA = Path(__file__).resolve().parent.parent / "bench" / "data" / "verifiable_tasks.jsonl"
PLANS = {plan.id: plan for plan in read_records(DATA, Plan, unique_ids=True)}
SINGLE = ["info-log-error-count", "info-config-key", "admin-group-members", "admin-stop-service"]
"""Tasks a single message can finish: an answer (number, regex) and root's system work (a group, a service)."""
TWO_ANSWERS = "info-largest-file-owner"


# --- the estimators ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "c", "k", "expected"),
    [
        (10, 3, 1, 0.3),
        (10, 3, 2, 1 - 21 / 45),  # 1 - C(7,2)/C(10,2)
        (10, 3, 8, 1.0),  # fewer than 8 failures: some passing attempt is always drawn
        (5, 0, 3, 0.0),
        (5, 5, 5, 1.0),
        (2, 1, 2, 1.0),
        (20, 4, 5, 1 - math.comb(16, 5) / math.comb(20, 5)),
    ],
)
def test_pass_at_k_is_the_unbiased_estimator(n: int, c: int, k: int, expected: float) -> None:
    assert pass_at_k(n, c, k) == pytest.approx(expected)


def test_pass_hat_k_is_the_chance_that_all_k_pass() -> None:
    assert pass_hat_k(10, 3, 2) == pytest.approx(3 / 45)
    assert pass_hat_k(4, 4, 4) == 1.0
    assert pass_hat_k(4, 3, 4) == 0.0
    assert pass_hat_k(3, 2, 1) == pytest.approx(2 / 3)  # pass^1 is pass@1


def test_estimators_refuse_impossible_counts() -> None:
    with pytest.raises(ValueError, match="k <= n"):
        pass_at_k(2, 1, 3)
    with pytest.raises(ValueError, match="c <= n"):
        pass_hat_k(2, 3, 1)


def test_wilson_interval_matches_textbook_values() -> None:
    low, high = wilson(0.5, 10)
    assert (round(low, 4), round(high, 4)) == (0.2366, 0.7634)
    low, high = wilson(1.0, 36)
    assert round(low, 4) == 0.9036
    assert high == 1.0
    assert wilson(0.0, 0) == (0.0, 1.0)


def test_suite_figure_averages_tasks_and_skips_those_without_k_attempts() -> None:
    figure = suite_figure([(2, 1), (2, 2), (1, 1)], 2)
    assert figure is not None
    assert figure["tasks"] == 2
    assert figure["value"] == pytest.approx(1.0)
    hat = suite_figure([(2, 1), (2, 2)], 2, all_pass=True)
    assert hat is not None
    assert hat["value"] == pytest.approx(0.5)
    assert suite_figure([(1, 0)], 2) is None


# --- the stage on the real engine ----------------------------------------------------------------------------


def _tasks(*ids: str, extra: Sequence[Plan] = ()) -> TaskSet:
    return TaskSet(suite="test", plans=[PLANS[i] for i in ids] + list(extra))


def _config(tmp_path: Path) -> Config:
    return Config(run_dir=tmp_path, workers=2)


@pytest.mark.docker
@pytest.mark.usefixtures("docker_engine")
def test_oracle_passes_every_task_and_null_none(tmp_path: Path) -> None:
    tasks = _tasks(*SINGLE, TWO_ANSWERS)
    oracle = run_eval(tasks, tmp_path / "oracle.jsonl", _config(tmp_path), agent="oracle")
    assert [t.id for t in oracle.tasks] == SINGLE
    assert all(t.passed == t.attempts == 1 for t in oracle.tasks), [t.cause for t in oracle.tasks]
    assert oracle.overall.pass_at_1 is not None
    assert oracle.overall.pass_at_1["value"] == 1.0
    assert [n["task_id"] for n in oracle.not_run] == [TWO_ANSWERS]  # one message cannot carry two answers
    assert "--multi-turn" in oracle.not_run[0]["reason"]

    null = run_eval(tasks, tmp_path / "null.jsonl", _config(tmp_path), agent="null")
    assert all(t.passed == 0 and t.attempts == 1 for t in null.tasks)
    assert all(t.cause for t in null.tasks)  # every miss says why
    traces = load_traces(tmp_path / "null.jsonl")
    assert all(len(t.messages) == 3 and t.messages[1].content == PLANS[t.id].intent.request for t in traces)

    summary = json.loads((tmp_path / "oracle.summary.json").read_text())
    assert summary["overall"]["pass_at_1"]["value"] == 1.0
    assert set(summary["categories"]) == {PLANS[i].intent.domain for i in SINGLE}
    page = (tmp_path / "oracle.html").read_text()
    assert all(task_id in page for task_id in SINGLE)
    assert TWO_ANSWERS in page


@pytest.mark.docker
@pytest.mark.usefixtures("docker_engine")
def test_multi_turn_runs_the_user_card_and_scores_every_answer(tmp_path: Path) -> None:
    tasks = _tasks(TWO_ANSWERS)
    oracle = run_eval(tasks, tmp_path / "oracle.jsonl", _config(tmp_path), agent="oracle", multi_turn=True)
    assert oracle.tasks[0].passed == 1
    assert not oracle.not_run
    (trace,) = load_traces(tmp_path / "oracle.jsonl")
    assert trace.turns == 2  # one user turn per milestone
    null = run_eval(tasks, tmp_path / "null.jsonl", _config(tmp_path), agent="null", multi_turn=True)
    assert null.tasks[0].passed == 0


class _FlakyAgent:
    """Answers "I do not know." in its first episode and does the reference work in every later one (one bash call
    with the task's only script, then its stdout). With workers=1 the episodes come in order."""

    def __init__(self, plan: Plan) -> None:
        (self.script,) = plan.solution
        self.episodes = 0

    def __call__(self, messages: Sequence[Message], tools: Sequence[ToolSpec], schema: dict[str, Any] | None) -> Reply:
        if len(messages) == 2:  # system + the request: a new episode starts
            self.episodes += 1
        if self.episodes == 1:
            return {"content": "I do not know."}
        if messages[-1].role != "tool":
            return {"tool_calls": [{"name": "bash", "arguments": {"command": self.script}}]}
        return {"content": stdout_of(messages[-1].content or "")}


@pytest.mark.docker
@pytest.mark.usefixtures("docker_engine")
def test_attempts_give_pass_at_k_and_resume_exactly_once(tmp_path: Path) -> None:
    plan = PLANS["info-log-error-count"]
    out = tmp_path / "eval.jsonl"
    config = Config(run_dir=tmp_path, workers=1)
    agent = ScriptedLLM(responder=_FlakyAgent(plan))
    summary = run_eval(_tasks(plan.id), out, config, attempts=2, llm=agent)
    (task,) = summary.tasks
    assert (task.attempts, task.passed) == (2, 1)
    assert summary.overall.pass_at_1 is not None
    assert summary.overall.pass_at_1["value"] == 0.5
    assert summary.overall.pass_at_k is not None
    assert summary.overall.pass_at_k["value"] == 1.0
    assert summary.overall.pass_hat_k is not None
    assert summary.overall.pass_hat_k["value"] == 0.0
    traces = load_traces(out)
    assert [t.id for t in traces] == [plan.id, f"{plan.id}.a1"]
    assert [t.env.attempt for t in traces] == [0, 1]
    assert traces[0].env.seed != traces[1].env.seed
    assert [t.outcome.passed for t in traces] == [False, True]

    again = run_eval(_tasks(plan.id), out, config, attempts=2, llm=ScriptedLLM())  # nothing left to ask it
    assert len(load_traces(out)) == 2
    assert again.tasks == summary.tasks


@pytest.mark.docker
@pytest.mark.usefixtures("docker_engine")
def test_a_setup_error_is_counted_apart_never_as_the_agents_failure(tmp_path: Path) -> None:
    good = PLANS["info-log-error-count"]
    broken = good.model_copy(
        update={"id": "broken-setup", "fixtures": good.fixtures.model_copy(update={"setup_script": "exit 3"})}
    )
    summary = run_eval(_tasks(good.id, extra=[broken]), tmp_path / "eval.jsonl", _config(tmp_path), agent="oracle")
    result = {t.id: t for t in summary.tasks}["broken-setup"]
    assert (result.attempts, result.passed, result.setup_errors) == (0, 0, 1)
    assert result.cause is not None
    assert result.cause.startswith("setup_error")
    assert summary.overall.setup_errors == 1
    assert summary.overall.pass_at_1 is not None
    assert (summary.overall.pass_at_1["value"], summary.overall.pass_at_1["tasks"]) == (1.0, 1)


# --- the command line ----------------------------------------------------------------------------------------


@pytest.mark.docker
@pytest.mark.usefixtures("docker_engine")
def test_cli_evaluates_a_plans_file(tmp_path: Path) -> None:
    plans = tmp_path / "plans.jsonl"
    plans.write_text("".join(PLANS[i].model_dump_json() + "\n" for i in SINGLE[:2]))
    out = tmp_path / "runs" / "eval.jsonl"
    result = CliRunner().invoke(
        app, ["eval", "--tasks", str(plans), "-o", str(out), "--agent", "oracle", "--workers", "2"]
    )
    assert result.exit_code == 0, result.output
    assert len(load_traces(out)) == 2
    assert json.loads(out.with_name("eval.summary.json").read_text())["overall"]["pass_at_1"]["value"] == 1.0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tasks", "no-such-suite"], "unknown task source 'no-such-suite'"),
        (["--tasks", "agentbench-os:train"], "agentbench-os"),
        (["--tasks", str(DATA), "--agent", "human"], "--agent must be one of llm, oracle, null"),
    ],
)
def test_cli_bad_input_is_one_line_and_writes_nothing(tmp_path: Path, args: list[str], message: str) -> None:
    out = tmp_path / "eval.jsonl"
    result = CliRunner().invoke(app, ["eval", *args, "-o", str(out)])
    assert result.exit_code == 2
    assert message in result.output
    assert not out.exists()
    assert not list(tmp_path.iterdir())
