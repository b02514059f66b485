"""AgentBench-OS as ise plans, read from the data files of the installed inspect-evals package (no network, and
none of inspect-evals' code is imported: it needs inspect_ai, which ise does not install).

Splits: dev (`agent_bench_os.json`, 26 tasks) and test (`agent_bench_os_test.json`, 119). Each task becomes one
single-milestone plan `agentbench-os/<split>-<id:03d>` under the admin profile, or an Unimportable with its reason.

The suite's world. AgentBench's agent is root in a container whose home and working directory is its home (the
original's /root; inspect-evals' copy moved it to /home/agent and rewrote its test file to say so). In ise's admin
profile the agent is root too, with HOME=/root, so the home is /root: every `/home/agent` in a task's record (its
description, init, example, check code) is read as `/root`, and /root is where the suite's own scripts run. The
script files the package ships (scripts/check, checking, example) are used as they are. inspect-evals rewrote the
original's /usr to its home too; `/home/agent/{local,bin,sbin,lib,include,share}` are read back as /usr's trees
(`count /usr/local`, sudoers' secure_path).
- `create.init` (code, a script string, a script file, or a list of those in order) is the setup script, run as
  root from /root in a login shell, as the suite's image build runs it. `<random-string>` becomes a fixed string
  derived from the task, so a plan is the same on every import. Init files the package does not ship (11 tasks:
  init/stock-log.sh, init/nested_folders.sh, ...) make the task Unimportable. A `create` that is not a mapping
  (dev 10 and test 25 hold a check's shape there) has no init. `init_at_start` needs nothing: ise's setup runs in
  the live container, where background processes it starts keep running.
- `start` (a command left running, written `... &`) is launched last in the setup with setsid and nohup, detached
  from the setup's shell and output, so it outlives the setup and the agent sees it running.
- An init that sets `user` (the agent works as that user) cannot be expressed: ise's admin agent is root.

Checks. The scorer looks at `evaluation.check` first, then `evaluation.match`:
- a check script (`{"file"}`, `{"code"}` or `["<command>"]`) is a ShellCheck: the script runs as root from /root in a
  login shell, and its exit status decides;
- `[null, {"language": "python", "file": "check/<comparator>.py"}]` is an AnswerCheck with match `script`: the
  expected value is `match` when the task has one (the dev split; the scorer prefers it), else what the `example`
  code prints at check time (run like a check script, stripped); `verify` runs the comparator's own text with
  python3 on (answer, expected), so the suite's rule decides (integer-match's int() rejects "3 files", size-match
  reads 4.0K as 4096, string-match strips and normalises newlines);
- a bare `match` is an AnswerCheck `exact`, case-sensitive. AgentBench compares str(match) == answer; ise's
  normalisation also strips surrounding whitespace, quotes, markdown marks and a trailing `.`/`!`/`;`, so it errs
  towards accepting: "`log`." passes here and fails there, never the other way round.
Any other shape is Unimportable with the shape in its reason.

Reference solution (what the oracle runs; its stdout is the reference answer): the `evaluation.example` code or
file, run like a check script. A `match` task without one answers with the literal itself, which proves only that
its check accepts the right answer, not that the answer can be found. Literals that describe the suite's image
(core counts, user and group counts, ulimits, sizes of /home) do not hold in ise's: the oracle misses those, and
bench/agentbench_bench.py lists each with its check's output. Every plan is checked by ise/plan_static.py, and
what it rejects is Unimportable with its problems as the reason.

Where ise differs from the suite, beyond the image: ise's agent starts in /workspace, not in its home (a task's
relative paths land in /root, which some descriptions call the current directory); the answer compared is the
agent's whole final message, where AgentBench's agent submits the bare answer.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
import uuid
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ise.config import Config
from ise.errors import InputError
from ise.plan_static import static_problems
from ise.records import (
    AnswerCheck,
    Check,
    Fixtures,
    Origin,
    Plan,
    ShellCheck,
)
from ise.tasks import AGENTBENCH, TaskSet, Unimportable
from ise.tasks.imported import imported_intent, single_ask_user

SPLITS = {"dev": "agent_bench_os.json", "test": "agent_bench_os_test.json"}
HOME = "/root"
"""The agent's home in ise's admin profile, where the suite's scripts run."""
SUITE_HOME = "/home/agent"
"""The home inspect-evals' copy of the suite writes."""
_USR_TREES = re.compile(rf"{SUITE_HOME}/(local|bin|sbin|lib|include|share)(?![\w.-])")
"""inspect-evals rewrote /usr to its home as well: /home/agent/local/bin was /usr/local/bin."""
MISSING_PACKAGE = "agentbench-os needs the inspect-evals package: make setup installs it"
_HEREDOC = "ISE_AGENTBENCH_COMPARATOR"


class _Unexpressible(Exception):
    """A task ise cannot express as a plan; the message is the reason."""


