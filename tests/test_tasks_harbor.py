"""Harbor task folders in: six tasks written for ise's image (tests/data/harbor) import as plans that the oracle
passes and the do-nothing agent fails on the real engine, through `ise eval`; bad folders are one clear error each;
tasks that cannot run here are listed with the reason; agents that plant a reward or edit the tests fail."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from ise.config import Config
from ise.errors import InputError
from ise.llm.scripted import ScriptedLLM
from ise.records import Message, Plan, RewardCheck, ToolSpec
from ise.sandbox.provider import Sandboxes, open_provider
from ise.stages.evaluate import run_eval, summary_path
from ise.tasks import TaskSet, load_tasks
from ise.tasks.harbor import load_harbor

DATA = Path(__file__).parent / "data"
GOOD = DATA / "harbor"
BAD = DATA / "harbor_bad"
ISE = Path(sys.executable).with_name("ise")
CONFIG = Config()


def plans_by_task(tasks: TaskSet) -> dict[str, Plan]:
    return {p.origin.task_id: p for p in tasks.plans if p.origin is not None}


# --- on paper ----------------------------------------------------------------------------------------------------


def test_every_good_folder_is_one_plan_with_its_origin() -> None:
    tasks = load_tasks(str(GOOD), CONFIG)
    assert tasks.unimportable == []
    plans = plans_by_task(tasks)
    assert sorted(plans) == sorted(p.name for p in GOOD.iterdir())
    assert plans["build-index"].id == "harbor/ise-tests-build-index"  # [task].name, sanitised
    for name, plan in plans.items():
        assert plan.profile == "admin"
        assert plan.origin is not None
        assert plan.origin.path == str(GOOD / name)
        assert plan.intent.request == (GOOD / name / "instruction.md").read_text().strip()
        [check] = plan.checks
        assert isinstance(check, RewardCheck)
        assert plan.user.milestones[0].checks == [check.id]
        assert {f.path for f in check.files} == {
            p.relative_to(GOOD / name / "tests").as_posix() for p in (GOOD / name / "tests").rglob("*") if p.is_file()
        }
        assert len(plan.solution) == 1


def test_the_dockerfile_becomes_fixtures_setup_workdir_and_env() -> None:
    plans = plans_by_task(load_tasks(str(GOOD), CONFIG))
    count = plans["count-errors"]
    assert count.origin is not None
    assert count.origin.category == "logs"
    assert count.intent.complexity == "simple"
    assert count.budgets.wall_clock_s == 240
    [check] = count.checks
    assert isinstance(check, RewardCheck)
    assert (check.workdir, check.timeout_s) == ("/srv/shop", 60)
    assert "export SHOP_HOME=/srv/shop" in check.command
    assert "cd /srv/shop && bash /solution/solve.sh" in count.solution[0]
    [log] = count.fixtures.files
    assert (log.path, log.owner, log.mode) == ("/srv/shop/logs/app.log", "root", "0644")
    assert "'LOG_LEVELS=INFO ERROR'" in (count.fixtures.setup_script or "")
    perms = plans["fix-permissions"]
    assert {(f.path, f.owner, f.mode) for f in perms.fixtures.files} == {
        ("/opt/deploy/run.sh", "agent", "0644"),
        ("/opt/deploy/secret.env", "agent", "0644"),
    }
    assert perms.intent.complexity == "complex"
    [blob] = plans["checksum-blob"].fixtures.files
    assert blob.encoding == "base64"
    assert blob.owner == "agent"
    assert "/bin/bash -o pipefail -c" in (plans["build-index"].fixtures.setup_script or "")
    assert plans["hello-file"].fixtures.files == []
    assert plans["hello-file"].fixtures.setup_script is None


@pytest.mark.parametrize(
    ("folder", "message"),
    [
        ("no-instruction", "harbor_bad/no-instruction: instruction.md is missing"),
        ("no-tests", "harbor_bad/no-tests: tests/test.sh is missing"),
        ("bad-toml", "harbor_bad/bad-toml: task.toml is not valid TOML: Invalid value (at line 3, column 14)"),
    ],
)
def test_a_bad_task_folder_is_one_error_naming_the_folder_and_file(folder: str, message: str) -> None:
    with pytest.raises(InputError) as caught:
        load_harbor(BAD / folder, CONFIG)
    assert str(caught.value).endswith(message)
    assert "\n" not in str(caught.value)


def test_the_cli_says_it_in_one_line_and_writes_nothing(tmp_path: Path) -> None:
    output = tmp_path / "eval.jsonl"
    done = subprocess.run(
        [ISE, "eval", "--tasks", BAD / "bad-toml", "--agent", "oracle", "-o", output],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "bad-toml: task.toml is not valid TOML" in done.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("folder", "reason"),
    [
        ("from-ubuntu", "Dockerfile line 1: base image ubuntu:24.04 cannot be built here (no registry)"),
        ("needs-network", "tests/test.sh needs the network ('uvx ')"),
    ],
)
def test_a_task_that_cannot_run_here_is_listed_with_its_reason(folder: str, reason: str) -> None:
    tasks = load_harbor(BAD / folder, CONFIG)
    assert tasks.plans == []
    [skipped] = tasks.unimportable
    assert (skipped.task_id, skipped.path) == (folder, str(BAD / folder))
    assert skipped.reason.startswith(reason)


def write_task(folder: Path, dockerfile: str, toml: str = 'version = "1.0"\n') -> Path:
    (folder / "environment").mkdir(parents=True)
    (folder / "tests").mkdir()
    (folder / "instruction.md").write_text("Do the thing.\n")
    (folder / "task.toml").write_text(toml)
    (folder / "environment" / "Dockerfile").write_text(dockerfile)
    (folder / "environment" / "data.tar.gz").write_bytes(b"\x1f\x8b")
    (folder / "tests" / "test.sh").write_text("echo 1 > /logs/verifier/reward.txt\n")
    return folder


@pytest.mark.parametrize(
    ("dockerfile", "toml", "reason"),
    [
        ("FROM ise-workspace\nFROM ise-workspace\n", "", "Dockerfile line 2: multi-stage builds"),
        ("FROM ise-workspace\nUSER nobody\n", "", "Dockerfile line 2: USER nobody: the agent of an imported task"),
        ("FROM ise-workspace\nADD https://example.invalid/x /x\n", "", "Dockerfile line 2: ADD https://"),
        ("FROM ise-workspace\nADD data.tar.gz /srv/\n", "", "Dockerfile line 2: ADD of the archive data.tar.gz"),
        ("FROM ise-workspace\nCOPY --from=build /x /x\n", "", "Dockerfile line 2: COPY --from is not"),
        ("FROM ise-workspace\nRUN --mount=type=cache,target=/c true\n", "", "Dockerfile line 2: RUN --mount"),
        ("FROM ise-workspace\nRUN apt-get install -y jq\n", "", "Dockerfile line 2: RUN needs the network"),
        ("FROM ise-workspace\nCOPY missing.txt /x\n", "", "Dockerfile line 2: the source missing.txt is not"),
        ("FROM ise-workspace\nCOPY --chown=www-data data.tar.gz /x\n", "", "Dockerfile line 2: --chown=www-data"),
        ("FROM ise-workspace\n", '[agent]\nuser = "agent"\n', "[agent] user 'agent'"),
        ("FROM ise-workspace\n", '[environment]\ndocker_image = "org/img:1"\n', "the prebuilt image org/img:1"),
    ],
)
def test_what_cannot_be_replayed_is_unimportable(tmp_path: Path, dockerfile: str, toml: str, reason: str) -> None:
    [skipped] = load_harbor(write_task(tmp_path / "t", dockerfile, toml or 'version = "1.0"\n'), CONFIG).unimportable
    assert skipped.reason.startswith(reason), skipped.reason


def test_tests_too_large_to_carry_are_unimportable(tmp_path: Path) -> None:
    folder = write_task(tmp_path / "big", "FROM ise-workspace:latest\n")
    (folder / "tests" / "data.bin").write_bytes(b"x" * 300_000)
    [skipped] = load_harbor(folder, CONFIG).unimportable
    assert skipped.reason == "tests/ holds more than 256 KB, more than a plan carries"


def test_a_wrongly_typed_value_names_the_key(tmp_path: Path) -> None:
    folder = write_task(tmp_path / "t", "FROM ise-workspace\n", '[verifier]\ntimeout_sec = "soon"\n')
    with pytest.raises(InputError, match=r"t: task.toml: \[verifier\] timeout_sec must be a positive number"):
        load_harbor(folder, CONFIG)


# --- on the engine -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sandboxes() -> Iterator[Sandboxes]:
    with open_provider(CONFIG.sandbox, run_id="pytest-harbor") as factory:
        yield factory


@pytest.mark.docker
def test_ise_eval_oracle_passes_every_task(tmp_path: Path) -> None:
    output = tmp_path / "eval.jsonl"
    done = subprocess.run(
        [ISE, "eval", "-c", "workers=2", "--tasks", GOOD, "--agent", "oracle", "-o", output],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(summary_path(output).read_text())
    assert [(t["passed"], t["attempts"]) for t in summary["tasks"]] == [(1, 1)] * 6
    assert summary["unimportable"] == []
    assert summary["not_run"] == []


@pytest.mark.docker
def test_the_null_agent_passes_none(tmp_path: Path, sandboxes: Sandboxes) -> None:
    tasks = load_tasks(str(GOOD), CONFIG)
    summary = run_eval(tasks, tmp_path / "null.jsonl", CONFIG, agent="null", workers=2, sandbox_factory=sandboxes)
    assert [(t.passed, t.attempts) for t in summary.tasks] == [(0, 1)] * 6


def acting_agent(command: str) -> ScriptedLLM:
    """An agent that runs `command` once, then says it is done."""

    def respond(messages: Sequence[Message], tools: Sequence[ToolSpec], schema: dict[str, Any] | None) -> Any:
        if any(m.role == "tool" for m in messages):
            return {"content": "Done."}
        return {"tool_calls": [{"name": "bash", "arguments": {"command": command}}]}

    return ScriptedLLM(responder=respond)


PLANT_REWARD = (
    "mkdir -p /logs/verifier && echo 1 > /logs/verifier/reward.txt"
    " && echo '{\"reward\": 1}' > /logs/verifier/reward.json"
)
EDIT_TESTS = (
    "mkdir -p /tests && printf '#!/bin/bash\\necho 1 > /logs/verifier/reward.txt\\n' > /tests/test.sh"
    " && chmod 0777 /tests/test.sh && chmod -R 0777 /tests"
)


@pytest.mark.docker
@pytest.mark.parametrize("command", [PLANT_REWARD, EDIT_TESTS], ids=["plants-a-reward", "edits-the-tests"])
def test_an_agent_that_games_the_verifier_fails(tmp_path: Path, sandboxes: Sandboxes, command: str) -> None:
    tasks = load_harbor(GOOD / "hello-file", CONFIG)
    output = tmp_path / "eval.jsonl"
    summary = run_eval(tasks, output, CONFIG, agent="llm", llm=acting_agent(command), sandbox_factory=sandboxes)
    [task] = summary.tasks
    assert (task.passed, task.attempts) == (0, 1)
    [trace] = [json.loads(line) for line in output.read_text().splitlines()]
    assert trace["steps"][0]["exit_code"] == 0  # the planting worked inside the episode
    [verdict] = trace["outcome"]["checks"]
    assert verdict["reward"] == 0.0
