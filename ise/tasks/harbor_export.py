"""Exported trajectories' plans as Harbor task directories (`ise export --format harbor`), one per plan:

    <plan id>/instruction.md         the request, the later milestones' asks, the facts the user would have told,
                                     and where to write answers (Harbor has no channel for an agent's answer)
    <plan id>/task.toml              version 1.0; [metadata] category, difficulty, tags and, under [metadata.ise],
                                     the trajectory's provenance and how ise's agent user maps; time limits
    <plan id>/environment/Dockerfile FROM the trace's image (ise-workspace:latest): the plan's directories, files
                                     (files/<absolute path>, owners and modes as in the plan) and setup script
    <plan id>/tests/test.sh          runs the plan's checks with ise's own rules (check_rules.py, copied verbatim
                                     from ise/check_rules.py, and checks.json) and writes reward 1 when all pass
    <plan id>/solution/solve.sh      the reference solution: each milestone's script in order

Users: Harbor runs agents, the oracle and the verifier as root. A plan of ise's `user` profile had its agent work
as the unprivileged user `agent` (uid 1000, home /home/agent) in /workspace: solve.sh runs its scripts as that user
(runuser), so the files it makes are owned as in ise; an `admin` plan's scripts run as root, as in ise. Checks run
as root from /workspace, as in ise. Perturbations (mid-task faults) have no place in a single Harbor run and are
left out (listed in task.toml). A plan imported from Harbor (one reward check) goes back with its own tests/.
"""

from __future__ import annotations

import base64
import json
import posixpath
import re
import shlex
from pathlib import Path
from typing import Any

from ise import check_rules
from ise.errors import IseError
from ise.outputs import write_bytes_atomic, write_text_atomic
from ise.provenance import plan_hash
from ise.records import AnswerCheck, FileFixture, Plan, RewardCheck, Trace

ANSWER_DIR = "/logs/agent"
DIFFICULTY = {"simple": "easy", "medium": "medium", "complex": "hard"}
CHECK_TIMEOUT_S = 30.0
"""Per check inside the exported verifier (execute.check_timeout_s's default)."""
WORKSPACE = "/workspace"


def write_harbor_tasks(pairs: list[tuple[Trace, Plan]], out_dir: Path) -> int:
    """One task directory per plan (the first trace of a plan supplies the provenance); how many were written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, str] = {}
    for trace, plan in pairs:
        if plan.id in written.values():
            continue
        name = safe_name(plan.id, set(written))
        write_task(out_dir / name, trace, plan)
        written[name] = plan.id
    return len(written)


def safe_name(plan_id: str, taken: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", plan_id).strip("-.") or "task"
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base}-{n}"
    return name


def write_task(folder: Path, trace: Trace, plan: Plan) -> None:
    answers = answer_files(plan)
    _write(folder / "instruction.md", instruction(plan, answers))
    _write(folder / "task.toml", task_toml(trace, plan))
    _write_environment(folder / "environment", trace, plan)
    _write_tests(folder / "tests", plan, answers)
    if plan.solution:
        _write(folder / "solution" / "solve.sh", solve_script(plan, answers), mode=0o755)


def _write(path: Path, content: str | bytes, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        write_bytes_atomic(path, content)
    else:
        write_text_atomic(path, content)
    path.chmod(mode)


# --- instruction and answers -------------------------------------------------------------------------------------


def answer_files(plan: Plan) -> dict[str, str]:
    """Milestone id -> the file its answer goes to, for the milestones that answer checks compare (a check no
    milestone names compares the final answer: the last milestone's)."""
    milestones = plan.user.milestones
    answer_ids = {c.id for c in plan.checks if isinstance(c, AnswerCheck)}
    asking = [m.id for m in milestones if answer_ids & set(m.checks)]
    named = {ref for m in milestones for ref in m.checks}
    if answer_ids - named and milestones and milestones[-1].id not in asking:
        asking.append(milestones[-1].id)
    if len(asking) == 1:
        return {asking[0]: f"{ANSWER_DIR}/answer.txt"}
    steps = {m.id: n for n, m in enumerate(milestones, start=1)}
    return {m: f"{ANSWER_DIR}/answer-{steps[m]}.txt" for m in asking}


def instruction(plan: Plan, answers: dict[str, str]) -> str:
    """The task text: Harbor gives it once, so it holds everything ise's user would have said over the turns."""
    parts = [plan.intent.request.strip()]
    later = plan.user.milestones[1:]
    if later:
        parts.append("Then, one after the other:\n" + "\n".join(f"- {m.ask.strip()}" for m in later))
    if plan.user.hidden_facts:
        parts.append("Good to know:\n" + "\n".join(f"- {f.fact.strip()}" for f in plan.user.hidden_facts))
    steps = {m.id: n for n, m in enumerate(plan.user.milestones, start=1)}
    if len(answers) == 1:
        parts.append(
            f"When you are done, also write your final answer, and nothing else, to {next(iter(answers.values()))}."
        )
    elif answers:
        where = "; ".join(f"step {steps[m]} to {path}" for m, path in answers.items())
        parts.append(f"Also write each answer, and nothing else, to its file: {where}.")
    return "\n\n".join(parts) + "\n"


# --- task.toml ---------------------------------------------------------------------------------------------------


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(float(value)) if isinstance(value, float) else str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)  # a JSON string is a TOML basic string


