"""The Sandbox seam: what every workspace backend offers, and the records it returns.

A command that fails is data (its exit code is in the ExecResult). A sandbox that breaks raises SandboxError:
an infrastructure failure, never shown to the model as its own mistake.
"""

from __future__ import annotations

from typing import Literal, Protocol

from ise.errors import IseError
from ise.records import Fixtures, Record

__all__ = ["ExecResult", "FileChange", "FileEntry", "FileToolError", "Fixtures", "Sandbox", "SandboxError"]


class SandboxError(IseError):
    """The sandbox itself failed (container died, engine unreachable, API error)."""


class FileToolError(Exception):
    """A file tool refused or failed on the model's request (missing file, path escape): data, not infra."""


class ExecResult(Record):
    stdout: str
    stderr: str = ""
    exit_code: int
    duration_s: float
    timed_out: bool = False
    truncated: bool = False
    output_bytes: int = 0
    """Total bytes the command produced, before truncation."""
    cwd: str | None = None
    """Working directory after the command (session mode)."""


class FileEntry(Record):
    path: str
    kind: Literal["file", "dir", "symlink", "other"]
    size: int
    mode: str
    """Octal permission bits, e.g. "0644"."""
    sha256: str | None = None
    """Content hash for regular files (None for dirs, links and files over the hashing cap)."""


class FileChange(Record):
    path: str
    change: Literal["created", "modified", "deleted"]
    size: int | None = None
    mode: str | None = None
    sha256: str | None = None


class Sandbox(Protocol):
    """One isolated OS workspace for one trajectory."""

    image_id: str

    def exec(
        self, command: str, *, timeout_s: float | None = None, user: Literal["agent", "root"] = "agent"
    ) -> ExecResult:
        """Run a command in a fresh shell (no state carried between calls)."""
        ...

    def run(self, command: str, *, timeout_s: float | None = None) -> ExecResult:
        """Run a command in the persistent agent shell session (cwd, env, functions persist)."""
        ...

    def read_file(self, path: str) -> str: ...

    def write_file(self, path: str, content: str) -> None: ...

    def edit_file(self, path: str, old: str, new: str) -> None:
        """Replace exactly one occurrence of `old`; FileToolError if it occurs zero or several times."""
        ...

    def list_dir(self, path: str) -> list[FileEntry]: ...

    def snapshot(self) -> dict[str, FileEntry]:
        """State of the watched roots (workspace, agent home), cheap enough to take after every step."""
        ...

    def seed(self, fixtures: Fixtures) -> None:
        """Apply fixtures; raises SandboxError naming the fixture that failed."""
        ...

    def close(self) -> None: ...
