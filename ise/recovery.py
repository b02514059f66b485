"""Failure -> recovery labels: link each failure in a trace to the later step that overcame it.

A failure is a step that did not succeed (non-zero exit, timeout, a refused tool call, a delegate that did not
finish) or a check probe that failed. The heuristic, first match wins:

1. tool_fixed: a refused call (bad arguments, unknown tool, file tool error) is overcome by the next successful
   call of the same tool (of any tool, when the tool did not exist).
2. same_target: a failed step is overcome by a later successful step on the same target: for bash the same
   command family (the program, plus its subcommand or script for interpreters and multi-command tools such as
   `python3 app.py`, `git commit`, `make test`), for file tools the same path, for delegate another delegate.
3. check_passed: otherwise, if a check of the milestone the failure happened under passes later (in a probe or in
   the final checks), the failure is linked to the last step before that passing result. A failed probe is
   overcome the same way, by a later pass of the same check. Never for a command that was not found (exit 127):
   a passing check says nothing about a program that does not exist.

Unmatched failures stay in the list with recovered_by=None. The labels are cheap and explainable, not proof of
causality; they make "recovered" trajectories findable for SFT data that teaches error handling.
"""

from __future__ import annotations

import posixpath
import re
import shlex
from collections.abc import Iterator, Sequence

from ise.records import CheckProbe, CheckResult, Failure, Step

_MULTI_COMMAND_TOOLS = {
    "python", "python3", "node", "bash", "sh", "ruby", "perl", "php",
    "git", "make", "pip", "pip3", "npm", "yarn", "cargo", "go", "systemctl", "service", "docker", "apt", "apt-get",
    "kubectl", "poetry", "uv", "pytest",
}  # fmt: skip
COMMAND_NOT_FOUND = 127
"""bash's exit code for a program that does not exist: a later passing check says nothing about that program."""
_PREFIXES = {"sudo", "env", "time", "nohup", "timeout", "command", "exec"}
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


def flatten(steps: Sequence[Step]) -> Iterator[Step]:
    """Every step in execution order, sub-agent steps right after their delegate step."""
    for step in steps:
        yield step
        yield from flatten(step.sub_steps)


def command_family(command: str) -> str:
    """`cd app && FOO=1 python3 -m pytest -q tests` -> 'python3 -m'; `make test` -> 'make test'."""
    last_part = re.split(r"&&|;|\|\||\n", command)
    parts = [p for p in last_part if p.strip() and not p.strip().startswith("cd ")] or last_part
    try:
        words = shlex.split(parts[-1])
    except ValueError:
        words = parts[-1].split()
    while words and (words[0] in _PREFIXES or _ASSIGNMENT.match(words[0]) or words[0].lstrip("-").isdigit()):
        words = words[1:]
    if not words:
        return command.strip()
    program = posixpath.basename(words[0])
    if program in _MULTI_COMMAND_TOOLS:
        rest = [w for w in words[1:] if not w.startswith("-") or w == "-m"]
        if rest:
            return f"{program} {rest[0]}"
    return program


def step_target(step: Step) -> str:
    args = step.arguments
    if step.tool == "bash":
        return "bash:" + command_family(str(args.get("command", "")))
    if "path" in args:
        path = str(args["path"]).removeprefix("/workspace/").removeprefix("./")
        return "path:" + posixpath.normpath(path)
    return "tool:" + step.tool


def label_failures(
    steps: Sequence[Step],
    probes: Sequence[CheckProbe],
    final_checks: Sequence[CheckResult],
    milestone_checks: dict[int, list[str]],
) -> list[Failure]:
    """`milestone_checks` maps a user turn to the check ids of the milestone being worked on in that turn."""
    flat = list(flatten(steps))
    passes = _check_passes(probes, final_checks, last_step=flat[-1].index if flat else None)
    failures = [_label_step(i, flat, passes, milestone_checks.get(flat[i].turn, [])) for i in range(len(flat))]
    labelled = [f for f in failures if f is not None]
    for probe in probes:
        for result in probe.results:
            if not result.passed:
                labelled.append(_label_probe(probe, result.id, passes))
    return labelled


def _check_passes(
    probes: Sequence[CheckProbe], final_checks: Sequence[CheckResult], last_step: int | None
) -> list[tuple[str, int | None]]:
    """(check id, last step before it passed) in time order."""
    passes = [(r.id, p.after_step) for p in probes for r in p.results if r.passed]
    return passes + [(r.id, last_step) for r in final_checks if r.passed]


def _label_step(
    position: int, flat: list[Step], passes: list[tuple[str, int | None]], related_checks: list[str]
) -> Failure | None:
    failed = flat[position]
    if failed.status == "ok":
        return None
    target = step_target(failed)
    for later in flat[position + 1 :]:
        if later.status != "ok":
            continue
        if failed.status == "error" and (later.tool == failed.tool or _unknown_tool(failed)):
            return Failure(kind="step", step=failed.index, recovered_by=later.index, evidence="tool_fixed")
        if step_target(later) == target:
            return Failure(kind="step", step=failed.index, recovered_by=later.index, evidence="same_target")
    if failed.exit_code == COMMAND_NOT_FOUND:
        return Failure(kind="step", step=failed.index)  # only running that program after all overcomes it
    for check_id, after_step in passes:
        if check_id in related_checks and after_step is not None and after_step > failed.index:
            return Failure(kind="step", step=failed.index, recovered_by=after_step, evidence="check_passed")
    return Failure(kind="step", step=failed.index)


def _label_probe(probe: CheckProbe, check_id: str, passes: list[tuple[str, int | None]]) -> Failure:
    for passed_id, after_step in passes:
        if passed_id != check_id or after_step is None:
            continue
        if probe.after_step is None or after_step > probe.after_step:
            return Failure(
                kind="probe", step=probe.after_step, check=check_id, recovered_by=after_step, evidence="check_passed"
            )
    return Failure(kind="probe", step=probe.after_step, check=check_id)


def _unknown_tool(step: Step) -> bool:
    return (step.error or "").startswith("unknown tool")
