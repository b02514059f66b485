"""File tools, snapshots and fixture seeding in a Docker sandbox: requests to the long-lived helper process each user
has in the container (ise/sandbox/helper.py, ise/sandbox/incontainer/): the agent user's for file tools, so the
kernel's permissions apply as well, and root's for snapshots and seeding."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

from ise.sandbox.base import FileEntry, FileToolError, SandboxError, User
from ise.sandbox.config import SandboxConfig
from ise.sandbox.docker_container import HOST_MARGIN_S, DockerContainer
from ise.sandbox.helper import Helper, HelperGone, HelperStuck

HELPER_TIMEOUT_S = 60.0
"""Deadline of one helper request inside the container; the host waits HOST_MARGIN_S longer."""


class DockerFileTools(DockerContainer):
    """The helper layer of DockerSandbox: one helper per user, started on first use and replaced when it dies."""

    def __init__(self, config: SandboxConfig, *, run_id: str) -> None:
        super().__init__(config, run_id=run_id)
        self._helper_locks = {"agent": threading.Lock(), "root": threading.Lock()}

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
