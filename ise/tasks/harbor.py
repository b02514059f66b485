"""Harbor task directories (Terminal-Bench 2's format) as ise plans, for `ise eval --tasks FOLDER`.

A task folder holds instruction.md (the task text), task.toml (metadata and time limits), environment/Dockerfile,
tests/test.sh (the verifier: uploaded to /tests after the agent, writes /logs/verifier/reward.txt or reward.json)
and optionally solution/solve.sh (what Harbor's oracle agent runs). Each task becomes one single-milestone plan:
- the environment: environment/Dockerfile replayed as fixtures and a setup script (ise/tasks/harbor_dockerfile.py);
  no Dockerfile means ise's workspace image as it is;
- the check: one reward check carrying every file of tests/, run as ise/reward.py runs verifiers (a fresh root-owned
  /tests, the reward files the agent may have planted removed first), from the Dockerfile's WORKDIR, within
  [verifier] timeout_sec;
- the reference solution: solution/ unpacked at /solution and `bash /solution/solve.sh` run from the WORKDIR;
- the profile is admin: Harbor's agents are root, and a verifier needs a writable /tests;
- the budgets are the complexity's ([metadata] difficulty easy/medium/hard), the wall clock [agent] timeout_sec.
A missing instruction.md or tests/test.sh, an empty instruction, or a task.toml that is not TOML or holds a wrongly
typed value is bad input (InputError naming the task folder and the file). A sound task that cannot run here is an
Unimportable with its reason: another base image, a Dockerfile instruction that cannot be replayed, tests or a
solution that need the network, an agent or verifier user other than root, more than CARRY_LIMIT bytes to carry.
"""

from __future__ import annotations

import base64
import io
import re
import shlex
import tarfile
import tomllib
from pathlib import Path
from typing import Any

from ise.config import Config
from ise.errors import InputError
from ise.plan_static import needs_network
from ise.records import (
    Complexity,
    FileFixture,
    Fixtures,
    Origin,
    Plan,
    RewardCheck,
)
from ise.tasks import TaskSet, Unimportable
from ise.tasks.harbor_dockerfile import CARRY_LIMIT, Environment, Untranslatable, file_fixture, translate
from ise.tasks.imported import imported_intent, single_ask_user

SUITE = "harbor"
CHECK_ID = "tests"
COMPLEXITY: dict[str, Complexity] = {"easy": "simple", "medium": "medium", "hard": "complex"}
WORKSPACE_IMAGE = "ise-workspace"


def is_task(folder: Path) -> bool:
    return (folder / "task.toml").is_file() or (folder / "instruction.md").is_file()


def task_folders(path: Path) -> list[Path]:
    """`path` itself when it is a task, else every sub-folder that is one (sorted by name)."""
    if is_task(path):
        return [path]
    return sorted(p for p in path.iterdir() if p.is_dir() and is_task(p))


def load_harbor(path: Path, config: Config) -> TaskSet:
    """Every task under `path` as a plan, or as an Unimportable with the reason (see the module docstring)."""
    folders = task_folders(path)
    if not folders:
        raise InputError(f"{path}: no Harbor tasks here (no folder holds task.toml or instruction.md)")
    tasks = TaskSet(suite=f"{SUITE}:{path.resolve().name}")
    seen: dict[str, Path] = {}
    for folder in folders:
        loaded = load_task(folder, config)
        if isinstance(loaded, Unimportable):
            tasks.unimportable.append(loaded)
            continue
        if loaded.id in seen:
            raise InputError(f"{folder}: task.toml: plan id {loaded.id} is also the id of {seen[loaded.id]}")
        seen[loaded.id] = folder
        tasks.plans.append(loaded)
    return tasks


