"""A long-lived bash inside the container, driven over one `docker exec` socket.

Starting a process with `docker exec` costs ~35 ms here; writing a line to a shell that is already running costs
well under a millisecond. So every command goes through a driver shell (DRIVER below) started once per sandbox:
- session mode: the driver `eval`s each command itself, so cwd, variables and functions persist;
- fresh mode: the driver runs each command as `timeout -k K T bash -c CMD`, a new shell each time (stateless
  exec), with GNU timeout stopping the command's whole process group inside the container.

Protocol, per command: the host writes `START MARKER T K\\n`, the command and a NUL byte. The driver echoes
START on stdout and stderr, runs the command with stdin from /dev/null, then prints `MARKER RC T0 T1 FLAG CWD` on
stdout and `MARKER` on stderr.
Whatever arrives before START is dropped (a background job of an earlier command still printing), and an EOF
before START means the command never ran. START and MARKER are 128 random bits each, fresh for every command
and never written where the command can read them, so output that imitates a marker is just output.

Output is counted and cut on the host (head and tail kept per stream), so nothing in the container forks per
command. The channel never blocks past the deadline it is given; what to do then (kill processes, restart the
shell) is the sandbox's decision.
"""

from __future__ import annotations

import contextlib
import secrets
import select
import socket
import struct
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from ise.sandbox.base import SandboxError

Mode = Literal["session", "fresh"]

_DRIVER_LINES = (
    "__ise_mode=$1 __ise_merge=$2 __ise_m= __ise_t= ;",
    "[[ $__ise_merge == 1 ]] && exec 2>&1 ;",
    "__ise_done() {",
    '  builtin printf \'%s %s %s %s %s %s\\n\' "$__ise_m" "$1" "$__ise_t" "$EPOCHREALTIME" "$2" "$PWD" ;',
    "  [[ $__ise_merge == 1 ]] || builtin printf '%s\\n' \"$__ise_m\" >&2 ;",
    "  __ise_m= ;",
    "} ;",
    "trap '__ise_rc=$?; [[ -n $__ise_m ]] && __ise_done \"$__ise_rc\" exit' EXIT ;",
    "builtin printf 'ISE-READY %s\\n' \"$$\" ;",
    "[[ $__ise_merge == 1 ]] || builtin printf 'ISE-READY %s\\n' \"$$\" >&2 ;",
    "while : ; do",
    "  while IFS=' ' builtin read -r __ise_a __ise_m __ise_to __ise_k",
    "    && IFS= builtin read -r -d '' __ise_c ; do",
    "    builtin printf '%s\\n' \"$__ise_a\" ;",
    "    [[ $__ise_merge == 1 ]] || builtin printf '%s\\n' \"$__ise_a\" >&2 ;",
    "    __ise_t=$EPOCHREALTIME ;",
    '    if [[ $__ise_mode == session ]] ; then builtin eval "$__ise_c" </dev/null ;',
    '    else timeout -k "$__ise_k" "$__ise_to" bash -c "$__ise_c" </dev/null ;',
    "    fi ;",
    "    __ise_done $? - ;",
    "  done ;",
    "  [[ -n $__ise_m ]] || exit 0 ;",
    "  __ise_done $? - ;",
    "done",
)
DRIVER = " ".join(line.strip() for line in _DRIVER_LINES)
"""The driver shell, on one line so that errors in eval'd commands read `bash: line 1: ...` as in `bash -c`.
The EXIT trap reports a command that exits the session shell (flag `exit`, and the host restarts the shell); the
outer loop reports one that breaks out of the read loop (`break 2`)."""


class ChannelClosed(SandboxError):
    """The driver shell is gone (it exited, or was killed); the container may still be fine."""


_HEADER = struct.Struct(">BxxxL")
_CHUNK = 65536


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


class _Stream:
    """One stream of one command: drops everything up to the start token, then hands everything up to the end
    marker to a Capture and keeps the rest of the marker's line."""

    def __init__(self, capture: Capture, marker: bytes, start: bytes | None = None) -> None:
        self.capture = capture
        self.marker = marker
        self.start = start
        """Still to be seen before the command's output begins (None once seen)."""
        self.pending = b""
        self.found = False
        self.line: bytes | None = None
        """What followed the marker up to the newline, once complete."""
        self._after = b""

    @property
    def started(self) -> bool:
        return self.start is None

    def feed(self, data: bytes) -> None:
        if self.line is not None:
            return
        if self.start is not None:
            buf = self.pending + data
            at = buf.find(self.start)
            if at < 0:
                self.pending = buf[-len(self.start) :]
                return
            data, self.start, self.pending = buf[at + len(self.start) :], None, b""
        if self.found:
            self._take_line(data)
            return
        buf = self.pending + data
        at = buf.find(self.marker)
        if at >= 0:
            self.capture.add(buf[:at])
            self.found, self.pending = True, b""
            self._take_line(buf[at + len(self.marker) :])
            return
        keep = len(self.marker) - 1  # a marker may be split across chunks: hold back what could start one
        self.capture.add(buf[:-keep])
        self.pending = buf[-keep:]

    def _take_line(self, data: bytes) -> None:
        self._after += data
        end = self._after.find(b"\n")
        if end >= 0:
            self.line = self._after[:end]

    def flush(self) -> None:
        """The stream ended without a marker: what was held back is output too."""
        if self.started:
            self.capture.add(self.pending)
        self.pending = b""

    def skip(self) -> None:
        """This stream carries no marker (stderr merged into stdout)."""
        self.start, self.found, self.line = None, True, b""