def _table(name: str, values: dict[str, Any]) -> str:
    return f"[{name}]\n" + "".join(f"{key} = {_toml_value(value)}\n" for key, value in values.items())


def task_toml(trace: Trace, plan: Plan) -> str:
    env = trace.env
    as_agent = plan.profile == "user"
    provenance = {
        "plan_id": plan.id,
        "plan_sha256": env.plan_sha256 or plan_hash(plan),
        "trace_id": trace.id,
        "config_hash": env.config_hash,
        "seed": env.seed,
        "ise_version": env.ise_version,
        "image": env.image or "ise-workspace:latest",
        "image_id": env.image_id,
        "profile": plan.profile,
        "agent_user": (
            "ise's agent was the unprivileged user agent (uid 1000, home /home/agent); solve.sh runs as that user"
            if as_agent
            else "ise's agent was root (admin profile), as Harbor's is"
        ),
        "perturbations_left_out": [p.id for p in plan.perturbations],
    }
    verifier_s = CHECK_TIMEOUT_S * (len(plan.checks) + 1)
    reward = next((c for c in plan.checks if isinstance(c, RewardCheck)), None)
    if reward is not None and reward.timeout_s:
        verifier_s = reward.timeout_s
    metadata = {
        "author_name": "ise",
        "difficulty": DIFFICULTY[plan.intent.complexity],
        "category": plan.intent.domain,
        "tags": ["ise", *plan.intent.tasks],
    }
    return "\n".join(
        [
            'version = "1.0"\n',
            _table("metadata", metadata),
            _table("metadata.ise", provenance),
            _table("verifier", {"timeout_sec": float(verifier_s)}),
            _table("agent", {"timeout_sec": float(plan.budgets.wall_clock_s)}),
        ]
    )


# --- environment, tests, solution --------------------------------------------------------------------------------


def _absolute(path: str) -> str:
    return posixpath.normpath(posixpath.join(WORKSPACE, path))


def _docker_path(path: str) -> str:
    return json.dumps(path) if re.search(r"[\s\"'\\$]", path) else path


def _write_environment(folder: Path, trace: Trace, plan: Plan) -> None:
    lines = [
        f"# Written by ise from plan {plan.id} (trace {trace.id}); see ../task.toml [metadata.ise].",
        f"FROM {trace.env.image or 'ise-workspace:latest'}",
    ]
    for d in plan.fixtures.dirs:
        path, owner = shlex.quote(_absolute(d.path)), "1000:1000" if d.owner == "agent" else "0:0"
        lines.append(f"RUN mkdir -p {path} && chown {owner} {path} && chmod {d.mode} {path}")
    for file in plan.fixtures.files:
        target = _absolute(file.path)
        source = "files" + target
        _write(folder / source, _data(file))
        chown = "--chown=1000:1000 " if file.owner == "agent" else ""
        lines.append(f"COPY {chown}--chmod={file.mode} {_docker_path(source)} {_docker_path(target)}")
    if plan.fixtures.setup_script:
        _write(folder / "ise-setup.sh", plan.fixtures.setup_script)
        lines.append("COPY --chmod=0700 ise-setup.sh /tmp/ise-setup.sh")
        lines.append("RUN bash /tmp/ise-setup.sh && rm -f /tmp/ise-setup.sh")
    reward = next((c for c in plan.checks if isinstance(c, RewardCheck)), None)
    lines.append(f"WORKDIR {reward.workdir if reward else WORKSPACE}")  # an imported task's own, else ise's
    _write(folder / "Dockerfile", "\n".join(lines) + "\n")


