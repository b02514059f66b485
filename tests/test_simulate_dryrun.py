"""Plan validation on the real Docker backend: hand-written good and bad plans, each dry-run in a fresh sandbox."""

from __future__ import annotations

import json
from collections.abc import Iterator

import jinja2
import pytest
from simulate_support import docker_sandboxes, good_plan, intent

from ise.config import SimulateConfig
from ise.plan_validation import validate
from ise.prompts import PROMPTS_DIR
from ise.records import Check, FileFixture, Perturbation, Plan, ShellCheck
from ise.sandbox.base import SandboxError
from ise.sandbox.config import SandboxConfig
from ise.sandbox.provider import SandboxFactory
from ise.stages.simulate import WorldDraft, plan_from_draft

pytestmark = pytest.mark.docker

CFG = SimulateConfig()


@pytest.fixture(scope="module")
def sandboxes() -> Iterator[SandboxFactory]:
    with docker_sandboxes() as factory:
        yield factory


@pytest.fixture
def plan() -> Plan:
    return good_plan()


def problems_of(plan: Plan, sandboxes: SandboxFactory) -> list[tuple[str, str]]:
    return [(p.kind, p.message) for p in validate(plan, sandboxes, CFG).problems]


def with_checks(plan: Plan, *checks: Check) -> Plan:
    return plan.model_copy(update={"checks": [*plan.checks, *checks]})


def with_perturbations(plan: Plan, *perturbations: Perturbation) -> Plan:
    return plan.model_copy(update={"perturbations": [*plan.perturbations, *perturbations]})


def test_a_good_plan_passes_the_dry_run(plan: Plan, sandboxes: SandboxFactory) -> None:
    validation = validate(plan, sandboxes, CFG)
    assert validation.problems == []
    assert validation.ok


def test_a_check_that_already_passes_is_rejected(plan: Plan, sandboxes: SandboxFactory) -> None:
    plan = with_checks(
        plan,
        ShellCheck(id="c4", description="the log is there", command="test -f /workspace/logs/app.log"),
        ShellCheck(id="c5", description="no crash", command="grep -q Traceback /workspace/logs/app.log", expect_exit=1),
        ShellCheck(id="c6", description="two lines", command="wc -l < /workspace/schema.sql", expect_stdout="1"),
    )
    problems = problems_of(plan, sandboxes)
    assert [kind for kind, _ in problems] == ["check_passes"] * 3
    assert "check c4 ('test -f /workspace/logs/app.log') already passes before any work is done" in problems[0][1]
    assert "check c5" in problems[1][1]
    assert "check c6" in problems[2][1]


def test_a_check_that_cannot_run_is_rejected(plan: Plan, sandboxes: SandboxFactory) -> None:
    plan = with_checks(plan, ShellCheck(id="c4", description="lint", command="shellcheck /workspace/run.sh"))
    [(kind, message), (then, after_solution)] = problems_of(plan, sandboxes)
    assert kind == "check_broken"
    assert "check c4 ('shellcheck /workspace/run.sh') cannot run (exit 127)" in message
    assert "shellcheck: command not found" in message
    assert then == "solution"
    assert after_solution.startswith("check c4 ('shellcheck /workspace/run.sh') still fails after the solution ran")


def test_a_check_that_writes_is_rejected(plan: Plan, sandboxes: SandboxFactory) -> None:
    """It would also disturb the checks after it: checks only look."""
    writer = ShellCheck(
        id="c4", description="d", command="echo x >> /workspace/report.txt; grep -q done /workspace/report.txt"
    )
    [(kind, message), _] = problems_of(with_checks(plan, writer), sandboxes)
    assert (kind, message) == (
        "check_writes",
        "the checks changed /workspace/report.txt; a check must only look, not write",
    )


def test_git_housekeeping_by_a_reading_check_is_not_a_write(plan: Plan, sandboxes: SandboxFactory) -> None:
    reader = ShellCheck(id="c4", description="d", command="cd /home/agent/shop && git status --short && test -f NEWS")
    solution = [*plan.solution[:-1], plan.solution[-1] + "touch /home/agent/shop/NEWS\n"]
    assert problems_of(with_checks(plan, reader).model_copy(update={"solution": solution}), sandboxes) == []