@dataclass
class Reply:
    """What came back for one command (complete when `done`)."""

    stdout: Capture
    stderr: Capture
    streams: list[_Stream] = field(default_factory=list)
    exit_code: int | None = None
    started: float | None = None
    """In-container clock (EPOCHREALTIME) when the command started and ended."""
    ended: float | None = None
    cwd: str | None = None
    done: bool = False
    eof: bool = False
    """The driver shell's stream closed (it exited or was killed) before the end marker."""
    exited: bool = False
    """The command made the driver shell exit (its end marker came from the EXIT trap)."""
    flooded: bool = False
    """The command wrote more than the stop limit."""

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
    """One driver shell in one container, used by one caller at a time."""

    def __init__(self, api: Any, container_id: str, *, user: str, mode: Mode, merge: bool, workdir: str) -> None:
        self.api = api
        self.container_id = container_id
        self.user = user
        self.mode = mode
        self.merge = merge
        self.workdir = workdir
        self.exec_id = ""
        self.pid = 0
        """The driver shell's pid inside the container."""
        self.alive = False
        self._link: ExecSocket | None = None
        self.engine_error = ""
        """What the engine reported on its error stream for this exec, if anything."""

    def start(self, timeout_s: float = 30.0) -> None:
        command = ["bash", "--noprofile", "--norc", "-c", DRIVER, "bash", self.mode, "1" if self.merge else "0"]
        self._link = ExecSocket(self.api, self.container_id, command, user=self.user, workdir=self.workdir)
        self.exec_id = self._link.exec_id
        hello = self._reply(b"ISE-READY ", None, limit=4096)
        self._pump(hello, time.monotonic() + timeout_s)
        line = hello.streams[0].line
        if line is None or not line.strip().isdigit():
            self.close()
            got = (self.engine_error or hello.stdout.text() or hello.stderr.text()).strip()[:200]
            raise SandboxError(f"the sandbox shell did not start (got {got!r})")
        self.pid = int(line)
        self.alive = True

    def send(self, command: str, *, timeout_s: float, kill_grace_s: float, limit: int) -> Reply:
        """Start a command; collect its reply with `wait`. ChannelClosed if the shell is known to be gone."""
        if self._link is None or not self.alive:
            raise ChannelClosed("the sandbox shell ended")
        start, marker = secrets.token_hex(16).encode(), secrets.token_hex(16).encode()
        header = b"%s %s %.3f %.3f\n" % (start, marker, timeout_s, kill_grace_s)
        # A NUL ends the command on the wire; bash could not hold one in a string anyway.
        body = command.replace("\0", "").encode("utf-8", errors="replace")
        try:
            self._link.send(header + body + b"\0")
        except OSError as exc:
            self.alive = False
            raise ChannelClosed(f"lost the sandbox shell: {exc}") from None
        return self._reply(marker, start + b"\n", limit=limit)

    def _reply(self, marker: bytes, start: bytes | None, *, limit: int) -> Reply:
        reply = Reply(Capture(limit), Capture(limit))
        reply.streams = [_Stream(reply.stdout, marker, start), _Stream(reply.stderr, marker, start)]
        if self.merge:
            reply.streams[1].skip()
        return reply

    def wait(self, reply: Reply, deadline: float, *, stop_bytes: int | None = None) -> bool:
        """Read until the reply is complete, the stream ends, the output passes `stop_bytes`, or the deadline.
        True when nothing more will come (done or eof). ChannelClosed if the shell ended before the command
        started (so it can safely be sent again to a new shell)."""
        self._pump(reply, deadline, stop_bytes=stop_bytes)
        out = reply.streams[0]
        if out.line is not None and not reply.done:
            reply.done = True
            self._parse(reply, out.line)
        if reply.eof and not reply.done:
            if not out.started:
                raise ChannelClosed("the sandbox shell ended before the command started")
            for stream in reply.streams:
                stream.flush()
        return reply.done or reply.eof

    def _pump(self, reply: Reply, deadline: float, *, stop_bytes: int | None = None) -> None:
        while not all(s.line is not None for s in reply.streams):
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
                if kind in (1, 2):
                    reply.streams[kind - 1].feed(payload)
                elif kind == 3:  # the engine's own error about this exec
                    self.engine_error += payload.decode("utf-8", errors="replace")

    @staticmethod
    def _parse(reply: Reply, line: bytes) -> None:
        parts = line.decode("utf-8", errors="replace").lstrip(" ").split(" ", 4)
        with contextlib.suppress(ValueError, IndexError):
            reply.exit_code = int(parts[0])
            reply.started = float(parts[1]) if parts[1] else None
            reply.ended = float(parts[2])
            reply.exited = parts[3] == "exit"
            reply.cwd = parts[4] if len(parts) > 4 else None

    def close(self) -> None:
        self.alive = False
        if self._link is not None:
            self._link.close()
