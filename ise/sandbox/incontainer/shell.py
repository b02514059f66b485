"""The driver of one of ise's shells, run inside the sandbox (ise/sandbox/channel.py is the host's end).

A parent process that owns every file descriptor the protocol uses; the commands it runs see none of them. Two modes:
- session: it starts the agent's persistent bash as its child (so `$PPID` is a real process) and hands it one
  command at a time: cwd, variables, functions, traps and options persist in that child, as in a terminal;
- fresh: it runs each command as a new `bash -c CMD` in a process group of its own and stops that group at the
  command's timeout (SIGTERM, SIGKILL after the grace period; exit 124, or 137 when killed, as GNU `timeout -k`).

Wire format. Host to driver: a 4-byte big-endian length, then JSON {"cmd", "timeout", "grace"}; EOF ends the driver.
Driver to host: frames of one kind byte, a 4-byte big-endian length and a payload: H (hello, JSON {"pid", "shell",
"tag"}), B (the command was handed over), O and E (the command's stdout and stderr), D (done, JSON {"rc", "t0", "t1",
"cwd", "exited", "started", "timed_out", "note"}). Output arriving while no command runs (an earlier command's
background job) is dropped. No stream carries markers, so nothing a command prints can end it or leak into another.

The session's child is `bash` reading its program from its stdin (a pipe from here): LOOP, one line, parsed before
any command of the agent's runs, so no alias defined later applies to it. Its fds: 0 the command pipe; 1 and 2
/dev/null, where whatever the shell writes between commands goes (xtrace and verbose output, DEBUG and ERR traps);
60 and 61 the commands' stdout and stderr pipes; 62 the status pipe. Each turn of the loop reports the previous
command's status and $PWD on fd 62 (`STATUS PWD` and a NUL; the first report says it is ready), reads the next
command (its length in 8 digits, then the command as a $'...' literal) and evaluates WRAP: the loop's variables
(random names) are unset, then the command is evaluated from that literal with stdin /dev/null, stdout and stderr
the pipes and 60-62 closed, so whatever it does to its fds is undone when it ends, and its line numbers and error
messages are those of `bash -c`.

Nothing the agent defines can take the loop over: special builtins are looked up with POSIXLY_CORRECT set (POSIX
mode finds them before functions; bash saves the options it changes and puts them back when POSIXLY_CORRECT goes,
except expand_aliases, put back by hand), which is how a function named `builtin` is removed; every other command
goes through `builtin`. A shell the agent ended or broke (exit, exec, kill, an open-files limit below what the loop
needs, the shell's own fds closed) is reported `exited`, with the status it really had, and the host starts a new
one. What cannot be helped: with extdebug, a DEBUG trap that fails skips every command, the loop's own too (the
call waits out its timeout), and `break`/`continue` act on the loop (they end the command, `break` the shell).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import resource
import select
import signal
import struct
import sys
import termios
import time

LENGTH = struct.Struct(">L")
FRAME = struct.Struct(">cL")
CHUNK = 65536
OUT, ERR, STATUS = 60, 61, 62
NOFILE_NEEDED = 64
"""A session shell whose open-files limit is below this cannot set up fds 60-62 and its saved copies any more."""
RESET_SIGNALS = (signal.SIGPIPE, signal.SIGXFSZ)
"""Ignored by Python, and an ignored signal stays ignored across exec: the commands get the defaults back."""

LOOP = (
    "for ((;;)); do @S=$?; "
    "[[ $SHELLOPTS == *posix* ]] && @P=@P || @P=POSIXLY_CORRECT; "
    "[[ $BASHOPTS == *expand_aliases* ]] && @A=s || @A=u; "
    'POSIXLY_CORRECT=y \\unset -f builtin; \\unset "$@P"; \\builtin shopt -"$@A" expand_aliases; '
    '\\builtin printf \'%s %s\\0\' "$@S" "${PWD-}" >&62 || POSIXLY_CORRECT=y \\exit "$@S"; '
    '\\builtin read -r -t 999999999 -N 8 @C && \\builtin read -r -N "$((10#$@C))" @C || POSIXLY_CORRECT=y \\exit 0; '
    '\\builtin eval "@W"; done; POSIXLY_CORRECT=y \\exit "$?"\n'
)
"""The session shell's program, one line (parsed whole before it runs); @X are its variables, renamed. @W stands
for WRAP, spelled out where the loop evaluates it."""
WRAP = "\\\\builtin unset -v @C @S @P @A; \\\\builtin eval $@C 0</dev/null 1>&60 2>&61 60>&- 61>&- 62>&-"
"""What the loop evaluates for one command (as a double-quoted word: @C is the command, a $'...' literal): the loop's
variables go, then the command is evaluated from that literal on this first line, so its line numbers and error
messages are those of `bash -c`. Only the literal travels. `read -N` reads it in blocks (the -t of the read that
waits for the length, there so that TMOUT cannot end the wait, would make it read a byte at a time)."""


def with_names(text: str, tag: str) -> str:
    """`text` with WRAP in place of @W and the loop's variables @X named _<tag><x> (random per shell: no name of the
    agent's clashes)."""
    text = text.replace("@W", WRAP)
    for name in "SPAC":
        text = text.replace(f"@{name}", f"_{tag}{name.lower()}")
    return text