def load_task(folder: Path, config: Config) -> Plan | Unimportable:
    """One task folder as a plan; InputError for bad input, Unimportable for what cannot run here."""
    instruction = _text(folder, "instruction.md").strip()
    if not instruction:
        raise InputError(f"{folder}: instruction.md is empty")
    _text(folder, "tests/test.sh")
    meta = read_task_toml(folder)
    try:
        environment = _environment(folder, meta, config)
        tests = carried(folder / "tests", "tests")
        solution = _solution(folder, meta, environment)
        _refuse_network(folder)
        _refuse_users(meta)
    except Untranslatable as exc:
        return Unimportable(task_id=folder.name, path=str(folder), reason=str(exc))
    return _plan(folder, meta, instruction, environment, tests, solution, config)


def _text(folder: Path, name: str) -> str:
    path = folder / name
    if not path.is_file():
        raise InputError(f"{folder}: {name} is missing")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{folder}: {name} is not UTF-8 text (byte {exc.start})") from None


# --- task.toml ---------------------------------------------------------------------------------------------------


def read_task_toml(folder: Path) -> dict[str, Any]:
    """task.toml as a table ({} when the folder has none); malformed TOML is an InputError with its line."""
    if not (folder / "task.toml").is_file():
        return {}
    try:
        return tomllib.loads(_text(folder, "task.toml"))
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{folder}: task.toml is not valid TOML: {exc}") from None


def _table(meta: dict[str, Any], folder: Path, name: str) -> dict[str, Any]:
    value = meta.get(name, {})
    if not isinstance(value, dict):
        raise InputError(f"{folder}: task.toml: [{name}] must be a table")
    return value


def _number(meta: dict[str, Any], folder: Path, table: str, key: str) -> float | None:
    value = _table(meta, folder, table).get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise InputError(f"{folder}: task.toml: [{table}] {key} must be a positive number, not {value!r}")
    return float(value)


def _string(meta: dict[str, Any], folder: Path, table: str, key: str) -> str | None:
    value = _table(meta, folder, table).get(key)
    if value is not None and not isinstance(value, str):
        raise InputError(f"{folder}: task.toml: [{table}] {key} must be a string, not {value!r}")
    return value


def _env(meta: dict[str, Any], folder: Path, table: str) -> dict[str, str]:
    value = _table(meta, folder, table).get("env", {})
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise InputError(f"{folder}: task.toml: [{table}] env must be a table of strings")
    for name, text in value.items():
        if "${" in text:
            raise Untranslatable(f"[{table}] env {name} is taken from the host's environment, which ise does not pass")
    return dict(value)


def _refuse_users(meta: dict[str, Any]) -> None:
    for table in ("agent", "verifier"):
        user = meta.get(table, {}).get("user") if isinstance(meta.get(table), dict) else None
        if user not in (None, "root", 0, "0"):
            raise Untranslatable(f"[{table}] user {user!r}: the agent and the verifier here are root")


# --- environment, tests, solution --------------------------------------------------------------------------------


def _environment(folder: Path, meta: dict[str, Any], config: Config) -> Environment:
    images = {config.sandbox.image, WORKSPACE_IMAGE, f"{WORKSPACE_IMAGE}:latest"}
    prebuilt = _string(meta, folder, "environment", "docker_image")
    if prebuilt is not None and prebuilt not in images:
        raise Untranslatable(f"the prebuilt image {prebuilt} cannot be pulled here (no registry)")
    context = folder / "environment"
    if any((context / name).exists() for name in ("docker-compose.yaml", "docker-compose.yml", "compose.yaml")):
        raise Untranslatable("a docker compose environment (several services) is not translated")
    if not (context / "Dockerfile").is_file():
        return Environment()
    return translate(context, images)


def carried(root: Path, what: str) -> list[FileFixture]:
    """Every file under `root` as a root-owned fixture, its path relative to `root`, modes kept."""
    files: list[FileFixture] = []
    total = 0
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        data = path.read_bytes()
        total += len(data)
        if total > CARRY_LIMIT:
            raise Untranslatable(f"{what}/ holds more than {CARRY_LIMIT // 1024} KB, more than a plan carries")
        mode = f"{path.stat().st_mode & 0o777:04o}"
        files.append(file_fixture(path.relative_to(root).as_posix(), data, mode, "root"))
    return files


