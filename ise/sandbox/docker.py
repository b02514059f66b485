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
"""

from __future__ import annotations

import contextlib
import functools
import queue
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from ise.records import Fixtures
from ise.sandbox import lifecycle
from ise.sandbox.base import (
    ExecResult,
    FileEntry,
    FileToolError,
    SandboxError,
    SandboxInfo,
    SetupScriptFailed,
    User,
)
from ise.sandbox.channel import Channel, ChannelClosed, Mode, Reply
from ise.sandbox.config import SandboxConfig
from ise.sandbox.engine import docker_client
from ise.sandbox.helper import Helper, HelperGone, HelperStuck
from ise.sandbox.image import CONTEXT_LABEL, ensure_image

HOST_MARGIN_S = 5.0
"""How long past the in-container timeout (+ kill grace) the host waits before it steps in itself."""
HELPER_TIMEOUT_S = 60.0
"""Deadline of one helper request inside the container; the host waits HOST_MARGIN_S longer."""
SWEEP_SLACK_S = 0.25
REMOVAL_WAIT_S = 10.0

# Kills processes of the calling user that started less than $age centiseconds ago, except $excl and the script's
# own ancestors; passes until one finds nothing to kill, since a fork bomb forks between them (a loaded machine
# needed more than 20). Builtins only: it must work when the pids limit is exhausted. Clock ticks are 100/s on
# Linux (USER_HZ), the unit of /proc/uptime's two decimals too.
SWEEP = r"""
p=$$
while [[ $p -gt 1 ]]; do
  excl+=" $p "
  IFS= read -r line < /proc/$p/stat || break
  rest=${line##*) }; set -f; set -- $rest; set +f; p=$2
done
total=0
for ((pass = 0; pass < 200; pass++)); do
  IFS=' ' read -r up _ < /proc/uptime; now=${up/./}; now=$((10#$now)); hit=0
  for d in /proc/[0-9]*; do
    q=${d#/proc/}
    [[ $q == 1 || $excl == *" $q "* || ! -O $d ]] && continue
    IFS= read -r line < $d/stat 2>/dev/null || continue
    rest=${line##*) }; set -f; set -- $rest; set +f
    (( now - ${20} <= age )) || continue
    kill -$sig $q 2>/dev/null && hit=1 && total=$((total + 1))
  done
  [[ $hit == 1 && $sig == KILL ]] || break
done
echo $total
"""

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

_client_lock = threading.Lock()
_shared: dict[str, Any] = {}


def shared_api() -> Any:
    """One low-level API client per process, with room for many concurrent sandboxes' connections."""
    with _client_lock:
        if "api" not in _shared:
            client = docker_client()
            client.api.close()
            _shared["client"] = client = _pooled_client()
            _shared["api"] = client.api
            _shared["engine"] = f"docker {client.version().get('Version', '?')}"
        return _shared["api"]


def _pooled_client() -> Any:
    import docker

    return docker.DockerClient.from_env(version="auto", timeout=120, max_pool_size=128)


def _engine() -> str:
    shared_api()
    return str(_shared["engine"])


def _translate(exc: Exception, what: str) -> SandboxError:
    """An engine error as a SandboxError with the engine's own explanation."""
    explanation = getattr(exc, "explanation", None) or str(exc) or type(exc).__name__
    return SandboxError(f"{what}: {str(explanation).strip().splitlines()[0]}")


def _call(what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    import docker.errors
    import requests.exceptions

    try:
        return fn(*args, **kwargs)
    except (docker.errors.DockerException, requests.exceptions.RequestException, OSError) as exc:
        raise _translate(exc, what) from None


class DockerSandbox:
    """A started container plus the driver shells talking to it. Create with `open_sandbox` (or a SandboxPool)."""

    def __init__(self, config: SandboxConfig, *, run_id: str) -> None:
        self.config = config
        self.run_id = run_id
        self._api = shared_api()
        lifecycle.reap_once(self._api)
        image = _call(f"image {config.image} not found; run `ise sandbox build`", self._api.inspect_image, config.image)
        self.image_id: str = image["Id"]
        self._image_context = (image.get("Config") or {}).get("Labels", {}).get(CONTEXT_LABEL)
        self.name = f"ise-{re.sub(r'[^a-zA-Z0-9_.-]', '-', run_id)[:40]}-{secrets.token_hex(4)}"
        self.started_at = time.monotonic()
        self._lock = threading.Lock()
        self._idle: dict[str, list[Channel]] = {"agent": [], "root": []}
        self._channels: list[Channel] = []
        self._session: Channel | None = None
        self._session_lock = threading.Lock()
        self._helpers: dict[str, Helper] = {}
        self._helper_locks = {"agent": threading.Lock(), "root": threading.Lock()}
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
        created = _call(
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
            _call("cannot start the sandbox container", self._api.start, container_id)
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

    def __enter__(self) -> DockerSandbox:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

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
            engine=_engine(),
            settings=self.config.model_dump(mode="json"),
        )

    # --- channels ----------------------------------------------------------------------------------------------

    def _user(self, user: str) -> str:
        return self.config.agent_user if user == "agent" else "root"

    def _open_channel(self, user: str, mode: Mode) -> Channel:
        """Start a driver shell."""
        merge, workdir = self.config.merge_stderr, self.config.workdir

        def new() -> Channel:
            return Channel(self._api, self.container_id, user=self._user(user), mode=mode, merge=merge, workdir=workdir)

        channel = self._started(new, "cannot start a shell in the sandbox")
        with self._lock:
            self._channels.append(channel)
        return channel

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
                error = exc if isinstance(exc, SandboxError) else _translate(exc, what)
                if attempt == 2 or not self.alive():
                    raise self._broken(str(error)) from None
                time.sleep(0.05)
                continue
            return link
        raise AssertionError("unreachable")

    def _acquire(self, user: str) -> Channel:
        with self._lock:
            while self._idle[user]:
                channel = self._idle[user].pop()
                if channel.alive:
                    return channel
        return self._open_channel(user, "fresh")

    def _release(self, user: str, channel: Channel) -> None:
        with self._lock:
            if channel.alive and not self._closed:
                self._idle[user].append(channel)
            elif channel in self._channels:
                self._channels.remove(channel)

    def _discard(self, channel: Channel) -> None:
        channel.close()
        with self._lock:
            if channel in self._channels:
                self._channels.remove(channel)

    def warm(self) -> None:
        """Start the agent's session and both helpers now, so the first commands pay nothing extra."""
        with self._session_lock:
            if self._session is None:
                self._session = self._open_channel("agent", "session")
        for user in ("agent", "root"):
            with self._helper_locks[user]:
                self._running_helper(user)

    # --- stateless exec ----------------------------------------------------------------------------------------

    def exec(self, command: str, *, timeout_s: float | None = None, user: User = "agent") -> ExecResult:
        timeout = timeout_s or self.config.command_timeout_s
        reply, started = self._fresh_call(user, command, timeout)
        return self._result(reply, started, timeout, cwd=self.config.workdir)

    def _fresh_call(self, user: str, command: str, timeout: float) -> tuple[Reply, float]:
        """Run on an idle fresh driver of `user`; once more on a new one if that driver had died meanwhile."""
        for attempt in range(2):
            channel = self._acquire(user)
            try:
                return self._fresh(channel, user, command, timeout)
            except ChannelClosed:
                if attempt:
                    raise self._broken("the command shell keeps ending") from None
            finally:
                self._release(user, channel)
        raise AssertionError("unreachable")

    def _fresh(self, channel: Channel, user: str, command: str, timeout: float) -> tuple[Reply, float]:
        grace = self.config.kill_grace_s
        started = time.monotonic()
        try:
            reply = channel.send(command, timeout_s=timeout, kill_grace_s=grace, limit=self.config.output_limit_bytes)
            finished = channel.wait(reply, started + timeout + grace + HOST_MARGIN_S, stop_bytes=self.stop)
            if not finished:  # the in-container timeout did not end it, or it floods: stop it from outside
                self._sweep(user, started, "KILL")
                if not channel.wait(reply, time.monotonic() + 3.0):
                    self._discard(channel)
        except ChannelClosed:
            self._discard(channel)
            if not self._survived():
                raise self._broken("the command did not run") from None
            raise
        if reply.eof and not reply.done:
            if not self._survived():
                raise self._broken("the command did not finish")
            reply.exit_code = self._exit_status(channel)
            reply.stderr.add(b"\n[ise: the command killed the shell that ran it]\n")
        elif reply.timed_out or not reply.done:
            self._sweep(user, started, "KILL")  # what escaped the process group (setsid, double fork)
        return reply, started

    @property
    def stop(self) -> int:
        return self.config.output_stop_bytes

    def _exit_status(self, channel: Channel) -> int:
        try:
            code = self._api.exec_inspect(channel.exec_id).get("ExitCode")
        except Exception:
            code = None
        return int(code) if isinstance(code, int) else 137

    def _result(
        self, reply: Reply, started: float, timeout: float, *, cwd: str | None, session: bool = False
    ) -> ExecResult:
        timed_out = not session and (not reply.done or reply.timed_out)
        if reply.flooded:
            timed_out = False
            reply.stderr.add(f"\n[ise: output passed {self.stop} bytes; the command was stopped]\n".encode())
        exit_code = reply.exit_code if reply.exit_code is not None else 137
        return ExecResult(
            stdout=reply.stdout.text(),
            stderr=reply.stderr.text(),
            exit_code=exit_code,
            duration_s=time.monotonic() - started,
            timed_out=timed_out,
            truncated=reply.stdout.truncated or reply.stderr.truncated or reply.flooded,
            output_bytes=reply.output_bytes,
            cwd=reply.cwd if reply.done and reply.cwd else cwd,
        )

    def _sweep(self, user: str, started: float, signal: str) -> int:
        """Signal every process of `user` younger than the command that started at `started` (host clock); how
        many were signalled."""
        # /proc start times and uptime are in 10 ms ticks and both truncated; 0.25 s of slack absorbs that (at the
        # cost of also hitting a process the previous command started in its last quarter second).
        age = int((time.monotonic() - started + SWEEP_SLACK_S) * 100) + 1
        script = f"sig={signal} age={age} excl=' {' '.join(map(str, self.ise_pids()))} '\n{SWEEP}"
        who = self._user(user)
        for attempt in range(10):  # under a fork bomb even this exec may find no free pid at first
            try:
                created = self._api.exec_create(self.container_id, ["bash", "-c", script], user=who)
                output = self._api.exec_start(created["Id"]).decode(errors="replace").split()
                return int(output[-1]) if output and output[-1].isdigit() else 0
            except Exception:
                if self._closed or not self.alive():
                    raise self._broken("cannot stop the command") from None
                time.sleep(0.1 * (attempt + 1))
        return 0

    def ise_pids(self) -> list[int]:
        """ise's own long-lived processes in the container (drivers, the agent's session shell, helpers): what a
        sweep spares, and what tests leave out of the agent's processes. Their command lines are neutral, so the
        host's record of their pids is the only way to tell them from the agent's."""
        with self._lock:
            pids = [pid for c in self._channels for pid in (c.pid, c.shell_pid)]
            pids += [h.pid for h in self._helpers.values()]
        return sorted({pid for pid in pids if pid})

    @property
    def session_pid(self) -> int:
        """The pid of the agent's session shell in the container (0: none running)."""
        session = self._session
        return session.shell_pid if session is not None and session.alive else 0

    # --- persistent session ------------------------------------------------------------------------------------

    def run(self, command: str, *, timeout_s: float | None = None) -> ExecResult:
        timeout = timeout_s or self.config.command_timeout_s
        with self._session_lock:
            restarted = False
            for _ in range(2):
                if self._session is None or not self._session.alive:
                    restarted = self._session is not None  # it died since the last call: its state is gone
                    if self._session is not None:
                        self._discard(self._session)
                    self._session = self._open_channel("agent", "session")
                try:
                    result = self._session_command(self._session, command, timeout)
                except ChannelClosed:
                    if not self._survived():
                        raise self._broken("the session shell ended") from None
                    continue
                return result.model_copy(update={"session_reset": True}) if restarted else result
            raise self._broken("the session shell keeps ending")

    def _session_command(self, shell: Channel, command: str, timeout: float) -> ExecResult:
        """One command in the session shell. Timeout: SIGTERM to what the command started, SIGKILL after the grace
        period, and if the shell itself is what hangs (a builtin loop), kill it; the next call starts a new one."""
        started = time.monotonic()
        limit = self.config.output_limit_bytes
        reply = shell.send(command, timeout_s=timeout, kill_grace_s=self.config.kill_grace_s, limit=limit)
        finished = shell.wait(reply, started + timeout, stop_bytes=self.stop)
        timed_out = not finished and not reply.flooded
        killed = False
        if timed_out and self._sweep("agent", started, "TERM"):
            finished = shell.wait(reply, time.monotonic() + self.config.kill_grace_s)
        if not finished:
            killed = True
            if self._sweep("agent", started, "KILL"):
                finished = shell.wait(reply, time.monotonic() + 1.0)
            # Nothing to signal: the shell itself is busy (a builtin loop); wait no longer for it.
        if not finished:
            self._kill_pid(shell.shell_pid or shell.pid)  # the driver then reports the shell's end
            shell.wait(reply, time.monotonic() + 2.0)
            shell.close()
        if timed_out:
            self._sweep("agent", started, "KILL")  # survivors that ignored SIGTERM
            reply.exit_code = 137 if killed or not reply.done else 124
        reset = reply.exited or not shell.alive
        if reset:
            self._discard(shell)
            self._session = None
            if not reply.exited and not self._survived():
                raise self._broken("the session shell ended")
            if reply.exit_code is None:
                reply.exit_code = self._exit_status(shell)
            if reply.note:
                reply.stderr.add(f"\n[ise: {reply.note}; the next command runs in a new shell]\n".encode())
        result = self._result(reply, started, timeout, cwd=reply.cwd if reply.done else None, session=True)
        return result.model_copy(update={"timed_out": timed_out, "session_reset": reset})

    def _kill_pid(self, pid: int, user: str = "agent") -> None:
        with contextlib.suppress(Exception):
            created = self._api.exec_create(self.container_id, ["kill", "-9", str(pid)], user=self._user(user))
            self._api.exec_start(created["Id"])

    # --- helpers run in the container ---------------------------------------------------------------------------

    def _helper(self, name: str, request: dict[str, Any], *, user: User, reply_limit: int) -> dict[str, Any]:
        """One request to `user`'s helper. A helper found dead before it began the request is replaced and the
        request sent again; one that dies, stalls or floods during it is a SandboxError (it may have half acted)."""
        request = {**request, "op": name, "timeout_s": HELPER_TIMEOUT_S}
        with self._helper_locks[user]:
            for attempt in range(2):
                helper = self._running_helper(user)
                try:
                    answer = helper.call(
                        request, deadline=time.monotonic() + HELPER_TIMEOUT_S + HOST_MARGIN_S, limit=reply_limit
                    )
                except HelperGone as gone:
                    self._drop_helper(user, helper)
                    if self._closed or not self.alive():  # (a dead container also fails the next start)
                        raise self._broken(f"{name} did not finish") from None
                    if gone.begun or attempt:
                        raise SandboxError(f"{name} failed in the sandbox: {gone}") from None
                    continue
                except HelperStuck as stuck:
                    self._drop_helper(user, helper, kill=True)
                    if self._closed or not self.alive():
                        raise self._broken(f"{name} did not finish") from None
                    raise SandboxError(f"{name} failed in the sandbox: {stuck}") from None
                if "error" in answer:
                    raise SandboxError(f"{name} failed in the sandbox: {str(answer['error'])[:300]}")
                return answer
        raise AssertionError("unreachable")

    def _running_helper(self, user: str) -> Helper:
        """`user`'s helper, started if there is none (or it ended). Call with that user's helper lock held."""
        helper = self._helpers.get(user)
        if helper is not None and helper.poll():
            return helper
        if helper is not None:
            self._drop_helper(user, helper)
        workdir = self.config.workdir

        def new() -> Helper:
            return Helper(self._api, self.container_id, user=self._user(user), workdir=workdir)

        helper = self._started(new, "cannot start the helper in the sandbox")
        with self._lock:
            if self._closed:
                helper.close()
                raise SandboxError("the sandbox was closed")
            self._helpers[user] = helper
        return helper

    def _drop_helper(self, user: str, helper: Helper, *, kill: bool = False) -> None:
        helper.close()
        if kill and helper.pid:
            self._kill_pid(helper.pid, user)  # closing its stream does not stop a process that is busy
        with self._lock:
            if self._helpers.get(user) is helper:
                del self._helpers[user]

    def _file_tool(self, op: str, path: str, reply_limit: int = 1_000_000, **fields: Any) -> Any:
        request = {
            "tool": op,
            "path": path,
            "roots": self.config.file_roots,
            "read_limit": self.config.file_read_limit_bytes,
            **fields,
        }
        answer = self._helper("fstool", request, user="agent", reply_limit=reply_limit)
        if "refused" in answer:
            raise FileToolError(str(answer["refused"]))
        return answer["ok"]

    def read_file(self, path: str) -> str:
        # Room for the worst case: every byte escaped in JSON.
        return str(self._file_tool("read", path, reply_limit=6 * self.config.file_read_limit_bytes + 4096))

    def write_file(self, path: str, content: str) -> None:
        self._file_tool("write", path, content=content)

    def edit_file(self, path: str, old: str, new: str) -> None:
        self._file_tool("edit", path, old=old, new=new)

    def list_dir(self, path: str) -> list[FileEntry]:
        return [FileEntry.model_validate(item) for item in self._file_tool("list", path, reply_limit=8_000_000)]

    def snapshot(self, roots: Sequence[str] | None = None) -> dict[str, FileEntry]:
        cfg = self.config
        request = {
            "roots": list(cfg.watch_roots if roots is None else roots),
            "hash_limit": cfg.snapshot_hash_limit_bytes,
            "max_entries": cfg.snapshot_max_entries,
        }
        answer = self._helper("snapshot", request, user="root", reply_limit=400 * cfg.snapshot_max_entries)
        fields = ("path", "kind", "size", "mode", "sha256", "mtime_ns", "target")
        entries = (FileEntry.model_validate(dict(zip(fields, row, strict=True))) for row in answer["entries"])
        return {entry.path: entry for entry in entries}

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


class SandboxPool:
    """Keeps `size` started (and warmed) sandboxes ready, so a trajectory starts in milliseconds.

    A background thread refills the pool after each acquire. Pooled containers count as this process's own
    (removed at exit like any other); ones older than half their TTL are replaced instead of handed out.
    """

    def __init__(self, config: SandboxConfig, *, run_id: str, size: int | None = None) -> None:
        self.config = config
        self.run_id = run_id
        self.size = config.pool_size if size is None else size
        lifecycle.install_handlers()
        self._ready: queue.Queue[DockerSandbox] = queue.Queue()
        self._wanted = threading.Semaphore(self.size)
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._fill, name="ise-sandbox-pool", daemon=True)
        self._thread.start()

    def _fill(self) -> None:
        while not self._closed.is_set():
            if not self._wanted.acquire(timeout=0.2):
                continue
            try:
                sandbox = DockerSandbox(self.config, run_id=self.run_id)
                sandbox.warm()
            except SandboxError:
                self._wanted.release()
                self._closed.wait(1.0)
                continue
            if self._closed.is_set():
                sandbox.close()
                return
            self._ready.put(sandbox)

    def acquire(self, timeout_s: float = 0.0) -> DockerSandbox:
        """A ready sandbox from the pool, or a freshly started one if none is ready within `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                sandbox = (
                    self._ready.get(timeout=max(0.0, deadline - time.monotonic()) or None)
                    if timeout_s
                    else (self._ready.get_nowait())
                )
            except queue.Empty:
                return DockerSandbox(self.config, run_id=self.run_id)
            self._wanted.release()
            if time.monotonic() - sandbox.started_at < self.config.ttl_s / 2 and sandbox.alive():
                return sandbox
            sandbox.close()

    def wait_ready(self, timeout_s: float = 60.0) -> int:
        """Block until the pool is full (or the timeout); how many are ready."""
        deadline = time.monotonic() + timeout_s
        while self._ready.qsize() < self.size and time.monotonic() < deadline:
            time.sleep(0.05)
        return self._ready.qsize()

    def close(self) -> None:
        self._closed.set()
        self._thread.join(timeout=30)
        while True:
            try:
                self._ready.get_nowait().close()
            except queue.Empty:
                return

    def __enter__(self) -> SandboxPool:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