def quoted(text: bytes) -> str:
    """`text` as one bash $'...' word (printable ASCII as it is, every other byte escaped)."""
    return "$'" + text.decode("latin-1").translate(ESCAPES) + "'"


ESCAPES = {b: f"\\x{b:02x}" for b in range(256) if not 32 <= b < 127 or chr(b) in "'\\"}


def send(kind: bytes, payload: bytes = b"") -> None:
    view = memoryview(FRAME.pack(kind, len(payload)) + payload)
    while view:
        view = view[os.write(1, view) :]


def send_json(kind: bytes, message: dict[str, object]) -> None:
    send(kind, json.dumps(message).encode())


def read_request() -> dict[str, object] | None:
    """The next request from the host, or None at EOF."""
    head = read_exact(0, LENGTH.size)
    body = None if head is None else read_exact(0, LENGTH.unpack(head)[0])
    if body is None:
        return None
    request: dict[str, object] = json.loads(body)
    return request


def read_exact(fd: int, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = os.read(fd, size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def waiting(fd: int) -> int:
    """Bytes waiting in a pipe."""
    count: int = struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]
    return count


def seconds(value: object) -> float:
    return float(value) if isinstance(value, int | float) else 0.0


def link(path: str) -> str:
    return os.readlink(path)  # noqa: PTH115 (str in, str out)


def status_code(status: int) -> int:
    return 128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


def nonblocking(fd: int) -> int:
    os.set_blocking(fd, False)
    return fd


class Driver:
    """What both modes share: the command's output pipes (one when stderr is merged), relayed while it runs."""

    def __init__(self, merge: bool) -> None:
        self.out_r, self.out_w = os.pipe()
        self.err_r, self.err_w = (self.out_r, self.out_w) if merge else os.pipe()
        self.streams = {nonblocking(self.out_r): b"O"} if merge else {self.out_r: b"O", nonblocking(self.err_r): b"E"}
        nonblocking(self.out_r)
        self.busy = False
        self.env = {k: v for k, v in os.environ.items() if k != "_"}  # bash's note of what it ran: not the agent's

    def pump(self, fd: int, size: int = CHUNK) -> bool:
        """Relay (or, between commands, drop) what waits on one output pipe; False once nothing can write to it."""
        try:
            data = os.read(fd, size)
        except BlockingIOError:
            return True
        if data and self.busy:
            send(self.streams[fd], data)
        return bool(data)

    def drain(self) -> None:
        """Relay what the command wrote before it ended (not what a background job goes on writing)."""
        for fd in self.streams:
            left = waiting(fd)
            while left > 0:
                chunk = min(left, CHUNK)
                self.pump(fd, chunk)
                left -= chunk

    def spawn(self, argv: list[str], fds: dict[int, int], *, group: bool = False) -> int:
        """Start `argv` with exactly the fds given (target: source), default signal dispositions and an empty mask."""
        high = {target: fcntl.fcntl(source, fcntl.F_DUPFD_CLOEXEC, 100) for target, source in fds.items()}
        try:
            actions = [(os.POSIX_SPAWN_DUP2, source, target) for target, source in high.items()]
            if group:
                return os.posix_spawnp(
                    argv[0], argv, self.env, file_actions=actions, setpgroup=0, setsigdef=RESET_SIGNALS, setsigmask=()
                )
            return os.posix_spawnp(
                argv[0], argv, self.env, file_actions=actions, setsigdef=RESET_SIGNALS, setsigmask=()
            )
        finally:
            for fd in high.values():
                os.close(fd)


class Session(Driver):
    def __init__(self, merge: bool) -> None:
        super().__init__(merge)
        self.cmd_r, self.cmd_w = os.pipe()  # cmd_r stays open here too: waiting() tells what the shell has read
        self.status_r, status_w = os.pipe()
        nonblocking(self.status_r)
        nonblocking(self.cmd_w)
        self.tag = tag = os.urandom(3).hex()  # (not `secrets`: 4 MB more of every driver)
        null = os.open(os.devnull, os.O_RDWR)
        fds = {0: self.cmd_r, 1: null, 2: null, OUT: self.out_w, ERR: self.err_w, STATUS: status_w}
        # What its fds must still be when it reports (fd 1 is the status pipe while it does).
        self.expected = {target: link(f"/proc/self/fd/{source}") for target, source in fds.items() if target != 1}
        self.pid = self.spawn(["bash"], fds)
        for fd in {null, status_w, self.out_w, self.err_w}:
            os.close(fd)
        self.pidfd = os.pidfd_open(self.pid)
        self.reports = b""
        self.sent = 0
        self.started = 0.0
        self.write(with_names(LOOP, tag).encode())

    def run(self) -> None:
        try:
            self.serve()
        finally:  # the host is gone, or this shell cannot go on: it ends with its driver
            with contextlib.suppress(OSError):
                signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)  # (a pidfd: never another process)

    def serve(self) -> None:
        poller = select.poll()
        for fd in (0, self.status_r, self.pidfd, *self.streams):
            poller.register(fd, select.POLLIN)
        ready = False
        while True:
            events = {fd for fd, _ in poller.poll()}
            for fd in events & self.streams.keys():
                if not self.pump(fd):  # (the shell lost its fds: its next report says so)
                    poller.unregister(fd)
            for report in self.read_reports():
                if not ready:
                    ready = True
                    send_json(b"H", {"pid": os.getpid(), "shell": self.pid, "tag": self.tag})
                elif not self.busy or self.reported(report):  # (unasked for: the shell left the protocol)
                    return
            if self.pidfd in events:
                self.ended()
                return
            if 0 in events:
                request = read_request()
                if request is None:
                    return
                self.start(str(request["cmd"]))

    def read_reports(self) -> list[bytes]:
        with contextlib.suppress(BlockingIOError):
            self.reports += os.read(self.status_r, CHUNK)
        *reports, self.reports = self.reports.split(b"\0")
        return reports

    def start(self, command: str) -> None:
        literal = quoted(command.replace("\0", "").encode("utf-8", "surrogateescape")).encode()
        text = b"%08d" % len(literal) + literal
        self.started, self.sent, self.busy = time.time(), len(text), True
        send(b"B")
        self.write(text)

    def write(self, data: bytes) -> None:
        """To the shell's stdin; a command longer than the pipe holds is written as the shell reads it (it reads
        all of it before it runs any), and one the shell will never read is given up."""
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self.cmd_w, view[:CHUNK]) :]
            except BlockingIOError:
                if self.pidfd in select.select([self.pidfd], [self.cmd_w], [])[0]:
                    return
            except OSError:
                return

    def reported(self, report: bytes) -> bool:
        """The command ended with this report; True when the shell cannot take another command."""
        code, _, cwd = report.decode("utf-8", "replace").partition(" ")
        problem = self.broken()
        self.finish(
            {
                "rc": int(code) if code.isdigit() else 1,
                "cwd": cwd or self.cwd(),
                "exited": bool(problem),
                "note": problem,
            }
        )
        return bool(problem)

    def broken(self) -> str:
        """Why the shell cannot take another command (its open-files limit or its fds were changed), or ''."""
        try:
            if resource.prlimit(self.pid, resource.RLIMIT_NOFILE)[0] < NOFILE_NEEDED:
                return "the shell's open-files limit is too low for it to go on"
            if any(link(f"/proc/{self.pid}/fd/{fd}") != target for fd, target in self.expected.items()):
                return "the shell lost its file descriptors"
        except OSError:
            return "the shell is gone"
        return ""

    def cwd(self) -> str | None:
        with contextlib.suppress(OSError):
            return link(f"/proc/{self.pid}/cwd").removesuffix(" (deleted)")
        return None

    def ended(self) -> None:
        """The shell ended (the command exited it, exec'd another program, or it was killed)."""
        code = status_code(os.waitpid(self.pid, 0)[1])
        if self.busy:
            self.finish({"rc": code, "exited": True, "started": waiting(self.cmd_r) < self.sent})

    def finish(self, done: dict[str, object]) -> None:
        self.drain()
        send_json(b"D", {"t0": self.started, "t1": time.time(), "started": True, "timed_out": False, **done})
        self.busy = False