def archive(files: list[FileFixture]) -> str:
    """`files` as a base64 gzipped tar (their paths as given), for a script to unpack."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for file in files:
            data = base64.b64decode(file.content) if file.encoding == "base64" else file.content.encode()
            info = tarfile.TarInfo(file.path)
            info.size, info.mode, info.mtime = len(data), int(file.mode, 8), 0
            tar.addfile(info, io.BytesIO(data))
    return base64.b64encode(buffer.getvalue()).decode()


def exports(env: dict[str, str]) -> str:
    return "".join(f"export {name}={shlex.quote(value)}\n" for name, value in env.items())


def _solution(folder: Path, meta: dict[str, Any], environment: Environment) -> list[str]:
    """The oracle's one script: solution/ unpacked at /solution, then solve.sh run from the WORKDIR, as Harbor's
    oracle agent does ([] when the task has no solve.sh)."""
    if not (folder / "solution" / "solve.sh").is_file():
        return []
    payload = archive(carried(folder / "solution", "solution"))
    env = {**environment.env, **_env(meta, folder, "solution")}
    return [
        "rm -rf /solution && mkdir -p /solution\n"
        f"printf '%s' {shlex.quote(payload)} | base64 -d | tar -xzf - --no-same-owner -C /solution\n"
        f"{exports(env)}cd {shlex.quote(environment.workdir)} && bash /solution/solve.sh"
    ]


def _refuse_network(folder: Path) -> None:
    for part in ("tests", "solution"):
        for script in sorted((folder / part).rglob("*.sh")) if (folder / part).is_dir() else []:
            if reason := needs_network(script.read_text(encoding="utf-8", errors="replace")):
                raise Untranslatable(f"{part}/{script.relative_to(folder / part)} needs the network ({reason})")


# --- the plan ----------------------------------------------------------------------------------------------------


def plan_id(folder: Path, meta: dict[str, Any]) -> str:
    task = meta.get("task")
    given = task.get("name") if isinstance(task, dict) else None
    name = given if isinstance(given, str) else folder.name
    return f"{SUITE}/" + (re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "task")


def _plan(
    folder: Path,
    meta: dict[str, Any],
    instruction: str,
    environment: Environment,
    tests: list[FileFixture],
    solution: list[str],
    config: Config,
) -> Plan:
    category = _string(meta, folder, "metadata", "category") or SUITE
    complexity = COMPLEXITY.get((_string(meta, folder, "metadata", "difficulty") or "").lower(), "medium")
    identifier = plan_id(folder, meta)
    budgets = config.simulate.budgets[complexity]
    if (wall := _number(meta, folder, "agent", "timeout_sec")) is not None:
        budgets = budgets.model_copy(update={"wall_clock_s": wall})
    check = RewardCheck(
        kind="reward",
        id=CHECK_ID,
        description="the task's own verifier (tests/test.sh) writes reward 1",
        files=tests,
        command=exports({**environment.env, **_env(meta, folder, "verifier")}) + "bash /tests/test.sh",
        workdir=environment.workdir,
        timeout_s=_number(meta, folder, "verifier", "timeout_sec"),
    )
    intent = imported_intent(
        identifier,
        instruction,
        domain=category,
        tasks=[folder.name],
        complexity=complexity,
        deliverable="what tests/test.sh verifies",
        workspace=[f.path for f in environment.files[:6]] or ["ise's workspace image as it is"],
    )
    user = single_ask_user(instruction, [CHECK_ID])
    return Plan(
        id=identifier,
        intent=intent,
        fixtures=Fixtures(files=environment.files, setup_script=environment.setup_script),
        user=user,
        checks=[check],
        budgets=budgets,
        solution=solution,
        profile="admin",
        proven=False,  # the task's authors proved it in Harbor; ise has not run it (ise eval's oracle does)
        origin=Origin(suite=SUITE, task_id=folder.name, category=category, path=str(folder)),
    )
