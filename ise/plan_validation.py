"""Is a plan runnable and meaningful? Static checks first (cheap), then dry runs in real fresh sandboxes.

Sandbox one, the initial state: seed files and dirs -> setup script (must exit 0) -> the paths the intent mentions
must exist -> every success check must FAIL (a check that already passes proves nothing) and must not change the
workspace (checks only look) -> every trigger condition must run -> every perturbation must exit 0, in the order
it would fire in an episode -> nothing was written outside the allowed roots. Perturbations go after the checks
so the checks see the pristine initial state, and in firing order so a perturbation that depends on an earlier one
(move, then chmod the moved file) is tried the way the episode will run it.

Sandbox two, the solved state (when the plan carries a reference solution): seed and setup again, run each
milestone's solution as the agent, and every check must now PASS. Together the two prove each check can tell
undone work from done work. A second container costs about a second; sharing one would let perturbations and
the solution trip over each other."""

from __future__ import annotations

import base64
import binascii
import posixpath
import re
import shlex
import time
from dataclasses import dataclass, field
from typing import Literal

from ise.checks import answer_for, run_check
from ise.config import SimulateConfig
from ise.records import AnswerCheck, Check, CheckResult, Fixtures, Intent, Plan, ShellCheck
from ise.sandbox.base import ExecResult, FileEntry, Sandbox, SandboxError
from ise.sandbox.provider import SandboxFactory
from ise.scope import AGENT_HOME, WORKSPACE, resolve_path

ProblemKind = Literal[
    "schema",
    "structure",
    "size",
    "path",
    "network",
    "fixture",
    "setup",
    "consistency",
    "check_passes",
    "check_broken",
    "check_writes",
    "solution",
    "trigger",
    "perturbation",
    "scope",
]


@dataclass(frozen=True)
class Problem:
    kind: ProblemKind
    message: str
    subject: str | None = None
    """The id of the check or perturbation at fault, when the problem is one of them alone."""
    printed: str | None = None
    """For a check that exited as expected once solved but without the expected text: what it printed instead."""

    def __str__(self) -> str:
        return self.message


@dataclass
class Validation:
    problems: list[Problem] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems


# --- paths -------------------------------------------------------------------------------------------------------


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


_EXTENSIONS = (
    "csv|tsv|json|jsonl|ya?ml|toml|ini|cfg|conf|env|log|txt|md|rst|py|sh|bash|js|ts|go|rs|java|c|h|cpp|rb|php|"
    "sql|db|sqlite|sqlite3|xml|html|css|gz|tgz|tar|zip|bak|pid|lock|service|timer|crontab|pem|key|ipynb|parquet"
)
_SEGMENT = r"[\w.*@+-]+"
_PATH_WITH_SLASH = re.compile(
    rf"(?<![\w:/.])((?:~|\.{{1,2}})?/{_SEGMENT}(?:/{_SEGMENT})*/?|{_SEGMENT}(?:/{_SEGMENT})+/?|{_SEGMENT}/)(?![\w/])"
)
_FILE_NAME = re.compile(rf"(?<![\w/.-])([\w*@+-][\w.*@+-]*\.(?:{_EXTENSIONS}))(?![\w/])", re.IGNORECASE)
_BARE_NAMES = re.compile(r"(?<![\w/.-])(Dockerfile|Makefile|\.env|\.bashrc|\.gitignore|\.profile)(?![\w/.-])")
_TRAILING = ".,:;)'\"`"
_PRODUCT_NAME = re.compile(r"[A-Z]\w*\.js")
"""Node.js, Vue.js: technologies, not files."""


def mentioned_paths(intent: Intent) -> list[str]:
    """Paths and file names the intent says the workspace already holds (from `workspace`, not the request: the
    request also names the files the agent is asked to create)."""
    found: list[str] = []
    for item in intent.workspace:
        spans: list[tuple[int, int]] = []
        for match in _PATH_WITH_SLASH.finditer(item):
            token = match.group(1).rstrip(_TRAILING)
            if _looks_like_path(token):
                found.append(token)
                spans.append(match.span(1))
        for pattern in (_FILE_NAME, _BARE_NAMES):
            for match in pattern.finditer(item):
                name = match.group(1).rstrip(_TRAILING)
                inside_a_path = any(a <= match.start(1) < b for a, b in spans)
                if not inside_a_path and not _PRODUCT_NAME.fullmatch(name):
                    found.append(name)
    return list(dict.fromkeys(found))


def _looks_like_path(token: str) -> bool:
    """Keep '/var/log/app', '~/x', './data/', 'src/app.py'; drop prose like 'and/or' or 'CI/CD'."""
    if token.startswith(("/", "~", "./", "../")):
        return len(token) > 1
    last = token.rstrip("/").rsplit("/", 1)[-1]
    return token.endswith("/") or bool(_FILE_NAME.fullmatch(last))


