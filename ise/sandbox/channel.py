"""The host's end of one of ise's shells in the sandbox: a driver process (ise/sandbox/incontainer/shell.py has its
side and the wire format) over one `docker exec` socket.

Starting a process with `docker exec` costs ~35 ms here; handing a command to a process already running costs well
under a millisecond. So every command goes through a driver started once per sandbox (per user and mode):
- session: the driver's child is the agent's persistent bash, so cwd, variables and functions persist;
- fresh: the driver runs each command as a new `bash -c` in a process group of its own (stateless exec), and stops
  that group at the command's timeout.

The driver frames everything it sends, the command's output included: nothing a command prints is read as protocol,
so no output can end a command, fake its exit code or reach another command's result, and no marker or token exists
that could leak into one. Output is counted and cut on the host (head and tail kept per stream). The channel never
blocks past the deadline it is given; what to do then (kill processes, restart the shell) is the sandbox's decision.
"""

from __future__ import annotations

import contextlib
import json
import select
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from ise.sandbox.base import SandboxError
from ise.sandbox.incontainer import COMMAND, SHELL_MODULES, bundle

Mode = Literal["session", "fresh"]


class ChannelClosed(SandboxError):
    """The driver shell is gone (it exited, or was killed); the container may still be fine."""


_HEADER = struct.Struct(">BxxxL")
"""Docker's own framing of an exec's stdout (1) and stderr (2)."""
_FRAME = struct.Struct(">cL")
"""The driver's framing, inside its stdout: a kind byte and a length."""
_LENGTH = struct.Struct(">L")
_CHUNK = 65536
_FRAME_LIMIT = 1 << 20
"""The driver sends output in chunks of 64 KiB: a longer frame means the stream is not the driver's."""


