"""Is a plan runnable and meaningful? Static checks first (cheap: ise/plan_static.py), then dry runs in real fresh
sandboxes.

Sandbox one, the initial state: seed files and dirs -> setup script (must exit 0) -> the paths the intent mentions
must exist, as the kind of thing it says they are (ise/workspace_kinds.py) -> every success check must FAIL (a
check that already passes proves nothing) and must not change the workspace (checks only look) -> every trigger
condition must run -> every perturbation must exit 0, in the order it would fire in an episode -> nothing was
written outside the allowed roots. Perturbations go after the checks so the checks see the pristine initial state,
and in firing order so a perturbation that depends on an earlier one (move, then chmod the moved file) is tried the
way the episode will run it.

Sandbox two, the solved state (when the plan carries a reference solution): seed and setup again, run each
milestone's solution as the agent, and every check must now PASS. Together the two prove each check can tell
undone work from done work. A second container costs about a second; sharing one would let perturbations and
the solution trip over each other."""

from __future__ import annotations

import re
import shlex
import time
from dataclasses import dataclass, field

from ise.checks import answer_for, run_check
from ise.config import SimulateConfig
from ise.plan_static import Problem, ProblemKind, allowed_roots, mentioned_paths, static_problems
from ise.records import AnswerCheck, Check, CheckResult, Fixtures, Intent, Plan, RewardCheck, ShellCheck
from ise.sandbox.base import ExecResult, FileEntry, Sandbox, SandboxError
from ise.sandbox.provider import SandboxFactory
from ise.scope import AGENT_HOME, WORKSPACE
from ise.workspace_kinds import kind_problems


@dataclass
class Validation:
    problems: list[Problem] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems


# --- the dry run -------------------------------------------------------------------------------------------------

_MARKER = "/tmp/.ise-dry-run-start"
_SKIP_IN_SCOPE_SCAN = ("/proc", "/sys", "/dev", "/tmp", "/var/tmp", "/run")


def dry_run(plan: Plan, sandbox: Sandbox, cfg: SimulateConfig) -> list[Problem]:
    """Run the plan's fixtures, setup, checks and perturbations in `sandbox` (fresh); return what went wrong.
    Raises SandboxError only when the sandbox itself broke."""
    _root(sandbox, f"touch {_MARKER}", cfg.check_timeout_s, must_succeed=True)
    files_and_dirs = plan.fixtures.model_copy(update={"setup_script": None})
    if problem := _seed(sandbox, files_and_dirs, "fixture", "fixtures could not be applied"):
        return [problem]
    if plan.fixtures.setup_script:
        setup_only = Fixtures(setup_script=plan.fixtures.setup_script)
        if problem := _seed(sandbox, setup_only, "setup", "the setup script failed"):
            return [problem]
    problems = _consistency(plan.intent, sandbox, cfg)
    problems += kind_problems(plan.intent, sandbox, cfg.check_timeout_s)
    problems += _checks(plan, sandbox, cfg)
    problems += _perturbations(plan, sandbox, cfg)
    if (roots := allowed_roots(plan, cfg)) is not None:
        problems += _scope(roots, sandbox, cfg)
    return problems


def _root(sandbox: Sandbox, command: str, timeout_s: float, *, must_succeed: bool = False) -> ExecResult:
    result = sandbox.exec(command, timeout_s=timeout_s, user="root")
    if must_succeed and result.exit_code != 0:
        raise SandboxError(f"dry-run bookkeeping command failed ({result.exit_code}): {_tail(result)}")
    return result


def _seed(sandbox: Sandbox, fixtures: Fixtures, kind: ProblemKind, what: str) -> Problem | None:
    """Seed exactly as the execute stage will (the setup script too, with the sandbox's own timeout)."""
    try:
        sandbox.seed(fixtures)
    except SandboxError as exc:
        _root(sandbox, "true", 10, must_succeed=True)  # raises if the sandbox, not the plan, is what broke
        return Problem(kind, f"{what}: {exc}")
    return None