def _mentioned_roots(intent: Intent) -> list[str]:
    """Absolute directories the intent itself names: fixtures may live there even outside the usual roots."""
    roots = []
    for token in mentioned_paths(intent):
        if token.startswith("/"):
            literal = token.split("*", 1)[0]
            roots.append(posixpath.normpath(literal if literal.endswith("/") else posixpath.dirname(literal) or "/"))
    return [root for root in roots if root != "/"]


def allowed_roots(plan: Plan, cfg: SimulateConfig) -> list[str] | None:
    """Where a plan may put things; None means anywhere (an admin plan, or one about system configuration)."""
    if plan.profile == "admin" or plan.intent.domain.strip().lower() in {d.lower() for d in cfg.system_domains}:
        return None
    return [WORKSPACE, AGENT_HOME, *_mentioned_roots(plan.intent)]


# --- static checks -----------------------------------------------------------------------------------------------

_INSTALLERS = re.compile(r"\b(?:pip3?|npm|yarn|gem|cargo|apt|apt-get|apk|dnf|yum)\s+(?:install|add)\b")
_NET_TOOLS = re.compile(r"\b(?:curl|wget|ssh|scp|ping|nc|git\s+(?:clone|fetch|pull|push))\b[^\n;|&]*")
_LOCAL = re.compile(r"\b(?:localhost|127\.0\.0\.1|0\.0\.0\.0)\b|\s/|file://")
_MODE = re.compile(r"0?[0-7]{3}")


def static_problems(plan: Plan, cfg: SimulateConfig) -> list[Problem]:
    """Everything that can be judged without running the plan."""
    return [
        *_structure_problems(plan),
        *_fixture_problems(plan, cfg),
        *_script_problems(plan, cfg),
    ]


def _structure_problems(plan: Plan) -> list[Problem]:
    problems: list[Problem] = []
    for what, ids in (
        ("milestone", [m.id for m in plan.user.milestones]),
        ("check", [c.id for c in plan.checks]),
        ("perturbation", [p.id for p in plan.perturbations]),
    ):
        for dup in sorted({i for i in ids if ids.count(i) > 1}):
            problems.append(Problem("structure", f"{what} id {dup!r} is used more than once"))
    if not plan.user.milestones:
        problems.append(Problem("structure", "the user card has no milestones"))
    if not plan.checks:
        problems.append(Problem("structure", "the plan has no success checks"))
    check_ids = {c.id for c in plan.checks}
    for milestone in plan.user.milestones:
        if not milestone.checks:
            problems.append(Problem("structure", f"milestone {milestone.id} has no success check"))
        for ref in milestone.checks:
            if ref not in check_ids:
                problems.append(Problem("structure", f"milestone {milestone.id} refers to unknown check {ref!r}"))
    turns = plan.budgets.max_user_turns
    if len(plan.user.milestones) > turns:
        problems.append(Problem("structure", f"{len(plan.user.milestones)} milestones but only {turns} user turns"))
    for p in plan.perturbations:
        if (p.at_user_turn is None) == (p.when is None):
            problems.append(Problem("structure", f"perturbation {p.id} needs exactly one of at_user_turn and when"))
        elif p.at_user_turn is not None and not 1 <= p.at_user_turn <= turns:
            problems.append(Problem("structure", f"perturbation {p.id} fires at user turn {p.at_user_turn} of {turns}"))
    return problems


def _fixture_problems(plan: Plan, cfg: SimulateConfig) -> list[Problem]:
    problems: list[Problem] = []
    files = plan.fixtures.files
    if len(files) > cfg.max_files:
        problems.append(Problem("size", f"{len(files)} files, more than the cap of {cfg.max_files}"))
    roots = allowed_roots(plan, cfg)
    total = 0
    seen: set[str] = set()
    for f in files:
        size = _decoded_size(f.content, f.encoding)
        if size is None:
            problems.append(Problem("fixture", f"file {f.path}: content is not valid base64"))
            size = 0
        total += size
        if size > cfg.max_file_bytes:
            problems.append(Problem("size", f"file {f.path} is {size} bytes, more than {cfg.max_file_bytes}"))
        problems += _path_problems("file", f.path, f.mode, roots)
        resolved = resolve_path(f.path)
        if resolved in seen:
            problems.append(Problem("fixture", f"file {f.path} is listed twice"))
        seen.add(resolved)
    for d in plan.fixtures.dirs:
        problems += _path_problems("dir", d.path, d.mode, roots)
        if resolve_path(d.path) in seen:
            problems.append(Problem("fixture", f"dir {d.path} is also listed as a file"))
    if total > cfg.max_total_bytes:
        problems.append(Problem("size", f"fixtures hold {total} bytes, more than {cfg.max_total_bytes}"))
    return problems


