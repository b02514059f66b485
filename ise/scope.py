"""A plan's reach in its sandbox: which roots each step's file changes cover.

The profile's own watch roots are always watched (the workspace and the agent's home; under admin also /etc,
/usr/local, /srv, /opt and root's home). So is every root the plan seeds or declares (`watch`), and under admin the
directories its shell checks name, since that is where system work lands.
Watching more roots costs a bigger snapshot per step (`bench/sandbox_bench.py` measures it), so roots nested in
another are folded into it and the kernel's own trees are never walked.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Sequence

from ise.records import Plan, Profile, ShellCheck

WORKSPACE = "/workspace"
AGENT_HOME = "/home/agent"
UNWATCHABLE = ("/", "/proc", "/sys", "/dev", "/run", "/tmp", "/var/tmp")
"""Never walked: kernel views, and scratch space whose churn says nothing about the task."""

_ABSOLUTE = re.compile(r"(?<![\w.~$/-])(/[\w.@+-]+(?:/[\w.@+-]+)*)")


def resolve_path(path: str) -> str:
    """Where a fixture path lands: `~/x` in the agent's home, relative paths under /workspace."""
    path = path.strip()
    if path == "~" or path.startswith("~/"):
        path = AGENT_HOME + path[1:]
    elif not path.startswith("/"):
        path = f"{WORKSPACE}/{path}"
    return posixpath.normpath(path)


def watched_roots(plan: Plan, profile: Profile, base: Sequence[str]) -> list[str]:
    """The roots whose changes each step records, sorted, none inside another; `base` is the profile's own."""
    roots = [*base, *plan.watch]
    roots += [posixpath.dirname(resolve_path(f.path)) for f in plan.fixtures.files]
    roots += [resolve_path(d.path) for d in plan.fixtures.dirs]
    if profile == "admin":
        named = [path for c in plan.checks if isinstance(c, ShellCheck) for path in _ABSOLUTE.findall(c.command)]
        roots += [parent for parent in map(posixpath.dirname, named) if not _system_tree(parent)]
    return _outermost(roots)


def _system_tree(path: str) -> bool:
    """Trees of the distribution itself (thousands of files, a program's path in a check names them): watched only
    when a plan declares them."""
    return path in ("/", "/usr", "/bin", "/sbin", "/usr/bin", "/usr/sbin", "/lib", "/var", "/var/lib") or any(
        _under(path, tree) for tree in ("/usr/lib", "/usr/share", "/usr/include", "/lib", "/var/lib/dpkg")
    )


def _outermost(roots: list[str]) -> list[str]:
    kept: list[str] = []
    for root in sorted({posixpath.normpath(r) for r in roots if r.startswith("/")}, key=len):
        if any(_under(root, bad) for bad in UNWATCHABLE[1:]) or root == "/":
            continue
        if not any(_under(root, outer) for outer in kept):
            kept.append(root)
    return sorted(kept)


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")