def _consistency(intent: Intent, sandbox: Sandbox, cfg: SimulateConfig) -> list[Problem]:
    tests = [f"{_exists_test(token)} || echo {shlex.quote(token)}" for token in mentioned_paths(intent)]
    if not tests:
        return []
    result = _root(sandbox, "\n".join(tests), cfg.check_timeout_s, must_succeed=True)
    return [
        Problem("consistency", f"the intent says the workspace has {token!r}, but nothing in the plan creates it")
        for token in result.stdout.splitlines()
        if token.strip()
    ]


def _exists_test(token: str) -> str:
    """A shell test that passes when `token` (absolute, ~/..., relative or a bare name, globs allowed) exists."""
    roots = f"{WORKSPACE} {AGENT_HOME}"
    if token.startswith("~"):
        token = AGENT_HOME + token[1:]
    if token.startswith("/"):
        return f"compgen -G {shlex.quote(token.rstrip('/') or '/')} >/dev/null"
    name = token.removeprefix("./").rstrip("/")
    option = "-path" if "/" in name else "-name"
    pattern = f"*/{name}" if "/" in name else name
    return f'[ -n "$(find {roots} {option} {shlex.quote(pattern)} -print -quit 2>/dev/null)" ]'


NON_ANSWERS = ("", "I do not know.")
"""Answers that must fail every answer check on the initial state: nothing, and a non-answer."""


def _checks(plan: Plan, sandbox: Sandbox, cfg: SimulateConfig) -> list[Problem]:
    problems: list[Problem] = []
    before = sandbox.snapshot()
    for check in plan.checks:
        name = f"check {check.id} ({_what(check)})"
        for answer in NON_ANSWERS if isinstance(check, AnswerCheck) else ("",):
            result = run_check(check, sandbox, answer=answer, timeout_s=cfg.check_timeout_s)
            if problem := _broken(check, name, result, cfg):
                problems.append(problem)
                break
            if result.passed:
                problems.append(_passes_too_early(check, name, answer))
                break
    if changed := _changed(before, sandbox.snapshot()):
        problems.append(
            Problem("check_writes", f"the checks changed {', '.join(changed[:5])}; a check must only look, not write")
        )
    return problems


def _what(check: Check) -> str:
    if isinstance(check, ShellCheck):
        return repr(check.command)
    if isinstance(check, RewardCheck):
        return f"verifier {check.command!r}"
    source = f"command {check.command!r}" if check.command else repr(check.expected or check.options)
    return f"answer {check.match} {source}"


def _broken(check: Check, name: str, result: CheckResult, cfg: SimulateConfig) -> Problem | None:
    if isinstance(check, AnswerCheck) and check.command is None:
        return None
    if result.timed_out:
        return Problem("check_broken", f"{name} did not finish within {cfg.check_timeout_s:g} s", check.id)
    if result.exit_code in (126, 127):
        why = (result.stderr.strip() or result.stdout.strip() or "(no output)").replace("\n", " | ")[:400]
        return Problem("check_broken", f"{name} cannot run (exit {result.exit_code}): {why}", check.id)
    return None


def _passes_too_early(check: Check, name: str, answer: str) -> Problem:
    if isinstance(check, AnswerCheck):
        return Problem(
            "check_passes",
            f"{name} accepts the answer {answer!r} before any work is done, so it proves nothing; "
            "it must accept only the right answer",
            check.id,
        )
    return Problem(
        "check_passes",
        f"{name} already passes before any work is done, so it proves nothing; it must test the result of the task",
        check.id,
    )


_HOUSEKEEPING = re.compile(r"/(?:\.git|__pycache__|\.pytest_cache)(?:/|$)")
"""Written by commands that only read (git status refreshes its index, python caches bytecode)."""


def _changed(before: dict[str, FileEntry], after: dict[str, FileEntry]) -> list[str]:
    paths = sorted(path for path in before.keys() | after.keys() if before.get(path) != after.get(path))
    return [path for path in paths if not _HOUSEKEEPING.search(path)]