def _decoded_size(content: str, encoding: str) -> int | None:
    if encoding == "text":
        return len(content.encode("utf-8"))
    try:
        return len(base64.b64decode(content, validate=True))
    except (binascii.Error, ValueError):
        return None


def _path_problems(what: str, path: str, mode: str, roots: list[str] | None) -> list[Problem]:
    problems: list[Problem] = []
    if not path.strip() or (what == "file" and path.strip().endswith("/")):
        return [Problem("path", f"{what} path {path!r} is not a file path")]
    if not _MODE.fullmatch(mode):
        problems.append(Problem("fixture", f"{what} {path}: mode {mode!r} is not octal like 0644"))
    if path.startswith("~"):
        problems.append(Problem("path", f"{what} {path}: write the agent's home as {AGENT_HOME}, not ~"))
    resolved = resolve_path(path)
    if ".." in path.split("/") and not path.startswith("/") and not _under(resolved, WORKSPACE):
        problems.append(Problem("path", f"{what} {path} escapes /workspace"))
    elif roots is not None and not any(_under(resolved, root) for root in roots):
        problems.append(
            Problem(
                "path", f"{what} {path} is outside /workspace and {AGENT_HOME} (the intent is not about the system)"
            )
        )
    return problems


_TILDE = re.compile(r"'[^']*'|(?<![\w/.~$-])~(?=/|\s|$)")
"""A home-directory ~, or a single-quoted string, where only ~/... is one: awk's `$4 ~ /x/` matches a pattern."""
_QUOTED_TILDE = re.compile(r"(?<![\w/.~$-])~(?=/)")


def root_home(script: str) -> str:
    """Root's ~ is /root; in a plan it always means the agent's home, so spell that out."""
    return _TILDE.sub(_agent_home, script)


def _agent_home(match: re.Match[str]) -> str:
    text = match.group(0)
    return _QUOTED_TILDE.sub(AGENT_HOME, text) if text.startswith("'") else AGENT_HOME


def _has_tilde(script: str) -> bool:
    return _TILDE.sub(_agent_home, script) != script


def _script_problems(plan: Plan, cfg: SimulateConfig) -> list[Problem]:
    problems = _root_tilde_problems(plan)
    if plan.solution and len(plan.solution) != len(plan.user.milestones):
        problems.append(
            Problem("structure", f"{len(plan.solution)} solutions for {len(plan.user.milestones)} milestones")
        )
    problems += [
        Problem("solution", f"the solution of milestone {m.id} is empty")
        for m, script in zip(plan.user.milestones, plan.solution, strict=False)
        if not script.strip()
    ]
    scripts = [("setup script", plan.fixtures.setup_script or "")]
    scripts += [(f"check {c.id}", c.command) for c in plan.checks if c.command is not None]
    for p in plan.perturbations:
        scripts.append((f"perturbation {p.id}", p.script))
        if p.when is not None:
            scripts.append((f"perturbation {p.id} condition", p.when))
    scripts += [(f"solution {i}", script) for i, script in enumerate(plan.solution, start=1)]
    for name, text in scripts:
        if len(text.encode("utf-8")) > cfg.max_script_bytes:
            problems.append(Problem("size", f"{name} is longer than {cfg.max_script_bytes} bytes"))
        if name.startswith("check") and not text.strip():
            problems.append(Problem("structure", f"{name} has an empty command"))
        if reason := _needs_network(text):
            problems.append(Problem("network", f"{name} needs the network ({reason}); the sandbox has none"))
    return problems


def _root_tilde_problems(plan: Plan) -> list[Problem]:
    """Checks and perturbations run as root, whose ~ is /root, not the agent's home."""
    scripts = [(f"check {c.id}", c.command) for c in plan.checks if c.command is not None]
    scripts += [(f"perturbation {p.id}", f"{p.script}\n{p.when or ''}") for p in plan.perturbations]
    return [
        Problem("path", f"{name} runs as root, where ~ is /root: write {AGENT_HOME} instead")
        for name, text in scripts
        if _has_tilde(text)
    ]


def _needs_network(script: str) -> str | None:
    if match := _INSTALLERS.search(script):
        return f"'{match.group(0)}'"
    for match in _NET_TOOLS.finditer(script):
        if not _LOCAL.search(match.group(0)):
            return f"'{match.group(0).strip()[:60]}'"
    return None


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
    assert isinstance(check, ShellCheck)
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


_PRUNABLE: frozenset[ProblemKind] = frozenset({"check_passes", "check_broken", "solution", "trigger", "perturbation"})


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