# --- where the data is -------------------------------------------------------------------------------------------


def package_dir() -> Path | None:
    """The installed inspect_evals package's folder, or None when it is not installed (found without importing it)."""
    spec = importlib.util.find_spec("inspect_evals")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    return Path(locations[0]) if locations else None


def data_dir() -> Path:
    """agent_bench/data of the installed package; an InputError when it is not there."""
    package = package_dir()
    data = package / "agent_bench" / "data" if package is not None else None
    if data is None or not data.is_dir():
        where = f" (no {data})" if data is not None else ""
        raise InputError(f"{MISSING_PACKAGE}{where}")
    return data


def _records(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise InputError(f"{path}: not found; {MISSING_PACKAGE}")
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: not a JSON file of AgentBench-OS tasks: {exc}") from None
    if not isinstance(records, list) or not all(isinstance(r, dict) and isinstance(r.get("id"), int) for r in records):
        raise InputError(f"{path}: not a list of AgentBench-OS tasks, each with an integer id")
    ids = [r["id"] for r in records]
    if duplicates := sorted({i for i in ids if ids.count(i) > 1}):
        raise InputError(f"{path}: task ids {duplicates} are used more than once")
    return records


# --- the split -----------------------------------------------------------------------------------------------


def load_agentbench(split: str, config: Config) -> TaskSet:
    """Every task of one split as a plan, or as an Unimportable with its reason (see the module docstring)."""
    if split not in SPLITS:
        raise InputError(f"unknown task source '{AGENTBENCH}:{split}': the splits are {', '.join(SPLITS)}")
    data = data_dir()
    path = data / SPLITS[split]
    tasks = TaskSet(suite=f"{AGENTBENCH}:{split}")
    for record in _records(path):
        try:
            plan = to_plan(record, split=split, path=path, scripts=data / "scripts", config=config)
        except _Unexpressible as why:
            tasks.unimportable.append(Unimportable(task_id=str(record["id"]), path=str(path), reason=str(why)))
        else:
            tasks.plans.append(plan)
    return tasks


def to_plan(record: dict[str, Any], *, split: str, path: Path, scripts: Path, config: Config) -> Plan:
    """One task as a plan; raises _Unexpressible with the reason when ise cannot express it."""
    task = _rehomed(record)
    task_id = int(task["id"])
    description = task.get("description")
    if not isinstance(description, str) or not description.strip():
        raise _Unexpressible("the task has no description")
    evaluation = task.get("evaluation")
    if not isinstance(evaluation, dict):
        raise _Unexpressible(f"evaluation of an unknown shape: {_shape(evaluation)}")
    checks = [_check(evaluation, scripts)]
    plan_id = f"{AGENTBENCH}/{split}-{task_id:03d}"
    labels = [str(label) for label in task.get("labels") or [] if str(label).strip()]
    category = labels[0] if labels else AGENTBENCH
    try:
        plan = Plan(
            id=plan_id,
            intent=imported_intent(
                plan_id,
                description,
                domain=category,
                tasks=labels or [category],
                complexity="simple",
                deliverable="the answer to the question"
                if isinstance(checks[0], AnswerCheck)
                else "the machine in the state the request asks for",
                workspace=["the machine as described"],
            ),
            fixtures=Fixtures(setup_script=_setup(task, scripts, seed=f"{AGENTBENCH}:{split}:{task_id}")),
            user=single_ask_user(description, [c.id for c in checks]),
            checks=checks,
            budgets=config.simulate.budgets["simple"],
            solution=[_solution(evaluation, scripts)],
            profile="admin",
            origin=Origin(suite=f"{AGENTBENCH}:{split}", task_id=str(task_id), category=category, path=str(path)),
        )
    except ValidationError as exc:
        raise _Unexpressible(f"not a valid plan: {exc.errors()[0]['msg']}") from None
    if problems := static_problems(plan, config.simulate):
        raise _Unexpressible("; ".join(str(p) for p in problems))
    return plan


def _rehome(text: str) -> str:
    """inspect-evals' home spelled as ise's, and its /usr trees as /usr (see the module docstring)."""
    return _USR_TREES.sub(r"/usr/\1", text).replace(SUITE_HOME, HOME)


def _rehomed(value: Any) -> Any:
    """Every string of a record _rehome'd."""
    if isinstance(value, str):
        return _rehome(value)
    if isinstance(value, list):
        return [_rehomed(v) for v in value]
    if isinstance(value, dict):
        return {k: _rehomed(v) for k, v in value.items()}
    return value


def _shape(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 120 else text[:117] + "..."


# --- scripts -----------------------------------------------------------------------------------------------------


def in_home(script: str) -> str:
    """`script` run the way the suite runs its scripts: as a login shell's command, from the agent's home."""
    return f"cd {HOME} && bash --login -c {shlex.quote(script)} < /dev/null"


def _script_file(scripts: Path, name: Any, what: str) -> str:
    path = scripts / str(name)
    if not isinstance(name, str) or not path.resolve().is_relative_to(scripts.resolve()) or not path.is_file():
        raise _Unexpressible(f"its {what} script {name} is not in the inspect-evals package")
    return path.read_text(encoding="utf-8")


def _code(value: Any, scripts: Path, what: str) -> str:
    """The shell text of a code/file/string entry."""
    if isinstance(value, str) and value.strip():
        return value
    if isinstance(value, dict) and isinstance(value.get("code"), str) and value["code"].strip():
        return str(value["code"])
    if isinstance(value, dict) and "file" in value:
        return _script_file(scripts, value["file"], what)
    raise _Unexpressible(f"{what} of a shape ise cannot express: {_shape(value)}")


def _setup(task: dict[str, Any], scripts: Path, *, seed: str) -> str | None:
    create = task.get("create")
    init = create.get("init") if isinstance(create, dict) else None
    if isinstance(init, dict) and "user" in init:
        raise _Unexpressible(f"the task's agent is the user {init['user']!r} (create.init.user); ise's agent is root")
    steps = [_code(step, scripts, "init") for step in (init if isinstance(init, list) else [init]) if step is not None]
    random_string = str(uuid.uuid5(uuid.NAMESPACE_URL, seed))
    lines = [in_home(step.replace("<random-string>", random_string)) for step in steps]
    if (start := task.get("start")) is not None:
        if not isinstance(start, str) or not start.strip():
            raise _Unexpressible(f"start of a shape ise cannot express: {_shape(start)}")
        command = start.strip().removesuffix("&").rstrip()
        # setsid and nohup, output and input detached: it outlives the setup's shell and holds none of its pipes.
        lines.append(f"cd {HOME} && setsid nohup bash --login -c {shlex.quote(command)} > /dev/null 2>&1 < /dev/null &")
    # -e: a failing step fails the setup, as it fails the suite's image build.
    return "\n".join(["set -e", *lines]) if lines else None


# --- checks and the reference ------------------------------------------------------------------------------------


def _check(evaluation: dict[str, Any], scripts: Path) -> Check:
    check = evaluation.get("check")
    if check is not None:
        if isinstance(check, list) and len(check) == 2 and check[0] is None and isinstance(check[1], dict):
            return _comparator_check(check[1], evaluation, scripts)
        if isinstance(check, list) and len(check) == 1 and isinstance(check[0], str):
            check = check[0]
        script = _code(check, scripts, "evaluation.check")
        return ShellCheck(id="check", description="the suite's check script exits 0", command=in_home(script))
    if "match" in evaluation:
        return _literal(evaluation["match"])
    raise _Unexpressible(f"evaluation has neither check nor match: {_shape(evaluation)}")


def _literal(match: Any) -> AnswerCheck:
    expected = str(match)
    if not expected.strip():
        raise _Unexpressible("evaluation.match is empty")
    return AnswerCheck(
        kind="answer", id="answer", description="the answer", match="exact", expected=expected, case_sensitive=True
    )


def _comparator_check(spec: dict[str, Any], evaluation: dict[str, Any], scripts: Path) -> AnswerCheck:
    if spec.get("language") != "python" or "file" not in spec:
        raise _Unexpressible(f"evaluation.check comparator of a shape ise cannot express: {_shape(spec)}")
    comparator = _script_file(scripts, spec["file"], "comparator")
    if _HEREDOC in comparator:
        raise _Unexpressible(f"its comparator {spec['file']} holds the line ise ends it with")
    verify = f'python3 - "$ISE_ANSWER" "$ISE_EXPECTED" <<\'{_HEREDOC}\'\n{comparator.rstrip()}\n{_HEREDOC}'
    name = Path(str(spec["file"])).stem
    described = f"the answer, compared by AgentBench's {name}"
    if "match" in evaluation:
        expected = str(evaluation["match"])
        if not expected.strip():
            raise _Unexpressible("evaluation.match is empty")
        return AnswerCheck(
            kind="answer", id="answer", description=described, match="script", expected=expected, verify=verify
        )
    if "example" not in evaluation:
        raise _Unexpressible("the comparator has no expected value: neither evaluation.match nor evaluation.example")
    example = _code(evaluation["example"], scripts, "evaluation.example")
    return AnswerCheck(
        kind="answer", id="answer", description=described, match="script", command=in_home(example), verify=verify
    )


def _solution(evaluation: dict[str, Any], scripts: Path) -> str:
    if "example" in evaluation:
        return in_home(_code(evaluation["example"], scripts, "evaluation.example"))
    if "match" in evaluation and evaluation.get("check") is None:
        return f"printf '%s\\n' {shlex.quote(str(evaluation['match']))}"
    raise _Unexpressible("no reference solution (evaluation.example) to prove its check with")