def _perturbations(plan: Plan, sandbox: Sandbox, cfg: SimulateConfig) -> list[Problem]:
    problems: list[Problem] = []
    for p in plan.perturbations:
        if p.when is None:
            continue
        result = _root(sandbox, p.when, cfg.check_timeout_s)
        if result.timed_out or result.exit_code not in (0, 1):
            problems.append(
                Problem("trigger", f"perturbation {p.id} condition {p.when!r} is broken: exit {result.exit_code}", p.id)
            )
    firing_order = sorted(plan.perturbations, key=lambda p: (p.at_user_turn is None, p.at_user_turn or 0))
    for p in firing_order:
        result = _root(sandbox, p.script, cfg.check_timeout_s)
        if result.timed_out:
            problems.append(
                Problem("perturbation", f"perturbation {p.id} did not finish in {cfg.check_timeout_s:g} s", p.id)
            )
        elif result.exit_code != 0:
            problems.append(
                Problem("perturbation", f"perturbation {p.id} exited {result.exit_code}: {_tail(result)}", p.id)
            )
    return problems


def _scope(roots: list[str], sandbox: Sandbox, cfg: SimulateConfig) -> list[Problem]:
    prune = " -o ".join(f"-path {shlex.quote(p)}" for p in (*_SKIP_IN_SCOPE_SCAN, *roots))
    command = f"find / \\( {prune} \\) -prune -o -newer {_MARKER} ! -type d -print 2>/dev/null | head -n 5"
    result = _root(sandbox, command, cfg.check_timeout_s)
    return [
        Problem("scope", f"the plan writes {path}, outside /workspace and {AGENT_HOME}")
        for path in result.stdout.splitlines()
        if path.strip()
    ]


def _tail(result: ExecResult, limit: int = 400) -> str:
    text = (result.stderr.strip() or result.stdout.strip() or "(no output)").replace("\n", " | ")
    return text if len(text) <= limit else "..." + text[-limit:]


def solution_run(plan: Plan, sandbox: Sandbox, cfg: SimulateConfig) -> list[Problem]:
    """In a fresh sandbox: run every milestone's solution as the agent (what it prints is its reference answer),
    then every check must pass."""
    if problem := _seed(sandbox, plan.fixtures, "setup", "fixtures and setup could not be applied"):
        return [problem]
    answers: dict[str, str] = {}
    for milestone, script in zip(plan.user.milestones, plan.solution, strict=True):
        result = sandbox.exec(script, timeout_s=cfg.solution_timeout_s, user="agent")
        if result.timed_out or result.exit_code != 0:
            how = (
                f"did not finish in {cfg.solution_timeout_s:g} s" if result.timed_out else f"exited {result.exit_code}"
            )
            return [Problem("solution", f"the solution of milestone {milestone.id} {how}: {_tail(result)}")]
        answers[milestone.id] = result.stdout.strip()
    final = answers[plan.user.milestones[-1].id] if plan.user.milestones else ""
    problems: list[Problem] = []
    for check in plan.checks:
        answer = answer_for(check.id, plan.user.milestones, answers, final)
        verdict = run_check(check, sandbox, answer=answer, timeout_s=cfg.check_timeout_s)
        if not verdict.passed:
            problems.append(_still_fails(check, verdict))
    return problems


