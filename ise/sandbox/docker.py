"""The Docker backend of the Sandbox protocol: one fresh, hardened container per trajectory.

    with open_sandbox(config.sandbox, run_id="execute-1a2b") as box:
        box.seed(plan.fixtures)
        result = box.run("cd src && make test")        # persistent shell, as the agent user
        check = box.exec("test -f out.txt", user="root")

Commands go through drivers kept running in the container (ise/sandbox/channel.py, incontainer/shell.py): for `run`
one whose child is the agent's persistent shell, and per user a pool of "fresh" drivers for `exec`, each running a
new `bash -c` per command in its own process group. Timeouts escalate: SIGTERM, SIGKILL after the grace period,
then a sweep that kills every process of that user younger than the command (setsid and double-forked children
included) except ise's own (their pids, as the host knows them), and for the session, the shell itself.
File tools, snapshots and fixture seeding are small stdlib Python modules served inside the container by one
long-lived helper process per user (ise/sandbox/helper.py, ise/sandbox/incontainer/): the agent user's for file
tools, so the kernel's permissions apply as well, and root's for snapshots and seeding.

DockerSandbox joins the backend's layers: docker_container.py (the container, its settings and the registry of
ise's processes in it), docker_commands.py (`exec` and `run`) and docker_files.py (the helpers' requests); the engine
client is docker_api.py's, the warm pool docker_pool.py's.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from ise.records import Fixtures
from ise.sandbox import lifecycle
from ise.sandbox.base import SetupScriptFailed
from ise.sandbox.config import SandboxConfig
from ise.sandbox.docker_commands import DockerCommands
from ise.sandbox.docker_files import DockerFileTools
from ise.sandbox.image import ensure_image

if TYPE_CHECKING:
    from ise.sandbox.docker_pool import SandboxPool


class DockerSandbox(DockerCommands, DockerFileTools):
    """A started container plus the driver shells talking to it. Create with `open_sandbox` (or a SandboxPool)."""

    def __enter__(self) -> DockerSandbox:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def warm(self) -> None:
        """Start the agent's session and both helpers now, so the first commands pay nothing extra."""
        with self._session_lock:
            if self._session is None:
                self._session = self._open_channel("agent", "session")
        for user in ("agent", "root"):
            with self._helper_locks[user]:
                self._running_helper(user)

    def seed(self, fixtures: Fixtures) -> None:
        request = {
            "base": self.config.workdir,
            "dirs": [d.model_dump() for d in fixtures.dirs],
            "files": [f.model_dump() for f in fixtures.files],
        }
        size = sum(len(f.content) for f in fixtures.files)
        answer = self._helper("seed", request, user="root", reply_limit=64_000 + size // 1000)
        if "failed" in answer:
            raise SetupScriptFailed(str(answer["failed"]))
        if fixtures.setup_script:
            result = self.exec(fixtures.setup_script, timeout_s=self.config.setup_timeout_s, user="root")
            if result.exit_code != 0 or result.timed_out:
                why = "timed out" if result.timed_out else f"exit {result.exit_code}"
                output = excerpt(result.stderr.strip() or result.stdout.strip())
                raise SetupScriptFailed(f"fixture setup script failed ({why}): {output}")


def excerpt(text: str, *, head: int = 3, tail: int = 5, width: int = 200) -> str:
    """The first `head` and last `tail` lines of `text`, each cut to `width` characters: a failure's cause is
    usually at the start, its last words at the end."""
    lines = [line if len(line) <= width else line[: width - 3] + "..." for line in text.splitlines()]
    if len(lines) > head + tail:
        lines = [*lines[:head], f"[... {len(lines) - head - tail} lines ...]", *lines[-tail:]]
    return "\n".join(lines)


# --- opening sandboxes ------------------------------------------------------------------------------------------


@contextlib.contextmanager
def open_sandbox(config: SandboxConfig, *, run_id: str, pool: SandboxPool | None = None) -> Iterator[DockerSandbox]:
    """A fresh sandbox for one trajectory, removed when the block ends, whatever happens in it."""
    sandbox = pool.acquire() if pool is not None else DockerSandbox(config, run_id=run_id)
    try:
        yield sandbox
    finally:
        sandbox.close()


def require_image(config: SandboxConfig) -> str:
    """Make sure the configured image exists (building ise's own images when missing or stale); its id.
    Call it from the main thread before starting workers: it also installs the clean-up signal handlers."""
    lifecycle.install_handlers()
    return ensure_image(config.image)
