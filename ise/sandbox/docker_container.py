"""A started, hardened Docker container and the ise processes that run in it (command drivers and helpers):
the container's settings, its keeper process, its state, and removal of the whole when the sandbox closes.

The Docker backend's layers build on it: docker_commands.py (exec and the persistent session), docker_files.py
(file tools and snapshots through the in-container helpers) and docker.py, which joins them into DockerSandbox.
"""

from __future__ import annotations

import contextlib
import functools
import re
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from ise.sandbox import lifecycle
from ise.sandbox.base import SandboxError, SandboxInfo
from ise.sandbox.channel import Channel
from ise.sandbox.config import SandboxConfig
from ise.sandbox.docker_api import engine_call, engine_version, shared_api, translate_error
from ise.sandbox.helper import Helper
from ise.sandbox.image import CONTEXT_LABEL

HOST_MARGIN_S = 5.0
"""How long past the in-container timeout (+ kill grace) the host waits before it steps in itself."""
REMOVAL_WAIT_S = 10.0

# The main process of a container with `immune_pid1`: PID 1 itself, a bash loop that ignores every signal. The kernel
# drops any signal sent to a PID 1 from inside its namespace unless it has a handler, so even root there cannot
# stop it; bash's wait reaps every child, the orphans PID 1 adopts included. It is started by setpriv with only its
# real ids set to nobody: bash then drops the effective ones as well, and a process whose ids changed is not
# dumpable, so root in the sandbox cannot ptrace it either (it would need CAP_SYS_PTRACE). $1 is the TTL in
# seconds; its sleep shows as `ise-keeper N` (and may be killed: the loop starts another) and holds no stream of the
# container's log (PID 1 alone does, and /proc/1/fd is as closed as ptrace).
KEEPER = (
    "trap '' TERM INT HUP QUIT USR1 USR2 PIPE ALRM; end=$((SECONDS + $1)); while ((SECONDS < end)); do "
    "left=$((end - SECONDS)); (exec -a ise-keeper sleep $((left < 30 ? left : 30))) </dev/null &>/dev/null & "
    "wait $!; done"
)
KEEPER_COMMAND = ["setpriv", "--ruid=65534", "--rgid=65534", "--clear-groups", "bash", "-c", KEEPER, "ise-keeper"]

Link = TypeVar("Link", Channel, Helper)
"""A process ise keeps running in the container and talks to over one exec socket."""