def _still_fails(check: Check, result: CheckResult) -> Problem:
    if isinstance(check, AnswerCheck):
        got = f"the reference answer {_clip(result.answer or '')!r}"
        return Problem(
            "solution",
            f"answer check {check.id} ({_what(check)}) rejects {got}: {result.reason}; the solution of its "
            "milestone must print the answer, and the check must accept it",
            check.id,
        )
    if isinstance(check, RewardCheck):
        return Problem(
            "solution",
            f"reward check {check.id} ({_what(check)}) still fails after the solution ran: {result.reason}; "
            f"its output ends {_clip(result.stdout[-400:])!r}",
            check.id,
        )
    wanted = f"exit {check.expect_exit}" + (f" and {check.expect_stdout!r} in stdout" if check.expect_stdout else "")
    got = f"exit {result.exit_code}, stdout {_clip(result.stdout)!r}, stderr {_clip(result.stderr)!r}"
    printed = result.stdout.strip() if result.exit_code == check.expect_exit and not result.timed_out else None
    return Problem(
        "solution",
        f"check {check.id} ({check.command!r}) still fails after the solution ran: wanted {wanted}, got {got}; "
        "fix the check or the solution",
        check.id,
        printed,
    )


def _clip(text: str, limit: int = 160) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[:limit] + "..."


def validate(plan: Plan, sandbox_factory: SandboxFactory, cfg: SimulateConfig) -> Validation:
    """Static checks, then (only if they pass) the dry run and, given a solution, the solved run."""
    started = time.monotonic()
    problems = static_problems(plan, cfg)
    if not problems:
        with sandbox_factory(plan.profile) as sandbox:
            problems = dry_run(plan, sandbox, cfg)
        if plan.solution and not any(p.kind in ("fixture", "setup") for p in problems):
            with sandbox_factory(plan.profile) as sandbox:
                problems += solution_run(plan, sandbox, cfg)
    return Validation(problems=problems, seconds=time.monotonic() - started)


# --- salvage: fixing what the sandbox disproved, without the model -----------------------------------------------
# Small models write sound worlds with a wrong number in a check, or one fault that cannot apply. Asking again costs
# minutes and often brings back the same answer; fixing it here costs a dry run, and what is kept is validated again.

_CALIBRATABLE = 300
"""Longest printed text taken over as a check's expected output."""


def calibration(problems: list[Problem]) -> dict[str, str]:
    """New expected text for the checks that exited as expected after the reference solution but printed something
    else (a miscounted total, a reformatted line): what the solved run printed, when short enough to expect."""
    return {
        p.subject: p.printed
        for p in problems
        if p.subject is not None and p.printed and len(p.printed) <= _CALIBRATABLE
    }


def calibrated(plan: Plan, expected: dict[str, str]) -> Plan:
    """`plan` expecting `expected[check id]` from those checks (recorded in `plan.calibrated`)."""
    checks = [
        c.model_copy(update={"expect_stdout": expected[c.id]}) if c.id in expected and isinstance(c, ShellCheck) else c
        for c in plan.checks
    ]
    return plan.model_copy(update={"checks": checks, "calibrated": sorted({*plan.calibrated, *expected})})


_PRUNABLE: frozenset[ProblemKind] = frozenset(
    {"check_passes", "check_broken", "check_lint", "solution", "trigger", "perturbation"}
)


def disproved(plan: Plan, problems: list[Problem]) -> set[str] | None:
    """The checks and perturbations to drop when the dry run disproved only them and every milestone keeps a check
    that it proved (fails on the initial state, passes once solved); None when the model has to repair the plan."""
    if not problems or any(p.subject is None or p.kind not in _PRUNABLE for p in problems):
        return None
    subjects = {p.subject for p in problems if p.subject is not None}
    if any(not set(m.checks) - subjects for m in plan.user.milestones):
        return None
    return subjects


def without(plan: Plan, ids: set[str]) -> Plan:
    """`plan` minus the checks and perturbations named in `ids` (recorded in `plan.pruned`)."""
    milestones = [m.model_copy(update={"checks": [c for c in m.checks if c not in ids]}) for m in plan.user.milestones]
    return plan.model_copy(
        update={
            "checks": [c for c in plan.checks if c.id not in ids],
            "perturbations": [p for p in plan.perturbations if p.id not in ids],
            "user": plan.user.model_copy(update={"milestones": milestones}),
            "pruned": sorted({*plan.pruned, *ids}),
        }
    )
