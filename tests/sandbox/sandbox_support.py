"""Helpers shared by the sandbox tests (importable from test modules, unlike conftest)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager

from ise.sandbox.docker import DockerSandbox

RUN_ID = f"pytest-sandbox-{uuid.uuid4().hex[:8]}"
"""Every container these tests make carries this run id (subprocesses included)."""

PROFILES = ("user", "admin")
"""What a module runs under when it overrides the `profile` fixture with these params."""

OpenSandbox = Callable[..., AbstractContextManager[DockerSandbox]]


def agent_processes(box: DockerSandbox, *, strict: bool = True) -> list[str]:
    """Command lines of the agent user's processes (root's in the admin profile), minus ise's own drivers, session
    shell and helpers (by the pids the host knows: their command lines are neutral), PID 1 keeper and the listing.
    A listing that cannot fork (the pids limit is still exhausted) fails, or with strict=False counts as busy."""
    user = box.config.agent_user
    listing = box.exec(f"ps -u {user} -o pid=,args=; echo listed", user="root")
    if not strict and not listing.stdout.endswith("listed\n"):
        return [f"(no free pid to list processes: {listing.stderr.strip()[-200:]})"]
    assert listing.stdout.endswith("listed\n"), f"could not list processes: {listing}"
    lines = listing.stdout.splitlines()[:-1]
    pids = {str(pid) for pid in box.ise_pids()}
    ours = (f"ps -u {user}", "ise-keeper")
    return [line.strip() for line in lines if line.split()[0] not in pids and not any(mark in line for mark in ours)]


def settled(box: DockerSandbox, within_s: float = 10.0) -> list[str]:
    """The agent's processes once none are left, or what is still there after `within_s`."""
    deadline = time.monotonic() + within_s
    while (left := agent_processes(box, strict=False)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left
