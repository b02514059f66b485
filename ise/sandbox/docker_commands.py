"""Commands in a Docker sandbox: `exec` on a pool of fresh drivers per user, `run` in the agent's persistent
session shell, and the escalation when a command outlives its timeout (SIGTERM, SIGKILL, then a sweep of every
process the command left behind)."""

from __future__ import annotations

import threading
import time

from ise.sandbox.base import ExecResult, User
from ise.sandbox.channel import Channel, ChannelClosed, Mode, Reply
from ise.sandbox.config import SandboxConfig
from ise.sandbox.docker_container import HOST_MARGIN_S, DockerContainer

SWEEP_SLACK_S = 0.25

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


class DockerCommands(DockerContainer):
    """The command layer of DockerSandbox: fresh drivers for `exec`, the session shell for `run`."""

    def __init__(self, config: SandboxConfig, *, run_id: str) -> None:
        super().__init__(config, run_id=run_id)
        self._idle: dict[str, list[Channel]] = {"agent": [], "root": []}
        self._session: Channel | None = None
        self._session_lock = threading.Lock()

    # --- channels ----------------------------------------------------------------------------------------------

    def _open_channel(self, user: str, mode: Mode) -> Channel:
        """Start a driver shell."""
        merge, workdir = self.config.merge_stderr, self.config.workdir

        def new() -> Channel:
            return Channel(self._api, self.container_id, user=self._user(user), mode=mode, merge=merge, workdir=workdir)

        channel = self._started(new, "cannot start a shell in the sandbox")
        with self._lock:
            self._channels.append(channel)
        return channel

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
