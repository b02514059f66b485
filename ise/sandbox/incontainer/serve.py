"""The helper's request loop: one long-lived process per sandbox and user, so that a file tool, a snapshot or a
seeding costs a function call instead of a Python start-up (~25 ms of CPU each, which capped throughput).

Wire format, both ways: a 4-byte big-endian length, then that many bytes of JSON. The helper first says
{"ready": pid}. For each request it then writes an empty message ("begun": from here on the request may have taken
effect, so the host must not simply send it again to a new helper) and then the reply: the op's own answer, or
{"error": "..."} when the op failed unexpectedly or ran past the request's "timeout_s" (a timer interrupts it).
EOF on stdin ends the helper.
"""

from __future__ import annotations

import json
import os
import signal
import struct
from collections.abc import Callable
from typing import Any

LENGTH = struct.Struct(">L")
Op = Callable[[dict[str, Any]], dict[str, Any]]


class TimedOut(Exception):
    pass


class Deadline:
    """A per-request timer that interrupts the op in progress (and only an op in progress)."""

    def __init__(self) -> None:
        self.armed = False
        signal.signal(signal.SIGALRM, self.expired)

    def expired(self, *_: object) -> None:
        if self.armed:
            self.armed = False
            raise TimedOut

    def run(self, op: Op, request: dict[str, Any], seconds: float) -> dict[str, Any]:
        self.armed = True
        signal.setitimer(signal.ITIMER_REAL, seconds)
        try:
            return op(request)
        finally:
            self.armed = False
            signal.setitimer(signal.ITIMER_REAL, 0)


def read_exact(size: int) -> bytes | None:
    """Exactly `size` bytes of stdin, or None at EOF."""
    data = b""
    while len(data) < size:
        chunk = os.read(0, size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def send(message: dict[str, Any] | None) -> None:
    # File names need not be UTF-8: what cannot be encoded becomes U+FFFD rather than an unreadable reply.
    body = b"" if message is None else json.dumps(message, ensure_ascii=False).encode("utf-8", "replace")
    view = memoryview(LENGTH.pack(len(body)) + body)
    while view:
        view = view[os.write(1, view) :]


def answer(ops: dict[str, Op], deadline: Deadline, body: bytes) -> dict[str, Any]:
    try:
        request = json.loads(body)
        op, seconds = ops[request["op"]], float(request.get("timeout_s", 60.0))
    except Exception as exc:
        return {"error": f"bad request: {type(exc).__name__}: {exc}"}
    try:
        return deadline.run(op, request, seconds)
    except TimedOut:
        return {"error": f"timed out after {seconds:g} s"}
    except Exception as exc:  # a bug or an unforeseen state: reported, and the helper keeps serving
        return {"error": f"{type(exc).__name__}: {exc}"}


def serve(ops: dict[str, Op]) -> None:
    deadline = Deadline()
    send({"ready": os.getpid()})
    while (head := read_exact(LENGTH.size)) is not None:
        body = read_exact(LENGTH.unpack(head)[0])
        if body is None:
            return
        send(None)
        try:
            reply = answer(ops, deadline, body)
        except TimedOut:  # the timer fired just as the op returned
            reply = {"error": "timed out"}
        send(reply)


def main(_config: dict[str, Any], ops: dict[str, Op]) -> None:
    serve(ops)
