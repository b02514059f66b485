"""What can be judged about a plan without running it: where its paths land and may land, what the intent says
the workspace holds, its structure, sizes, network needs, and root scripts' `~`. Problems found here and in the
dry run (ise/plan_validation.py) are the same records, shown to the plan writer as they are."""

from __future__ import annotations

import base64
import binascii
import posixpath
import re
from dataclasses import dataclass
from typing import Literal

from ise.config import SimulateConfig
from ise.plan_lint import lint_check
from ise.records import Intent, Plan, RewardCheck, ShellCheck
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
    "check_lint",
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


# --- paths -------------------------------------------------------------------------------------------------------


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


_EXTENSIONS = (
    "csv|tsv|json|jsonl|ya?ml|toml|ini|cfg|conf|env|log|txt|md|rst|py|sh|bash|js|ts|go|rs|java|c|h|cpp|rb|php|"
    "sql|db|sqlite|sqlite3|xml|html|css|gz|tgz|tar|zip|bak|pid|lock|service|timer|crontab|pem|key|ipynb|parquet|pdf"
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
    found = [token for item in intent.workspace for token, _ in paths_in(item)]
    return list(dict.fromkeys(found))


def paths_in(item: str) -> list[tuple[str, int]]:
    """The paths and file names one workspace item names, each with where it starts in the item."""
    found: list[tuple[str, int]] = []
    spans: list[tuple[int, int]] = []
    for match in _PATH_WITH_SLASH.finditer(item):
        token = match.group(1).rstrip(_TRAILING)
        if _looks_like_path(token):
            found.append((token, match.start(1)))
            spans.append(match.span(1))
    for pattern in (_FILE_NAME, _BARE_NAMES):
        for match in pattern.finditer(item):
            name = match.group(1).rstrip(_TRAILING)
            inside_a_path = any(a <= match.start(1) < b for a, b in spans)
            if not inside_a_path and not _PRODUCT_NAME.fullmatch(name):
                found.append((name, match.start(1)))
    return found


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

_INSTALLERS = re.compile(
    r"\b(?:pip3?|npm|yarn|gem|cargo|apt|apt-get|apk|dnf|yum|uv(?:\s+pip|\s+tool)?)\s+(?:install|add|sync)\b|\buvx\s"
)
_NET_TOOLS = re.compile(r"(?<![\w./-])(?:curl|wget|ssh|scp|ping|nc|git\s+(?:clone|fetch|pull|push))(?=\s|$)[^\n;|&]*")
"""Programs that reach out, named as commands (not as part of a path like ~/.ssh or a file like ping.log)."""
_LOCAL = re.compile(r"\b(?:localhost|127\.0\.0\.1|0\.0\.0\.0)\b|\s/|file://")
_MODE = re.compile(r"0?[0-7]{3}")


def static_problems(plan: Plan, cfg: SimulateConfig) -> list[Problem]:
    """Everything that can be judged without running the plan."""
    return [
        *_structure_problems(plan),
        *_fixture_problems(plan, cfg),
        *_script_problems(plan, cfg),
        *_check_lint_problems(plan),
    ]


def _check_lint_problems(plan: Plan) -> list[Problem]:
    """Checks whose outcome cannot depend on the workspace (ise/plan_lint.py), and reward checks in a sandbox where
    their verifier cannot run."""
    problems = [
        Problem("check_lint", f"check {check.id} ({check.command!r}) {finding.message}", check.id)
        for check in plan.checks
        if isinstance(check, ShellCheck) and (finding := lint_check(check)) is not None
    ]
    if plan.profile != "admin":
        problems += [
            Problem(
                "structure",
                f"reward check {check.id} needs the admin profile: its verifier writes {check.root} and "
                f"{check.reward_dir}, outside the user profile's writable mounts",
                check.id,
            )
            for check in plan.checks
            if isinstance(check, RewardCheck)
        ]
    return problems


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
        if reason := needs_network(text):
            problems.append(Problem("network", f"{name} needs the network ({reason}); the sandbox has none"))
    return problems


def _root_tilde_problems(plan: Plan) -> list[Problem]:
    """Checks and perturbations run as root, whose ~ is /root, not the agent's home. Under the admin profile the
    agent is root and /root its home, so there ~ means the same for both (AgentBench-OS tasks rely on it)."""
    if plan.profile == "admin":
        return []
    scripts = [(f"check {c.id}", c.command) for c in plan.checks if c.command is not None]
    scripts += [(f"perturbation {p.id}", f"{p.script}\n{p.when or ''}") for p in plan.perturbations]
    return [
        Problem("path", f"{name} runs as root, where ~ is /root: write {AGENT_HOME} instead")
        for name, text in scripts
        if _has_tilde(text)
    ]


def needs_network(script: str) -> str | None:
    """What in `script` reaches out (a package install, a network program), or None (also for imported tasks)."""
    if match := _INSTALLERS.search(script):
        return f"'{match.group(0)}'"
    for match in _NET_TOOLS.finditer(script):
        if not _LOCAL.search(match.group(0)):
            return f"'{match.group(0).strip()[:60]}'"
    return None
