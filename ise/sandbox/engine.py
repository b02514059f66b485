"""Make sure a Docker engine answers: use the one configured, else (root on Debian) install and start dockerd.

`ise sandbox engine` and the test suite's set-up call `ensure_engine()`; everything else calls `docker_client()`,
which only connects and turns "no engine" into one clear SandboxError.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ise.sandbox.base import SandboxError

if TYPE_CHECKING:
    import docker

DOCKERD_LOG = Path("/var/log/ise-dockerd.log")
DOCKERD_PIDFILE = Path("/var/run/docker.pid")
APT_PACKAGES = ("docker.io", "debootstrap")
STARTUP_WAIT_S = 90.0


def docker_client(timeout_s: float = 60.0) -> docker.DockerClient:
    """A client for the engine in DOCKER_HOST (or the local socket); SandboxError if none answers."""
    import docker
    import docker.errors

    try:
        # "auto": the engine here may be older than the SDK's default API version.
        client = docker.DockerClient.from_env(version="auto", timeout=int(timeout_s))
        client.ping()
    except docker.errors.DockerException as exc:
        raise SandboxError(f"no Docker engine answers ({_first_line(exc)}); run `ise sandbox engine`") from None
    return client


def engine_answers() -> bool:
    try:
        docker_client(timeout_s=5).close()
    except SandboxError:
        return False
    return True


def ensure_engine(log: Path = DOCKERD_LOG, say: Callable[[str], None] = print) -> str:
    """Return a one-line description of the engine in use, installing and starting one if needed."""
    if not engine_answers():
        _start_local_engine(log, say)
    client = docker_client()
    try:
        info = client.version()
    finally:
        client.close()
    return f"Docker engine {info.get('Version', '?')} (API {info.get('ApiVersion', '?')})"


def _start_local_engine(log: Path, say: Callable[[str], None]) -> None:
    if os.environ.get("DOCKER_HOST"):
        raise SandboxError(f"the Docker engine at DOCKER_HOST={os.environ['DOCKER_HOST']} does not answer")
    if os.geteuid() != 0 or not Path("/etc/debian_version").exists():
        raise SandboxError(
            "no Docker engine answers and ise can only install one as root on Debian; "
            "start dockerd (or set DOCKER_HOST) and retry"
        )
    if shutil.which("dockerd") is None or shutil.which("debootstrap") is None:
        say(f"installing {' '.join(APT_PACKAGES)} with apt-get (about a minute)")
        _apt_install(APT_PACKAGES)
    if not _dockerd_running():
        say(f"starting dockerd (log: {log})")
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            # A new session: dockerd must outlive this process and ignore its Ctrl-C.
            subprocess.Popen(
                ["dockerd"], stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True, close_fds=True
            )
    _wait_for_engine(log)


def _apt_install(packages: tuple[str, ...]) -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", *packages]):
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            raise SandboxError(f"`{' '.join(command)}` failed (exit {done.returncode}): {tail[0]}")


def _dockerd_running() -> bool:
    """True if the pid file names a live dockerd (one may be starting up: wait for it rather than start another)."""
    try:
        pid = int(DOCKERD_PIDFILE.read_text().strip())
        return "dockerd" in Path(f"/proc/{pid}/comm").read_text()
    except (OSError, ValueError):
        return False


def _wait_for_engine(log: Path) -> None:
    deadline = time.monotonic() + STARTUP_WAIT_S
    while time.monotonic() < deadline:
        if engine_answers():
            return
        time.sleep(0.5)
    tail = _tail(log)
    raise SandboxError(f"dockerd did not answer within {STARTUP_WAIT_S:.0f} s; last log line: {tail}")


def _tail(log: Path) -> str:
    try:
        lines = log.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return lines[-1] if lines else "(empty log)"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