def _data(file: FileFixture) -> bytes:
    return base64.b64decode(file.content) if file.encoding == "base64" else file.content.encode("utf-8")


def _write_tests(folder: Path, plan: Plan, answers: dict[str, str]) -> None:
    rewards = [c for c in plan.checks if isinstance(c, RewardCheck)]
    if rewards:
        _write_reward_tests(folder, plan, rewards)
        return
    final = answers.get(plan.user.milestones[-1].id, f"{ANSWER_DIR}/answer.txt") if plan.user.milestones else ""
    milestone_of = {ref: m.id for m in plan.user.milestones for ref in m.checks}
    checks: list[dict[str, Any]] = []
    for check in plan.checks:
        spec = check.model_dump(mode="json")
        if isinstance(check, AnswerCheck):
            spec["answer_file"] = answers.get(milestone_of.get(check.id, ""), final)
        checks.append(spec)
    spec_json = {"timeout_s": CHECK_TIMEOUT_S, "workdir": WORKSPACE, "checks": checks}
    _write(folder / "checks.json", json.dumps(spec_json, indent=1, ensure_ascii=False) + "\n")
    _write(folder / "check_rules.py", Path(check_rules.__file__).read_bytes())
    test = (
        "#!/bin/bash\n"
        "# ise's checks of this plan, decided by ise's own rules (check_rules.py is ise/check_rules.py verbatim):\n"
        "# reward 1 when every check passes, else 0.\n"
        "mkdir -p /logs/verifier\n"
        "python3 /tests/check_rules.py /tests/checks.json /logs/verifier/reward.txt\n"
    )
    _write(folder / "test.sh", test, mode=0o755)


def _write_reward_tests(folder: Path, plan: Plan, rewards: list[RewardCheck]) -> None:
    """A plan imported from Harbor goes back with its own tests (the exports its command adds put in test.sh)."""
    if len(plan.checks) != 1 or rewards[0].root != "/tests" or not rewards[0].command.endswith("bash /tests/test.sh"):
        raise IseError(f"plan {plan.id}: only a single reward check on /tests can go back to Harbor")
    prefix = rewards[0].command.removesuffix("bash /tests/test.sh").encode()
    for file in rewards[0].files:
        data = _data(file)
        if file.path == "test.sh" and prefix:
            shebang, newline, rest = data.partition(b"\n")
            data = shebang + newline + prefix + rest if shebang.startswith(b"#!") else prefix + data
        _write(folder / file.path, data, mode=int(file.mode, 8))


def solve_script(plan: Plan, answers: dict[str, str]) -> str:
    """Each milestone's script in order, each in a fresh bash from /workspace as ise runs it; an answer
    milestone's stdout also goes to its answer file."""
    runner = (
        'step() { runuser -u agent -- env HOME=/home/agent USER=agent LOGNAME=agent bash -c "$1"; }'
        if plan.profile == "user"
        else 'step() { bash -c "$1"; }'
    )
    lines = ["#!/bin/bash", f"# The reference solution of ise plan {plan.id}.", runner, f"mkdir -p {ANSWER_DIR}"]
    for milestone, script in zip(plan.user.milestones, plan.solution, strict=True):
        run = f"cd {WORKSPACE} && step {shlex.quote(script)}"
        if milestone.id in answers:
            lines.append(f"out=$({run}) || exit 1")
            lines.append(f'printf "%s\\n" "$out" | tee {answers[milestone.id]}')
        else:
            lines.append(f"({run}) || exit 1")
    return "\n".join(lines) + "\n"