def test_a_check_the_solution_cannot_satisfy_is_rejected(plan: Plan, sandboxes: SandboxFactory) -> None:
    """It fails at first, as it should, but it would fail forever: it proves nothing either."""
    wrong = ShellCheck(id="c4", description="d", command="grep -qx '/api/cart,1' /workspace/report/errors.csv")
    [(kind, message)] = problems_of(with_checks(plan, wrong), sandboxes)
    assert kind == "solution"
    assert message == (
        "check c4 (\"grep -qx '/api/cart,1' /workspace/report/errors.csv\") still fails after the solution ran: "
        "wanted exit 0, got exit 1, stdout '', stderr ''; fix the check or the solution"
    )


def test_a_solution_that_fails_is_rejected_with_its_error(plan: Plan, sandboxes: SandboxFactory) -> None:
    broken = plan.model_copy(update={"solution": ["awk -f /workspace/count.awk logs/app.log", plan.solution[1]]})
    [(kind, message)] = problems_of(broken, sandboxes)
    assert kind == "solution"
    assert message.startswith("the solution of milestone m1 exited 2: awk: fatal: cannot open source file")


def test_checks_see_the_initial_state_before_any_perturbation(plan: Plan, sandboxes: SandboxFactory) -> None:
    """p1 renames app.log to app.log.1: a check for app.log.1 would pass if perturbations ran first."""
    plan = with_checks(plan, ShellCheck(id="c4", description="rotated", command="test -f /workspace/logs/app.log.1"))
    solution = [*plan.solution[:-1], plan.solution[-1] + "cp logs/app.log logs/app.log.1\n"]
    assert problems_of(plan.model_copy(update={"solution": solution}), sandboxes) == []


def test_a_fixture_that_cannot_be_written_is_rejected_with_its_error(plan: Plan, sandboxes: SandboxFactory) -> None:
    nested = FileFixture(path="/workspace/logs/app.log/extra.txt", content="x")
    fixtures = plan.fixtures.model_copy(update={"files": [*plan.fixtures.files, nested]})
    [(kind, message)] = problems_of(plan.model_copy(update={"fixtures": fixtures}), sandboxes)
    assert kind == "fixture"
    # the sandbox's own error, passed on word for word (app.log is a file, so its "directory" cannot be made)
    assert message == "fixtures could not be applied: fixture /workspace/logs/app.log/extra.txt: File exists"


def test_a_fixture_on_the_read_only_system_is_rejected(plan: Plan, sandboxes: SandboxFactory) -> None:
    system = plan.model_copy(update={"intent": plan.intent.model_copy(update={"domain": "services"})})
    fixture = FileFixture(path="/etc/shop/app.conf", content="port=8080\n", owner="root")
    fixtures = system.fixtures.model_copy(update={"files": [*system.fixtures.files, fixture]})
    [(kind, message)] = problems_of(system.model_copy(update={"fixtures": fixtures}), sandboxes)
    assert kind == "fixture"
    assert "fixture /etc/shop/app.conf: Read-only file system" in message


def test_a_broken_setup_script_is_rejected_with_its_error(plan: Plan, sandboxes: SandboxFactory) -> None:
    script = (plan.fixtures.setup_script or "") + "sqlite3 /workspace/data/shop.db 'CREATE TABLE t (a)'\n"
    fixtures = plan.fixtures.model_copy(update={"setup_script": script})
    [(kind, message)] = problems_of(plan.model_copy(update={"fixtures": fixtures}), sandboxes)
    assert kind == "setup"
    assert message.startswith("the setup script failed: fixture setup script failed (exit 1)")
    assert "unable to open database" in message


def test_a_perturbation_that_fails_is_rejected(plan: Plan, sandboxes: SandboxFactory) -> None:
    lost = Perturbation(id="p3", description="gone", script="mv /workspace/cart.json /tmp/", at_user_turn=3)
    [(kind, message)] = problems_of(with_perturbations(plan, lost), sandboxes)
    assert kind == "perturbation"
    assert message.startswith("perturbation p3 exited 1: mv: cannot stat '/workspace/cart.json'")


def test_perturbations_run_in_firing_order(plan: Plan, sandboxes: SandboxFactory) -> None:
    """Listed out of order, the chmod only works after the move that fires one turn earlier."""
    later = Perturbation(id="p4", description="lock it", script="chmod 000 /workspace/moved.sql", at_user_turn=4)
    earlier = Perturbation(
        id="p3", description="move it", script="mv /workspace/schema.sql /workspace/moved.sql", at_user_turn=3
    )
    assert problems_of(with_perturbations(plan, later, earlier), sandboxes) == []