class Capture:
    """One output stream: counts every byte, keeps the first and last `limit // 2` bytes."""

    def __init__(self, limit: int) -> None:
        self.half = max(1, limit // 2)
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def add(self, data: bytes) -> None:
        if not data:
            return
        self.total += len(data)
        room = self.half - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        if data:
            self.tail += data
            if len(self.tail) > 2 * self.half:
                del self.tail[: len(self.tail) - self.half]

    @property
    def truncated(self) -> bool:
        return self.total > len(self.head) + min(len(self.tail), self.half)

    def data(self) -> bytes:
        """Everything, if it fit; else head + a note + tail."""
        tail = bytes(self.tail[-self.half :]) if self.tail else b""
        if not self.truncated:
            return bytes(self.head) + tail
        omitted = self.total - len(self.head) - len(tail)
        return bytes(self.head) + f"\n[... {omitted} bytes omitted ...]\n".encode() + tail

    def text(self) -> str:
        return self.data().decode("utf-8", errors="replace")


@dataclass
class Reply:
    """What came back for one command (complete when `done`)."""

    stdout: Capture
    stderr: Capture
    exit_code: int | None = None
    started: float | None = None
    """In-container clock when the command started and ended."""
    ended: float | None = None
    cwd: str | None = None
    begun: bool = False
    """The driver has the command (from here on it may have run)."""
    done: bool = False
    eof: bool = False
    """The driver's stream closed (it exited or was killed) before the command's end."""
    exited: bool = False
    """The session shell ended with the command (exit, exec, killed) or cannot take another one: it is replaced."""
    timed_out: bool = False
    """The driver stopped the command at its timeout (fresh mode)."""
    flooded: bool = False
    """The command wrote more than the stop limit."""
    note: str = ""
    """Why the session shell cannot go on, when it is not simply gone."""

    @property
    def output_bytes(self) -> int:
        return self.stdout.total + self.stderr.total

    @property
    def elapsed(self) -> float | None:
        if self.started is None or self.ended is None:
            return None
        return self.ended - self.started


class ExecSocket:
    """The socket of one `docker exec` with stdin attached: bytes go in raw, and stdout (1) and stderr (2) come back
    multiplexed in frames. Never blocks past the timeout it is given."""

    def __init__(self, api: Any, container_id: str, command: list[str], *, user: str, workdir: str) -> None:
        created = api.exec_create(
            container_id, command, stdin=True, stdout=True, stderr=True, user=user, workdir=workdir
        )
        self.exec_id: str = created["Id"]
        self._raw = api.exec_start(self.exec_id, socket=True)  # kept: it holds the HTTP response alive
        sock: socket.socket = getattr(self._raw, "_sock", self._raw)
        sock.setblocking(True)
        self._sock: socket.socket | None = sock
        self._buf = bytearray()
        self.eof = False

    def send(self, data: bytes) -> None:
        """OSError if the exec is gone."""
        if self._sock is None:
            raise OSError("closed")
        self._sock.sendall(data)

    def frames(self, timeout: float) -> list[tuple[int, bytes]]:
        """Whatever complete frames arrive within `timeout`; sets `eof` when the stream has ended."""
        frames: list[tuple[int, bytes]] = []
        sock = self._sock
        try:
            if sock is None:  # closed by another thread (the sandbox is being closed)
                raise OSError("closed")
            if not select.select([sock], [], [], timeout)[0]:
                return frames
            data = sock.recv(_CHUNK)
        except (OSError, ValueError):
            data = b""
        if not data:
            self.eof = True
        self._buf += data
        buf = self._buf
        offset = 0
        while len(buf) - offset >= _HEADER.size:
            kind, size = _HEADER.unpack_from(buf, offset)
            if len(buf) - offset - _HEADER.size < size:
                break
            start = offset + _HEADER.size
            frames.append((kind, bytes(buf[start : start + size])))
            offset = start + size
        del buf[:offset]
        return frames

    def close(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None


class Channel:
    """One driver in one container, used by one caller at a time."""

    def __init__(self, api: Any, container_id: str, *, user: str, mode: Mode, merge: bool, workdir: str) -> None:
        self.api = api
        self.container_id = container_id
        self.user = user
        self.mode = mode
        self.merge = merge
        self.workdir = workdir
        self.exec_id = ""
        self.pid = 0
        """The driver's pid inside the container."""
        self.shell_pid = 0
        """Session mode: the agent's shell (the driver's child)."""
        self.tag = ""
        """Session mode: what the shell's own variables are named after (never in a command's output)."""
        self.alive = False
        self._link: ExecSocket | None = None
        self._buf = bytearray()
        self._hello: dict[str, Any] | None = None
        self.errors = Capture(4096)
        """What the driver wrote on its stderr (a crash's traceback)."""
        self.engine_error = ""
        """What the engine reported on its error stream for this exec, if anything."""

    def start(self, timeout_s: float = 30.0) -> None:
        self._link = ExecSocket(self.api, self.container_id, COMMAND, user=self.user, workdir=self.workdir)
        self.exec_id = self._link.exec_id
        hello = Reply(Capture(4096), Capture(4096))
        try:
            self._link.send(bundle("shell", SHELL_MODULES, {"mode": self.mode, "merge": self.merge}))
            self._pump(hello, time.monotonic() + timeout_s, until=lambda: self._hello is not None)
        except OSError:
            pass
        if self._hello is None or not isinstance(self._hello.get("pid"), int):
            self.close()
            got = (self.engine_error or self.errors.text()).strip()[-200:]
            raise SandboxError(f"the sandbox shell did not start (got {got!r})")
        self.pid = self._hello["pid"]
        self.shell_pid = int(self._hello.get("shell") or 0)
        self.tag = str(self._hello.get("tag") or "")
        self.alive = True

    def send(self, command: str, *, timeout_s: float, kill_grace_s: float, limit: int) -> Reply:
        """Start a command; collect its reply with `wait`. ChannelClosed if the driver is known to be gone."""
        if self._link is None or not self.alive:
            raise ChannelClosed("the sandbox shell ended")
        body = json.dumps({"cmd": command, "timeout": timeout_s, "grace": kill_grace_s}).encode()
        try:
            self._link.send(_LENGTH.pack(len(body)) + body)
        except OSError as exc:
            self.alive = False
            raise ChannelClosed(f"lost the sandbox shell: {exc}") from None
        return Reply(Capture(limit), Capture(limit))

    def wait(self, reply: Reply, deadline: float, *, stop_bytes: int | None = None) -> bool:
        """Read until the reply is complete, the stream ends, the output passes `stop_bytes`, or the deadline.
        True when nothing more will come (done or eof). ChannelClosed if the command never started (the driver
        or its shell ended first), so it can safely be sent again to a new one."""
        self._pump(reply, deadline, until=lambda: reply.done, stop_bytes=stop_bytes)
        if reply.exited or reply.eof:
            self.alive = False  # the driver ends with its shell
        if (reply.eof or reply.done) and not reply.begun:
            raise ChannelClosed("the sandbox shell ended before the command started")
        return reply.done or reply.eof

    def _pump(self, reply: Reply, deadline: float, *, until: Callable[[], bool], stop_bytes: int | None = None) -> None:
        self._take(reply)  # what came in with the end of the previous reply
        while not until():
            link = self._link
            if link is None or link.eof:
                reply.eof = True
                self.alive = False
                return
            if stop_bytes is not None and reply.output_bytes > stop_bytes:
                reply.flooded = True
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            for kind, payload in link.frames(remaining):
                if kind == 1:
                    self._buf += payload
                    self._take(reply)
                elif kind == 2:  # the driver's own stderr
                    self.errors.add(payload)
                elif kind == 3:  # the engine's own error about this exec
                    self.engine_error += payload.decode("utf-8", errors="replace")

    def _take(self, reply: Reply) -> None:
        """Hand the complete frames in the buffer to `reply`."""
        buf = self._buf
        offset = 0
        while len(buf) - offset >= _FRAME.size and not reply.done:  # what follows D is the next command's
            kind, size = _FRAME.unpack_from(buf, offset)
            if size > _FRAME_LIMIT:
                self.close()
                return
            start = offset + _FRAME.size
            if len(buf) - start < size:
                break
            payload = bytes(buf[start : start + size])
            offset = start + size
            if kind == b"O":
                reply.stdout.add(payload)
            elif kind == b"E":
                reply.stderr.add(payload)
            elif kind == b"B":
                reply.begun = True
            elif kind == b"D":
                self._done(reply, json.loads(payload))
            elif kind == b"H":
                self._hello = json.loads(payload)
        del buf[:offset]

    @staticmethod
    def _done(reply: Reply, done: dict[str, Any]) -> None:
        reply.done = True
        reply.exit_code = int(done["rc"])
        reply.started, reply.ended = float(done["t0"]), float(done["t1"])
        reply.cwd = done.get("cwd") or None
        reply.exited = bool(done.get("exited"))
        reply.timed_out = bool(done.get("timed_out"))
        reply.note = str(done.get("note") or "")
        if not done.get("started", True):
            reply.begun = False

    def close(self) -> None:
        self.alive = False
        if self._link is not None:
            self._link.close()
