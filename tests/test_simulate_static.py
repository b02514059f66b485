"""Plan checks that need no sandbox: structure, sizes, paths, network; drafts -> plans; prompts."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jinja2
import pytest
import yaml
from pydantic import ValidationError

from ise.config import SimulateConfig
from ise.plan_static import Problem, mentioned_paths, static_problems
from ise.prompts import PROMPTS_DIR
from ise.records import AnswerCheck, Complexity, DirFixture, FileFixture, Milestone, Perturbation, Plan, ShellCheck
from ise.scope import resolve_path
from ise.stages.plan_drafts import asks_question, plan_profile
from ise.stages.simulate import (
    CardDraft,
    PlanDraft,
    WorldDraft,
    budgets_for,
    card_messages,
    draft_model,
    plan_from_draft,
    plan_messages,
    render,
    repair_message,
)

GOOD_PLAN = Path(__file__).parent / "data" / "simulate" / "good_plan.yaml"


@pytest.fixture
def plan() -> Plan:
    return Plan.model_validate(yaml.safe_load(GOOD_PLAN.read_text()))


def kinds(problems: list[Problem]) -> list[str]:
    return [p.kind for p in problems]


def with_intent(plan: Plan, **changes: Any) -> Plan:
    return plan.model_copy(update={"intent": plan.intent.model_copy(update=changes)})


def with_files(plan: Plan, *files: FileFixture) -> Plan:
    fixtures = plan.fixtures.model_copy(update={"files": [*plan.fixtures.files, *files]})
    return plan.model_copy(update={"fixtures": fixtures})


def test_the_hand_written_plan_has_no_static_problems(plan: Plan) -> None:
    assert static_problems(plan, SimulateConfig()) == []


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ("the git repository ~/shop with the service", ["~/shop"]),
        ("logs in /var/log/app/*.log, rotated daily", ["/var/log/app/*.log"]),
        ("see ./data/ and src/app.py, and/or CI/CD 24/7", ["./data/", "src/app.py"]),
        ("sales_2023.csv and notes.txt.", ["sales_2023.csv", "notes.txt"]),
        ("a Dockerfile, a .env and http://example.com/x.csv", ["Dockerfile", ".env"]),
        ("settings in ~/.config/app/settings.yaml: broken", ["~/.config/app/settings.yaml"]),
        ("a Node.js project, version 1.2, e.g. nothing else", []),
    ],
)
def test_mentioned_paths_finds_paths_and_file_names_but_not_prose(plan: Plan, item: str, expected: list[str]) -> None:
    assert mentioned_paths(with_intent(plan, workspace=[item]).intent) == expected


def test_paths_resolve_to_the_workspace_or_the_agents_home() -> None:
    assert resolve_path("data/x.csv") == "/workspace/data/x.csv"
    assert resolve_path("~/jobs/run.sh") == "/home/agent/jobs/run.sh"
    assert resolve_path("/etc/app.conf") == "/etc/app.conf"
    assert resolve_path("../../etc/passwd") == "/etc/passwd"


def test_milestone_checks_must_exist_and_ids_be_unique(plan: Plan) -> None:
    milestones = [*plan.user.milestones, Milestone(id="m1", ask="again", checks=["c9"])]
    broken = plan.model_copy(update={"user": plan.user.model_copy(update={"milestones": milestones})})
    messages = [str(p) for p in static_problems(broken, SimulateConfig())]
    assert "milestone id 'm1' is used more than once" in messages
    assert "milestone m1 refers to unknown check 'c9'" in messages


def test_a_milestone_without_checks_is_rejected(plan: Plan) -> None:
    milestones = [*plan.user.milestones, Milestone(id="m3", ask="and then?", checks=[])]
    user = plan.user.model_copy(update={"milestones": milestones})
    broken = plan.model_copy(update={"user": user, "solution": [*plan.solution, "true"]})
    assert [str(p) for p in static_problems(broken, SimulateConfig())] == ["milestone m3 has no success check"]


@pytest.mark.parametrize(
    ("perturbation", "message"),
    [
        (Perturbation(id="p9", description="d", script="true"), "needs exactly one of at_user_turn and when"),
        (
            Perturbation(id="p9", description="d", script="true", at_user_turn=1, when="true"),
            "needs exactly one of at_user_turn and when",
        ),
        (Perturbation(id="p9", description="d", script="true", at_user_turn=9), "fires at user turn 9 of 5"),
    ],
)
def test_perturbation_triggers_are_checked(plan: Plan, perturbation: Perturbation, message: str) -> None:
    broken = plan.model_copy(update={"perturbations": [*plan.perturbations, perturbation]})
    problems = static_problems(broken, SimulateConfig())
    assert kinds(problems) == ["structure"]
    assert message in str(problems[0])


@pytest.mark.parametrize(
    "script",
    ["pip install requests", "apt-get install -y jq", "curl -s https://example.com/data.csv -o x", "git clone x@y:z"],
)
def test_scripts_that_need_the_network_are_rejected(plan: Plan, script: str) -> None:
    fixtures = plan.fixtures.model_copy(update={"setup_script": script})
    problems = static_problems(plan.model_copy(update={"fixtures": fixtures}), SimulateConfig())
    assert kinds(problems) == ["network"]
    assert "setup script needs the network" in str(problems[0])


def test_local_network_calls_are_allowed(plan: Plan) -> None:
    checks = [*plan.checks, ShellCheck(id="c4", description="up", command="curl -sf http://localhost:8080/health")]
    assert static_problems(plan.model_copy(update={"checks": checks}), SimulateConfig()) == []


def test_fixtures_outside_the_workspace_need_a_system_intent_or_a_mention(plan: Plan) -> None:
    outside = with_files(plan, FileFixture(path="/etc/shop/app.conf", content="port=8080\n"))
    problems = static_problems(outside, SimulateConfig())
    assert kinds(problems) == ["path"]
    assert "/etc/shop/app.conf is outside /workspace" in str(problems[0])
    assert static_problems(with_intent(outside, domain="network"), SimulateConfig()) == []
    mentioned = with_intent(outside, workspace=[*plan.intent.workspace, "the config /etc/shop/app.conf"])
    assert static_problems(mentioned, SimulateConfig()) == []


def test_relative_paths_cannot_escape_the_workspace(plan: Plan) -> None:
    problems = static_problems(with_files(plan, FileFixture(path="../../etc/cron.d/x", content="")), SimulateConfig())
    assert [str(p) for p in problems] == ["file ../../etc/cron.d/x escapes /workspace"]


def test_size_caps(plan: Plan) -> None:
    present = sum(len(f.content) for f in plan.fixtures.files)
    cfg = SimulateConfig(max_files=3, max_file_bytes=400, max_total_bytes=present + 400)
    big = with_files(plan, FileFixture(path="big.log", content="x" * 401))
    messages = [str(p) for p in static_problems(big, cfg)]
    assert messages == [
        "4 files, more than the cap of 3",
        "file big.log is 401 bytes, more than 400",
        f"fixtures hold {present + 401} bytes, more than {present + 400}",
    ]


def test_broken_fixture_fields_are_caught_before_any_sandbox(plan: Plan) -> None:
    broken = with_files(
        plan,
        FileFixture(path="blob.bin", content="not base64!", encoding="base64"),
        FileFixture(path="run.sh", content="", mode="rwxr-xr-x"),
        FileFixture(path="logs/app.log", content="duplicate"),
    )
    broken = broken.model_copy(
        update={"fixtures": broken.fixtures.model_copy(update={"dirs": [DirFixture(path="run.sh")]})}
    )
    assert [str(p) for p in static_problems(broken, SimulateConfig())] == [
        "file blob.bin: content is not valid base64",
        "file run.sh: mode 'rwxr-xr-x' is not octal like 0644",
        "file logs/app.log is listed twice",
        "dir run.sh is also listed as a file",
    ]


def test_root_run_scripts_must_not_use_tilde(plan: Plan) -> None:
    checks = [*plan.checks, ShellCheck(id="c4", description="d", command="test -f ~/shop/NEWS")]
    perturbations = [*plan.perturbations, Perturbation(id="p3", description="d", script="rm ~/x", at_user_turn=2)]
    broken = plan.model_copy(update={"checks": checks, "perturbations": perturbations})
    assert [str(p) for p in static_problems(broken, SimulateConfig())] == [
        "check c4 runs as root, where ~ is /root: write /home/agent instead",
        "perturbation p3 runs as root, where ~ is /root: write /home/agent instead",
    ]


def test_solutions_match_the_milestones(plan: Plan) -> None:
    short = plan.model_copy(update={"solution": plan.solution[:1]})
    assert [str(p) for p in static_problems(short, SimulateConfig())] == ["1 solutions for 2 milestones"]
    empty = plan.model_copy(update={"solution": [plan.solution[0], "  "]})
    assert [str(p) for p in static_problems(empty, SimulateConfig())] == ["the solution of milestone m2 is empty"]


# --- drafts -> plans ---------------------------------------------------------------------------------------------


def example_answer(*, with_card: bool, name: str = "export") -> dict[str, Any]:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(PROMPTS_DIR), undefined=jinja2.StrictUndefined)
    answer: dict[str, Any] = json.loads(
        env.get_template(f"plan_example_{name}.jinja").render(with_card=with_card, question=True)
    )
    return answer


@pytest.mark.parametrize(("name", "complexity"), [("logs", "simple"), ("export", "medium"), ("count", "simple")])
def test_the_prompts_examples_are_valid_drafts_in_both_modes(name: str, complexity: Complexity) -> None:
    draft_model(complexity, with_card=False).model_validate(example_answer(with_card=False, name=name))
    draft_model(complexity, with_card=True).model_validate(example_answer(with_card=True, name=name))


def test_draft_schemas_leave_room_for_one_more_milestone_and_perturbation_than_asked() -> None:
    for complexity, (milestones, perturbations) in {"simple": (2, 1), "medium": (3, 2), "complex": (4, 3)}.items():
        schema = draft_model(complexity, with_card=False).model_json_schema()  # type: ignore[arg-type]
        assert schema["title"] == "WorldDraft"
        assert schema["properties"]["milestones"]["maxItems"] == milestones
        assert schema["properties"]["perturbations"]["maxItems"] == perturbations
        assert "maxLength" not in json.dumps(schema)  # llama.cpp refuses or crawls through long counted strings
    assert issubclass(draft_model("simple", with_card=True), PlanDraft)


def test_a_draft_becomes_a_plan_with_ids_paths_and_setup_filled_in(plan: Plan) -> None:
    world = WorldDraft.model_validate(example_answer(with_card=False))
    card = CardDraft(voice="curt", hidden_facts=[], on_failure="complain", on_question="", on_partial="ok")
    result = plan_from_draft(plan.intent, world, card, SimulateConfig(), attempts=2, model="m")
    assert [f.path for f in result.fixtures.files] == ["/home/agent/jobs/export.sh", "/workspace/schema.sql"]
    assert [f.mode for f in result.fixtures.files] == ["0644", "0644"]
    assert [(m.id, m.checks) for m in result.user.milestones] == [("m1", ["m1c1"]), ("m2", ["m2c1", "m2c2"])]
    assert result.solution == [m["solution"] for m in example_answer(with_card=False)["milestones"]]
    assert [(c.id, c.expect_exit, c.expect_stdout) for c in result.checks] == [
        ("m1c1", 0, None),
        ("m2c1", 0, "2"),
        ("m2c2", 1, None),
    ]
    assert [(p.id, p.at_user_turn, p.when) for p in result.perturbations] == [("p1", 2, None)]
    assert result.fixtures.setup_script is not None
    assert result.fixtures.setup_script.startswith("set -e\nrunuser -u agent -- ")
    assert "sqlite3 orders.db < schema.sql" in result.fixtures.setup_script
    assert (result.user.persona, result.user.on_failure, result.user.on_partial) == ("curt", "complain", "ok")
    assert result.user.on_question == "Answer from hidden facts when relevant; otherwise say you don't know."
    assert (result.attempts, result.model, result.id) == (2, "m", plan.intent.id)
    assert result.profile == "user"
    assert static_problems(result, SimulateConfig()) == []


def test_a_file_written_twice_keeps_its_last_content(plan: Plan) -> None:
    answer = example_answer(with_card=False)
    first = answer["files"][0]
    answer["files"].append(first | {"path": "./" + first["path"].removeprefix("~/"), "content": "first\n"})
    answer["files"].append(first | {"content": "last\n"})
    result = plan_from_draft(
        plan.intent, WorldDraft.model_validate(answer), None, SimulateConfig(), attempts=1, model=""
    )
    paths = [f.path for f in result.fixtures.files]
    assert sorted(paths) == sorted(set(paths))
    by_path = {f.path: f.content for f in result.fixtures.files}
    assert by_path[resolve_path(first["path"])] == "last\n"
    assert static_problems(result, SimulateConfig()) == []


def test_a_condition_replaces_the_turn_and_turns_are_clamped(plan: Plan) -> None:
    answer = example_answer(with_card=False)
    answer["perturbations"] = [
        {"description": "a", "script": "true", "at_user_turn": 3, "when": " test -f /workspace/out "},
        {"description": "b", "script": "true", "at_user_turn": 19, "when": ""},
    ]
    result = plan_from_draft(
        plan.intent, WorldDraft.model_validate(answer), None, SimulateConfig(), attempts=1, model=""
    )
    assert [(p.at_user_turn, p.when) for p in result.perturbations] == [(None, "test -f /workspace/out"), (5, None)]


def test_tilde_in_root_run_scripts_means_the_agents_home(plan: Plan) -> None:
    answer = example_answer(with_card=False)
    answer["milestones"][0]["checks"][0]["command"] = "test -x ~/jobs/export.sh && ls ~ && echo '~user' $HOME/~"
    answer["perturbations"][0] |= {"script": "mv ~/jobs /tmp/", "when": "test -d ~/jobs"}
    answer["setup_as_root"] = "chmod 600 ~/jobs/export.sh"
    result = plan_from_draft(
        plan.intent, WorldDraft.model_validate(answer), None, SimulateConfig(), attempts=1, model=""
    )
    assert result.checks[0].command == "test -x /home/agent/jobs/export.sh && ls /home/agent && echo '~user' $HOME/~"
    assert (result.perturbations[0].script, result.perturbations[0].when) == (
        "mv /home/agent/jobs /tmp/",
        "test -d /home/agent/jobs",
    )
    assert (result.fixtures.setup_script or "").endswith("cd /workspace\nchmod 600 /home/agent/jobs/export.sh")
    assert "~/jobs" in result.solution[0]  # the solution runs as the agent: its ~ is right
    no_solution = SimulateConfig(verify_solution=False)
    assert (
        plan_from_draft(
            plan.intent, WorldDraft.model_validate(answer), None, no_solution, attempts=1, model=""
        ).solution
        == []
    )


def test_awks_match_operator_in_a_root_run_script_is_not_a_home(plan: Plan) -> None:
    answer = example_answer(with_card=False)
    check = "awk '$3 ~ /acme/ && $1 !~ /^#/' ~/jobs/out.csv | grep -q 'x ~/y'"
    answer["milestones"][0]["checks"][0]["command"] = check
    result = plan_from_draft(
        plan.intent, WorldDraft.model_validate(answer), None, SimulateConfig(), attempts=1, model=""
    )
    assert result.checks[0].command == check.replace("~/jobs", "/home/agent/jobs").replace("~/y", "/home/agent/y")
    assert static_problems(result, SimulateConfig()) == []
    raw = result.model_copy(
        update={"checks": [result.checks[0].model_copy(update={"command": check}), *result.checks[1:]]}
    )
    assert [p.kind for p in static_problems(raw, SimulateConfig())] == ["path"]  # ~/jobs outside quotes


def test_budgets_come_from_complexity_with_room_for_every_milestone() -> None:
    cfg = SimulateConfig()
    assert budgets_for("simple", 1, cfg) == cfg.budgets["simple"]
    assert budgets_for("simple", 4, cfg).max_user_turns == 5
    assert budgets_for("complex", 2, cfg).max_agent_steps_per_turn == cfg.budgets["complex"].max_agent_steps_per_turn


def test_no_draft_setup_means_no_setup_script(plan: Plan) -> None:
    answer = example_answer(with_card=False) | {"setup_as_agent": "  ", "setup_as_root": ""}
    result = plan_from_draft(
        plan.intent, WorldDraft.model_validate(answer), None, SimulateConfig(), attempts=1, model=""
    )
    assert result.fixtures.setup_script is None


# --- answer milestones and profiles ------------------------------------------------------------------------------


def answer_world(**answer: str) -> dict[str, Any]:
    """The question example, its answer changed by `answer`."""
    world = example_answer(with_card=False, name="count")
    world["milestones"][0]["answer"] |= answer
    return world


def test_a_question_milestone_becomes_an_answer_check_computed_from_the_state(plan: Plan) -> None:
    world = answer_world(expected_from="awk 'END {print NR}' ~/web/access.log")
    result = plan_from_draft(
        plan.intent, WorldDraft.model_validate(world), None, SimulateConfig(), attempts=1, model=""
    )
    assert [(m.id, m.checks) for m in result.user.milestones] == [("m1", ["m1a1"])]
    [check] = result.checks
    assert isinstance(check, AnswerCheck)
    assert (check.kind, check.id, check.match, check.expected) == ("answer", "m1a1", "number", None)
    assert check.command == "awk 'END {print NR}' /home/agent/web/access.log"  # run as root: ~ spelled out
    assert check.description.startswith("answers: how many requests failed with a 5xx")
    assert result.solution == [world["milestones"][0]["solution"]]
    assert static_problems(result, SimulateConfig()) == []


def test_answer_and_shell_checks_share_a_milestone_in_order(plan: Plan) -> None:
    world = example_answer(with_card=False, name="export")
    world["milestones"][1]["answer"] = {"match": "contains", "expected": " acme ", "expected_from": ""}
    result = plan_from_draft(
        plan.intent, WorldDraft.model_validate(world), None, SimulateConfig(), attempts=1, model=""
    )
    assert [m.checks for m in result.user.milestones] == [["m1c1"], ["m2c1", "m2c2", "m2a1"]]
    answer = result.checks[-1]
    assert isinstance(answer, AnswerCheck)
    assert (answer.match, answer.expected, answer.command) == ("contains", "acme", None)


@pytest.mark.parametrize(
    ("answer", "expected", "command"),
    [
        ({"match": "number", "expected": "3 requests", "expected_from": ""}, "3", None),
        ({"match": "number", "expected": "1,250", "expected_from": ""}, "1,250", None),
        ({"match": "number", "expected": "about 2.5 GB", "expected_from": ""}, "2.5", None),
        (
            {"match": "number", "expected": "4", "expected_from": " wc -l < /workspace/logs/access.log "},
            None,
            "wc -l < /workspace/logs/access.log",
        ),
        ({"match": "regex", "expected": r"^web-\d+$", "expected_from": ""}, r"^web-\d+$", None),
    ],
)
def test_literal_answers_are_tidied_and_a_command_wins_over_a_literal(
    plan: Plan, answer: dict[str, str], expected: str | None, command: str | None
) -> None:
    result = plan_from_draft(
        plan.intent, WorldDraft.model_validate(answer_world(**answer)), None, SimulateConfig(), attempts=1, model=""
    )
    [check] = result.checks
    assert isinstance(check, AnswerCheck)
    assert (check.expected, check.command) == (expected, command)


@pytest.mark.parametrize(
    ("answer", "checks", "error"),
    [
        ({"match": "none"}, [], 'a milestone needs checks, or an answer whose match is not "none"'),
        ({"match": "contains", "expected": " ", "expected_from": ""}, [], "expected and expected_from are both empty"),
        ({"match": "number", "expected": "many", "expected_from": ""}, [], "'many' holds no number"),
        ({"match": "regex", "expected": "web-(", "expected_from": ""}, [], "is not a valid regex"),
        ({"match": "maybe"}, [], "Input should be 'none', 'exact', 'contains', 'number' or 'regex'"),
    ],
)
def test_unusable_answers_are_schema_errors_before_any_sandbox(
    answer: dict[str, str], checks: list[Any], error: str
) -> None:
    world = answer_world(**answer)
    world["milestones"][0]["checks"] = checks
    with pytest.raises(ValidationError, match=re.escape(error)):
        draft_model("simple", with_card=False).model_validate(world)


def test_the_draft_schema_round_trips_and_keeps_every_answer_field_required() -> None:
    model = draft_model("medium", with_card=True)
    for name in ("logs", "export", "count"):
        answer = example_answer(with_card=True, name=name)
        assert model.model_validate_json(json.dumps(answer)).model_dump(mode="json") == answer
    schema = model.model_json_schema()
    defs = schema["$defs"]
    assert defs["AnswerDraft"]["required"] == ["match", "expected", "expected_from"]
    assert defs["AnswerDraft"]["properties"]["match"]["enum"] == ["none", "exact", "contains", "number", "regex"]
    assert set(defs["MilestoneDraft"]["required"]) == {"ask", "solution", "checks", "answer"}
    assert "minItems" not in defs["MilestoneDraft"]["properties"]["checks"]  # a question needs no shell check
    assert "maxLength" not in json.dumps(schema)


@pytest.mark.parametrize(
    ("domain", "profile"), [("services", "admin"), (" Security ", "admin"), ("automation", "admin"), ("logs", "user")]
)
def test_system_domains_get_the_admin_profile(plan: Plan, domain: str, profile: str) -> None:
    world = WorldDraft.model_validate(example_answer(with_card=False, name="count"))
    intent = plan.intent.model_copy(update={"domain": domain})
    assert plan_from_draft(intent, world, None, SimulateConfig(), attempts=1, model="").profile == profile
    assert plan_profile(intent, SimulateConfig()) == profile
    assert plan_profile(intent, SimulateConfig(system_domains=["logs"])) == ("admin" if domain == "logs" else "user")


def test_the_prompt_says_what_the_profile_allows(plan: Plan) -> None:
    user_system, user_request = plan_messages(plan.intent, with_card=False)
    assert "Only /workspace, /home/agent and /tmp are writable" in (user_system.content or "")
    assert "useradd" not in (user_system.content or "")
    admin = plan.intent.model_copy(update={"domain": "services"})
    admin_system, admin_request = plan_messages(admin, with_card=False, cfg=SimulateConfig())
    assert "The agent works as root" in (admin_system.content or "")
    assert "users and groups (useradd -m, groupadd)" in (admin_system.content or "")
    assert "The agent works as root here (admin)" in (admin_request.content or "")
    assert "(admin)" not in (user_request.content or "")


def test_answers_are_taught_only_for_a_request_that_asks_something(plan: Plan) -> None:
    asking = plan.intent.model_copy(update={"request": "How many orders failed last night? Check shop.db."})
    telling = plan.intent.model_copy(update={"request": "Export the paid orders from shop.db to orders.csv."})
    assert asks_question(asking)
    assert not asks_question(telling)
    for intent, taught in ((asking, True), (telling, False)):
        system, request = plan_messages(intent, with_card=False)
        assert ("Example 3 (simple: 1 milestone, a question)" in (system.content or "")) is taught
        assert ('"expected_from"' in (system.content or "")) is taught
        assert ('is a milestone with an "answer"' in (request.content or "")) is taught


def test_answer_problems_get_answer_advice(plan: Plan) -> None:
    problems = [
        Problem("check_passes", "check m1a1 (answer ...) accepts the answer 'I do not know.'", "m1a1"),
        Problem("solution", "answer check m2a1 (...) rejects the reference answer ''", "m2a1"),
    ]
    repair = repair_message(problems).content or ""
    assert 'An "answer" that accepts "" or "I do not know." checks nothing' in repair
    assert 'The reference answer is what the step\'s "solution" prints' in repair
    assert "A check that already passes proves nothing" not in repair
    assert "Each check must pass once the solutions have run" not in repair
    shell = repair_message([Problem("solution", "check m1c1 still fails", "m1c1")]).content or ""
    assert "Each check must pass once the solutions have run" in shell
    assert "reference answer" not in shell


# --- prompts -----------------------------------------------------------------------------------------------------


def test_prompts_render_the_intent_and_the_problems(plan: Plan) -> None:
    system, user = plan_messages(plan.intent, with_card=False)
    assert "EVERY CHECK MUST FAIL NOW" in (system.content or "")
    assert '"voice"' not in (system.content or "")
    assert plan.intent.request in (user.content or "")
    assert "- shop.db, a sqlite database with an incidents table" in (user.content or "")
    assert "2 milestones and 1 perturbation." in (user.content or "")
    assert '"voice"' in (plan_messages(plan.intent, with_card=True)[0].content or "")
    repair = repair_message([Problem("check_passes", "check m1c1 already passes")]).content or ""
    assert "- check m1c1 already passes" in repair
    assert "A check that already passes proves nothing" in repair
    world = WorldDraft.model_validate(example_answer(with_card=False))
    card_prompt = card_messages(plan.intent, world)[0].content or ""
    assert "1. my export script in ~/jobs/export.sh is broken" in card_prompt


def test_prompts_fail_loudly_on_a_missing_value() -> None:
    with pytest.raises(jinja2.UndefinedError):
        render("plan_repair.jinja", problems=[])


@pytest.mark.parametrize(
    ("script", "needs"),
    [
        ("mkdir -p /home/deploy/.ssh && chmod 700 /home/deploy/.ssh", False),
        ("cat /var/log/ping.log | wc -l", False),
        ("cd /srv/nc-data && ls", False),
        ("ssh backup@host ls", True),
        ("x=1; curl -s http://example.com", True),
        ("git clone https://example.com/repo.git", True),
    ],
)
def test_only_network_programs_run_as_commands_count_as_network_use(plan: Plan, script: str, needs: bool) -> None:
    plan.fixtures.setup_script = script
    found = [p.message for p in static_problems(plan, SimulateConfig()) if p.kind == "network"]
    assert bool(found) is needs, found
