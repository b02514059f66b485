"""Plan validation proves answer checks as it proves shell checks, on the real Docker backend: they must reject a
non-answer on the initial state and accept the reference answer (what the milestone's solution prints); and a bad
answer check in a plans file is one clear error that names the line."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from execute_support import make_plan
from simulate_support import docker_sandboxes

from ise.config import SimulateConfig
from ise.plan_validation import validate
from ise.records import AnswerCheck, Milestone, Plan
from ise.sandbox.provider import SandboxFactory

pytestmark = pytest.mark.docker

CFG = SimulateConfig()
ROWS = "tail -n +2 /workspace/sales.csv | wc -l"


@pytest.fixture(scope="module")
def sandboxes() -> Iterator[SandboxFactory]:
    with docker_sandboxes() as factory:
        yield factory


def question(solution: str = ROWS, **check: Any) -> Plan:
    answer = AnswerCheck.model_validate({"kind": "answer", "id": "rows", "description": "row count", **check})
    milestone = Milestone(id="m1", ask="How many data rows does sales.csv have?", checks=["rows"])
    plan = make_plan("question", checks=[answer], milestones=[milestone])
    return plan.model_copy(update={"solution": [solution]})


def problems(plan: Plan, sandboxes: SandboxFactory) -> list[tuple[str, str]]:
    return [(p.kind, p.message) for p in validate(plan, sandboxes, CFG).problems]


@pytest.mark.parametrize(
    "check",
    [
        {"match": "number", "command": ROWS},
        {"match": "number", "expected": "3"},
        {"match": "exact", "command": "echo 3"},
        {"match": "regex", "expected": "^3$"},
        {"match": "one_of", "options": ["3", "three"]},
        {"match": "contains", "expected": "3"},
    ],
)
def test_a_sound_answer_check_is_proven(check: dict[str, Any], sandboxes: SandboxFactory) -> None:
    assert problems(question(**check), sandboxes) == []


def test_an_answer_check_that_accepts_a_non_answer_is_rejected(sandboxes: SandboxFactory) -> None:
    [(kind, message)] = problems(question(match="regex", expected=".+"), sandboxes)
    assert kind == "check_passes"
    assert "accepts the answer 'I do not know.' before any work is done" in message


def test_an_answer_check_that_rejects_the_reference_answer_is_rejected(sandboxes: SandboxFactory) -> None:
    [(kind, message)] = problems(question(match="number", expected="4"), sandboxes)
    assert kind == "solution"
    assert "rejects the reference answer '3': 3 is not 4 (tolerance 0)" in message


def test_a_solution_that_prints_no_answer_is_rejected(sandboxes: SandboxFactory) -> None:
    [(kind, message)] = problems(question(solution=f"{ROWS} > /dev/null", match="number", command=ROWS), sandboxes)
    assert kind == "solution"
    assert "the answer is empty" in message


def test_an_answer_command_that_cannot_run_is_broken(sandboxes: SandboxFactory) -> None:
    found = problems(question(match="exact", command="no-such-tool --count"), sandboxes)
    assert [kind for kind, _ in found] == ["check_broken", "solution"]  # and so it cannot pass once solved either
    assert "cannot run (exit 127)" in found[0][1]
    assert "the check's command failed" in found[1][1]


def test_the_answer_reaches_the_command_on_stdin_and_in_its_environment(sandboxes: SandboxFactory) -> None:
    """A command may judge the answer itself: it prints the answer back only when it is right."""
    judge = '[ "$(cat)" = "$ISE_ANSWER" ] && [ "$ISE_ANSWER" -eq "$(tail -n +2 /workspace/sales.csv | wc -l)" ] && cat'
    assert problems(question(match="exact", command=judge.replace("&& cat", "&& echo $ISE_ANSWER")), sandboxes) == []


@pytest.mark.parametrize(
    ("change", "cause"),
    [
        ({"kind": "essay"}, "does not match any of the expected tags"),
        ({"match": "fuzzy"}, "Input should be 'exact'"),
        ({"match": "regex", "expected": "([a-z"}, "invalid regex"),
        ({"profile": "superuser"}, "profile: Input should be 'user' or 'admin'"),
    ],
)
def test_a_bad_check_or_profile_in_a_plans_file_is_one_line_naming_it(
    tmp_path: Path, change: dict[str, Any], cause: str
) -> None:
    good = question(match="number", command=ROWS)
    bad = good.model_dump(mode="json")
    if "profile" in change:
        bad.update(change)
    else:
        bad["checks"][0].update({"expected": None, "command": None} | change)
    plans, output = tmp_path / "plans.jsonl", tmp_path / "traces.jsonl"
    plans.write_text(good.model_dump_json() + "\n" + json.dumps(bad) + "\n")
    ise = str(Path(sys.executable).with_name("ise"))
    done = subprocess.run([ise, "execute", "-i", plans, "-o", output], capture_output=True, text=True, timeout=120)

    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert line.startswith(f"error: {plans}:2: invalid Plan")
    assert cause in line
    assert not output.exists()
