"""The check lint against a labelled set of shell checks (tests/data/check_lint.yaml): every bad check is caught
for its own reason and every good one passes, so precision and recall are both 1.0 on the set."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from simulate_support import good_plan

from ise.config import SimulateConfig
from ise.plan_lint import lint_check
from ise.plan_static import static_problems
from ise.plan_validation import disproved, without
from ise.records import FileFixture, Plan, RewardCheck, ShellCheck
from ise.stages.plan_drafts import repair_message

LABELLED: dict[str, list[dict[str, Any]]] = yaml.safe_load(
    (Path(__file__).parent / "data" / "check_lint.yaml").read_text()
)


def as_check(entry: dict[str, Any]) -> ShellCheck:
    fields = {k: v for k, v in entry.items() if k != "rule"}
    return ShellCheck(id="m1c1", description="labelled", **fields)


def test_the_set_is_big_enough_to_mean_something() -> None:
    assert len(LABELLED["bad"]) >= 25
    assert len(LABELLED["good"]) >= 25
    assert {e["rule"] for e in LABELLED["bad"]} == {"forced", "constant", "never", "grep_files", "always_prints"}


@pytest.mark.parametrize("entry", LABELLED["bad"], ids=lambda e: e["command"][:60])
def test_a_bad_check_is_caught_for_its_reason(entry: dict[str, Any]) -> None:
    finding = lint_check(as_check(entry))
    assert finding is not None
    assert finding.rule == entry["rule"]


@pytest.mark.parametrize("entry", LABELLED["good"], ids=lambda e: e["command"][:60])
def test_a_good_check_passes(entry: dict[str, Any]) -> None:
    assert lint_check(as_check(entry)) is None


def test_precision_and_recall_are_one() -> None:
    caught = [lint_check(as_check(e)) for e in LABELLED["bad"]]
    alarms = [lint_check(as_check(e)) for e in LABELLED["good"]]
    true_positives = sum(f is not None and f.rule == e["rule"] for f, e in zip(caught, LABELLED["bad"], strict=True))
    false_positives = sum(f is not None for f in alarms)
    assert true_positives / len(caught) == 1.0  # recall
    assert true_positives / (true_positives + false_positives) == 1.0  # precision


def test_the_message_says_what_forces_the_outcome_and_what_to_do() -> None:
    check = ShellCheck(
        id="m1c1",
        description="no broken target",
        command="find /home/agent/data -type l | grep -q broken_target1 || true",
        expect_exit=1,
    )
    finding = lint_check(check)
    assert finding is not None
    assert finding.message == (
        "always exits 0 (`|| true` decides), so it can never exit 1 as expected; drop `|| true` and let the "
        "test's own exit code decide"
    )


def test_grep_names_the_words_it_reads_as_files() -> None:
    check = ShellCheck(id="c", description="pages", command="ls | grep -q page1.txt page2.txt page3.txt")
    finding = lint_check(check)
    assert finding is not None
    assert "grep reads page2.txt page3.txt as files to search" in finding.message


@pytest.mark.parametrize(
    "command",
    [
        "case $x in a) true;; esac",
        "if test -f /workspace/a; then exit 0; fi",
        "cat <<EOF\nx\nEOF",
        "echo 'unbalanced",
        "set -e; test -f /workspace/a; true",
    ],
)
def test_syntax_the_lint_does_not_read_is_left_to_the_dry_run(command: str) -> None:
    assert lint_check(ShellCheck(id="c", description="opaque", command=command)) is None


def with_check(plan: Plan, check: ShellCheck | RewardCheck, milestone: int = 0) -> Plan:
    milestones = list(plan.user.milestones)
    proven = milestones[milestone]
    milestones[milestone] = proven.model_copy(update={"checks": [*proven.checks, check.id]})
    user = plan.user.model_copy(update={"milestones": milestones})
    return plan.model_copy(update={"checks": [*plan.checks, check], "user": user})


FORCED = ShellCheck(
    id="c9", description="no stray link", command="find /workspace -type l | grep -q x || true", expect_exit=1
)


def test_a_linted_check_is_a_static_problem_the_repair_prompt_explains() -> None:
    plan = with_check(good_plan(), FORCED)
    [problem] = static_problems(plan, SimulateConfig())
    assert (problem.kind, problem.subject) == ("check_lint", "c9")
    assert problem.message.startswith("check c9 ('find /workspace -type l | grep -q x || true') always exits 0")
    prompt = repair_message([problem]).content or ""
    assert problem.message in prompt
    assert "No `|| true`, `; exit 0` or `|| echo` after the test" in prompt


def test_a_linted_check_is_dropped_when_its_milestone_keeps_another() -> None:
    plan = with_check(good_plan(), FORCED)
    problems = static_problems(plan, SimulateConfig())
    assert disproved(plan, problems) == {"c9"}
    assert static_problems(without(plan, {"c9"}), SimulateConfig()) == []


def test_a_reward_check_needs_the_admin_profile() -> None:
    reward = RewardCheck(
        kind="reward", id="r1", description="verifier", files=[FileFixture(path="test.sh", content="exit 0\n")]
    )
    plan = with_check(good_plan(), reward)
    [problem] = static_problems(plan, SimulateConfig())
    assert (problem.kind, problem.subject) == ("structure", "r1")
    assert "reward check r1 needs the admin profile" in problem.message
    assert static_problems(plan.model_copy(update={"profile": "admin"}), SimulateConfig()) == []
