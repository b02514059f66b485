"""The host's end of an in-container helper (ise/sandbox/incontainer/serve.py has the wire format).

One helper process per sandbox and user (agent for file tools, root for snapshots and seeding), started on first
use and kept for the sandbox's life over one `docker exec` socket: a request costs a few hundred microseconds
instead of a Python start-up. The host trusts nothing it reads: a reply longer than the caller's limit, or one that
does not come by the deadline, ends that helper, and the next request starts a new one.
"""

from __future__ import annotations

import contextlib
import json
import struct
import time
from typing import Any

from ise.sandbox.base import SandboxError
from ise.sandbox.channel import Capture, ExecSocket
from ise.sandbox.incontainer import COMMAND, HELPER_MODULES, bundle

_LENGTH = struct.Struct(">L")


class HelperGone(SandboxError):
    """The helper's stream ended before it answered."""

    def __init__(self, message: str, *, begun: bool) -> None:
        super().__init__(message)
        self.begun = begun
        """The helper had started on the request (it may have taken effect), so it must not simply be resent."""


class HelperStuck(SandboxError):
    """No answer by the deadline, or an answer over the size limit: the helper must be stopped."""


class Helper:
    """One helper process in one container, used by one caller at a time."""

    def __init__(self, api: Any, container_id: str, *, user: str, workdir: str) -> None:
        self.api = api
        self.container_id = container_id
        self.user = user
        self.workdir = workdir
        self.pid = 0
        """The helper's pid inside the container."""
        self._link: ExecSocket | None = None
        self._out = bytearray()
        self.errors = Capture(4096)
        """What the helper wrote on stderr (a crash's traceback)."""

    @property
    def alive(self) -> bool:
        """False once its stream has been seen to end; `poll` looks without waiting."""
        return self._link is not None and not self._link.eof

    def poll(self) -> bool:
        """Alive, after reading whatever is pending (an idle helper writes nothing, so that is only ever an EOF:
        killed between requests, it is then replaced before a request is sent to it)."""
        if self._link is not None and not self._link.eof:
            for kind, payload in self._link.frames(0):
                self._take(kind, payload)
        return self.alive

    def start(self, timeout_s: float = 30.0) -> None:
        """Start the process and wait for its hello; SandboxError if it does not come."""
        self._link = ExecSocket(self.api, self.container_id, COMMAND, user=self.user, workdir=self.workdir)
        try:
            self._link.send(bundle("serve", HELPER_MODULES))
            hello = self._message(time.monotonic() + timeout_s, limit=4096)
        except (OSError, HelperGone, HelperStuck):
            hello = None
        ready = hello.get("ready") if isinstance(hello, dict) else None
        if not isinstance(ready, int):
            self.close()
            raise SandboxError(f"the sandbox helper did not start (got {self.errors.text().strip()[-200:]!r})")
        self.pid = ready

    def call(self, request: dict[str, Any], *, deadline: float, limit: int) -> dict[str, Any]:
        """Send one request and return its answer. HelperGone if the helper ended first, HelperStuck if the answer
        is late or too long (the caller then stops this helper)."""
        if self._link is None or not self.alive:
            raise HelperGone("the sandbox helper ended", begun=False)
        body = json.dumps(request).encode()
        try:
            self._link.send(_LENGTH.pack(len(body)) + body)
        except OSError:
            raise HelperGone("lost the sandbox helper", begun=False) from None
        self._message(deadline, limit=0, begun=False)  # the empty "begun" message
        answer = self._message(deadline, limit=limit)
        if not isinstance(answer, dict):
            raise HelperStuck(f"the sandbox helper answered {str(answer)[:100]!r}")
        return answer

    def _message(self, deadline: float, *, limit: int, begun: bool = True) -> Any:
        """The next length-prefixed message (JSON decoded; None when empty)."""
        while True:
            if len(self._out) >= _LENGTH.size:
                size = _LENGTH.unpack_from(self._out)[0]
                if size > limit:
                    raise HelperStuck(f"the sandbox helper's answer has {size} bytes, over the limit of {limit}")
                if len(self._out) >= _LENGTH.size + size:
                    body = bytes(self._out[_LENGTH.size : _LENGTH.size + size])
                    del self._out[: _LENGTH.size + size]
                    return self._decode(body)
            self._read(deadline, begun=begun)

    def _read(self, deadline: float, *, begun: bool) -> None:
        link = self._link
        if link is None or link.eof:
            tail = self.errors.text().strip()[-300:]
            raise HelperGone(f"the sandbox helper ended{': ' + tail if tail else ''}", begun=begun)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise HelperStuck("the sandbox helper did not answer in time")
        for kind, payload in link.frames(remaining):
            self._take(kind, payload)

    def _take(self, kind: int, payload: bytes) -> None:
        if kind == 1:
            self._out += payload
        else:  # stderr, or the engine's own error about this exec
            self.errors.add(payload)

    @staticmethod
    def _decode(body: bytes) -> Any:
        if not body:
            return None
        try:
            return json.loads(body)
        except ValueError:
            raise HelperStuck(f"the sandbox helper gave no readable answer: {body[:200]!r}") from None

    def close(self) -> None:
        if self._link is not None:
            with contextlib.suppress(Exception):
                self._link.close()
