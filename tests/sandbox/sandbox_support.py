"""Helpers shared by the sandbox tests (importable from test modules, unlike conftest)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager

from ise.sandbox.docker import DockerSandbox

RUN_ID = f"pytest-sandbox-{uuid.uuid4().hex[:8]}"
"""Every container these tests make carries this run id (subprocesses included)."""

OpenSandbox = Callable[..., AbstractContextManager[DockerSandbox]]


def agent_processes(box: DockerSandbox) -> list[str]:
    """Command lines of the agent user's processes, minus ise's own driver shells and the listing itself."""
    listing = box.exec("ps -u agent -o pid=,args=", user="root").stdout.splitlines()
    return [line.strip() for line in listing if "__ise_mode" not in line and "ps -u agent" not in line]