def test_a_broken_trigger_condition_is_rejected(plan: Plan, sandboxes: SandboxFactory) -> None:
    broken = Perturbation(id="p3", description="d", script="true", when="test -f /workspace/a -a (")
    [(kind, message)] = problems_of(with_perturbations(plan, broken), sandboxes)
    assert kind == "trigger"
    assert message == "perturbation p3 condition 'test -f /workspace/a -a (' is broken: exit 2"


def test_paths_the_intent_mentions_must_exist(plan: Plan, sandboxes: SandboxFactory) -> None:
    workspace = [*plan.intent.workspace, "the runbook ~/shop/RUNBOOK.md", "yesterday's export orders_0501.csv"]
    plan = plan.model_copy(update={"intent": plan.intent.model_copy(update={"workspace": workspace})})
    problems = problems_of(plan, sandboxes)
    assert problems == [
        ("consistency", "the intent says the workspace has '~/shop/RUNBOOK.md', but nothing in the plan creates it"),
        ("consistency", "the intent says the workspace has 'orders_0501.csv', but nothing in the plan creates it"),
    ]


def test_writes_outside_the_workspace_are_caught_where_the_root_is_writable(
    plan: Plan, sandboxes: SandboxFactory
) -> None:
    script = (plan.fixtures.setup_script or "") + "echo 'alias ll=ls' > /etc/profile.d/shop.sh\n"
    plan = plan.model_copy(update={"fixtures": plan.fixtures.model_copy(update={"setup_script": script})})
    services = plan.model_copy(update={"intent": plan.intent.model_copy(update={"domain": "services"})})
    with docker_sandboxes(SandboxConfig(read_only_root=False)) as writable:
        assert [(p.kind, p.message) for p in validate(plan, writable, CFG).problems] == [
            ("scope", "the plan writes /etc/profile.d/shop.sh, outside /workspace and /home/agent")
        ]
        assert validate(services, writable, CFG).problems == []


def test_a_sandbox_that_breaks_is_an_infrastructure_error_not_a_plan_problem(
    plan: Plan, sandboxes: SandboxFactory
) -> None:
    """The setup script stops the container's main process: that must raise, not be shown to the model."""
    script = (plan.fixtures.setup_script or "") + "kill -9 $(pgrep -x sleep)\nsleep 5\n"
    plan = plan.model_copy(update={"fixtures": plan.fixtures.model_copy(update={"setup_script": script})})
    with pytest.raises(SandboxError):
        validate(plan, sandboxes, CFG)


EXAMPLE_INTENTS = {
    "logs": {
        "request": "which IPs keep failing to log in? check ~/web/access.log and put them in /workspace/suspects.txt",
        "workspace": ["the web server log ~/web/access.log"],
        "complexity": "simple",
    },
    "export": {
        "request": "The nightly export in ~/jobs/export.sh stopped working; it should write "
        "/workspace/exports/orders.csv from orders.db with only the paid orders.",
        "workspace": ["the export script ~/jobs/export.sh", "orders.db, a sqlite database of orders"],
        "complexity": "medium",
    },
    "count": {
        "request": "how many requests failed with a 5xx yesterday (may 2)? the nginx log is /workspace/logs/access.log",
        "workspace": ["the nginx log /workspace/logs/access.log"],
        "complexity": "simple",
    },
}


@pytest.mark.parametrize("name", EXAMPLE_INTENTS)
def test_the_prompts_worked_examples_are_themselves_valid_plans(name: str, sandboxes: SandboxFactory) -> None:
    """What the small model imitates must pass the same validation it will face."""
    example = intent().model_copy(update=EXAMPLE_INTENTS[name])
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(PROMPTS_DIR), undefined=jinja2.StrictUndefined)
    answer = json.loads(env.get_template(f"plan_example_{name}.jinja").render(with_card=False, question=True))
    draft = plan_from_draft(example, WorldDraft.model_validate(answer), None, CFG, attempts=1, model="")
    assert validate(draft, sandboxes, CFG).problems == []
    if name == "count":  # the question's answer is checked, and the truth is computed from the state
        assert [(c.kind, c.id, c.command is not None) for c in draft.checks] == [("answer", "m1a1", True)]