class Fresh(Driver):
    def run(self) -> None:
        null = os.open(os.devnull, os.O_RDONLY)
        send_json(b"H", {"pid": os.getpid(), "shell": 0})
        while (request := read_request()) is not None:
            self.busy = True
            started = time.time()
            command = str(request["cmd"]).replace("\0", "")
            pid = self.spawn(["bash", "-c", command], {0: null, 1: self.out_w, 2: self.err_w}, group=True)
            send(b"B")
            timed_out, killed = self.wait(pid, seconds(request["timeout"]), seconds(request["grace"]))
            code = status_code(os.waitpid(pid, 0)[1])
            self.drain()
            if timed_out:
                code = 137 if killed else 124
            done = {"rc": code, "t0": started, "t1": time.time(), "cwd": None, "exited": False, "started": True}
            send_json(b"D", {**done, "timed_out": timed_out})
            self.busy = False

    def wait(self, pid: int, timeout: float, grace: float) -> tuple[bool, bool]:
        """Relay output until the command ends; at its timeout stop its process group. (timed out, killed)"""
        pidfd = os.pidfd_open(pid)
        deadline = time.monotonic() + timeout
        timed_out = killed = False
        try:
            while True:
                left = deadline - time.monotonic()
                ready = select.select([pidfd, *self.streams], [], [], max(0.0, left))[0]
                for fd in ready:
                    if fd != pidfd:
                        self.pump(fd)
                if pidfd in ready:
                    return timed_out, killed
                if left <= 0 and not killed:
                    killed, timed_out = timed_out, True
                    deadline = time.monotonic() + (grace if not killed else 3600.0)
                    with contextlib.suppress(OSError):
                        os.killpg(pid, signal.SIGKILL if killed else signal.SIGTERM)
        finally:
            os.close(pidfd)


def main(config: dict[str, object], _ops: object = None) -> None:
    driver = Session if config.get("mode") == "session" else Fresh
    driver(bool(config.get("merge"))).run()
    sys.exit(0)