class DockerContainer:
    """A started container and the registry of ise's processes in it; closing it stops them and removes the
    container. The backend's layers add what runs there (see the module docstring)."""

    def __init__(self, config: SandboxConfig, *, run_id: str) -> None:
        self.config = config
        self.run_id = run_id
        self._api = shared_api()
        lifecycle.reap_once(self._api)
        image = engine_call(
            f"image {config.image} not found; run `ise sandbox build`", self._api.inspect_image, config.image
        )
        self.image_id: str = image["Id"]
        self._image_context = (image.get("Config") or {}).get("Labels", {}).get(CONTEXT_LABEL)
        self.name = f"ise-{re.sub(r'[^a-zA-Z0-9_.-]', '-', run_id)[:40]}-{secrets.token_hex(4)}"
        self.started_at = time.monotonic()
        self._lock = threading.Lock()
        self._channels: list[Channel] = []
        self._helpers: dict[str, Helper] = {}
        self._closed = False
        self.container_id = self._start_container()

    # --- lifecycle ---------------------------------------------------------------------------------------------

    def _host_config(self) -> Any:
        cfg = self.config
        options: dict[str, Any] = {
            "network_mode": cfg.network,
            "read_only": cfg.read_only_root,
            "tmpfs": dict(cfg.tmpfs),
            "cap_drop": list(cfg.cap_drop),
            "cap_add": list(cfg.cap_add),
            "security_opt": ["no-new-privileges"] if cfg.no_new_privileges else [],
            "pids_limit": cfg.pids_limit,
            "mem_limit": f"{cfg.memory_mb}m",
            "memswap_limit": f"{cfg.memory_mb}m",
            "nano_cpus": int(cfg.cpus * 1e9),
            "init": cfg.init and not cfg.immune_pid1,
            "auto_remove": True,
            "log_config": {"type": "json-file", "config": {"max-size": cfg.log_max_size, "max-file": "1"}},
        }
        if cfg.file_size_limit_mb is not None:
            size = cfg.file_size_limit_mb * 2**20
            options["ulimits"] = [{"Name": "fsize", "Soft": size, "Hard": size}]
        return self._api.create_host_config(**options)

    def _start_container(self) -> str:
        ttl = str(self.config.ttl_s)
        created = engine_call(
            "cannot create the sandbox container",
            self._api.create_container,
            self.image_id,
            command=[*KEEPER_COMMAND, ttl] if self.config.immune_pid1 else ["sleep", ttl],
            user="root",  # PID 1's child: the agent user cannot kill the container's main process
            working_dir=self.config.workdir,
            hostname="workspace",
            labels=lifecycle.labels(self.run_id),
            name=self.name,
            host_config=self._host_config(),
        )
        container_id: str = created["Id"]
        lifecycle.register(container_id, functools.partial(self._remove, container_id))
        try:
            engine_call("cannot start the sandbox container", self._api.start, container_id)
        except SandboxError:
            self._remove(container_id)
            raise
        return container_id

    def close(self) -> None:
        self._closed = True
        with self._lock:
            channels, self._channels = self._channels, []
            helpers, self._helpers = list(self._helpers.values()), {}
        for channel in channels:
            channel.close()
        for helper in helpers:
            helper.close()
        self._remove()

    def _remove(self, container_id: str | None = None) -> None:
        container_id = container_id or getattr(self, "container_id", None)
        if not container_id:
            return
        lifecycle.unregister(container_id)
        try:
            self._api.remove_container(container_id, force=True)
        except Exception:  # gone already, or the engine is auto-removing it (it stopped): wait until it is gone
            deadline = time.monotonic() + REMOVAL_WAIT_S
            while time.monotonic() < deadline and self._exists(container_id):
                time.sleep(0.05)

    def _exists(self, container_id: str) -> bool:
        import docker.errors

        try:
            self._api.inspect_container(container_id)
        except docker.errors.NotFound:
            return False
        except Exception:
            return True  # cannot tell: keep waiting until the deadline
        return True

    def alive(self) -> bool:
        try:
            state = self._api.inspect_container(self.container_id)["State"]
        except Exception:
            return False
        return bool(state.get("Running")) and not state.get("Paused")

    def _survived(self) -> bool:
        """After a shell ended unexpectedly: is the container still up? The engine may report a container killed
        from outside as running for a moment, so look a few times before blaming the command."""
        for _ in range(5):
            if not self.alive():
                return False
            time.sleep(0.1)
        return True

    def _broken(self, what: str) -> SandboxError:
        if self._closed:
            return SandboxError(f"{what}: the sandbox was closed")
        try:
            state = self._api.inspect_container(self.container_id)["State"]
        except Exception:
            return SandboxError(f"{what}: the sandbox container {self.name} is gone")
        if state.get("Paused"):
            return SandboxError(f"{what}: the sandbox container {self.name} is paused")
        if not state.get("Running"):
            return SandboxError(f"{what}: the sandbox container {self.name} stopped ({state.get('Status')})")
        return SandboxError(f"{what}: the sandbox stopped answering")

    @property
    def info(self) -> SandboxInfo:
        return SandboxInfo(
            backend="docker",
            image=self.config.image,
            image_id=self.image_id,
            image_context_sha256=self._image_context,
            engine=engine_version(),
            settings=self.config.model_dump(mode="json"),
        )

    # --- ise's processes in it ---------------------------------------------------------------------------------

    def _user(self, user: str) -> str:
        return self.config.agent_user if user == "agent" else "root"

    def _started(self, new: Callable[[], Link], what: str) -> Link:
        """`new().start()`, tried again when it fails while the container is fine: the engine occasionally drops a
        fresh exec's streams under load ("file already closed")."""
        for attempt in range(3):
            if self._closed:
                raise SandboxError("the sandbox was closed")
            link = new()
            try:
                link.start()
            except Exception as exc:
                error = exc if isinstance(exc, SandboxError) else translate_error(exc, what)
                if attempt == 2 or not self.alive():
                    raise self._broken(str(error)) from None
                time.sleep(0.05)
                continue
            return link
        raise AssertionError("unreachable")

    def ise_pids(self) -> list[int]:
        """ise's own long-lived processes in the container (drivers, the agent's session shell, helpers): what a
        sweep spares, and what tests leave out of the agent's processes. Their command lines are neutral, so the
        host's record of their pids is the only way to tell them from the agent's."""
        with self._lock:
            pids = [pid for c in self._channels for pid in (c.pid, c.shell_pid)]
            pids += [h.pid for h in self._helpers.values()]
        return sorted({pid for pid in pids if pid})

    def _kill_pid(self, pid: int, user: str = "agent") -> None:
        with contextlib.suppress(Exception):
            created = self._api.exec_create(self.container_id, ["kill", "-9", str(pid)], user=self._user(user))
            self._api.exec_start(created["Id"])
