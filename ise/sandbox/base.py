"""The Sandbox seam: what every workspace backend offers, and the records it returns.

A command that fails is data (its exit code is in the ExecResult). A sandbox that breaks raises SandboxError:
an infrastructure failure, never shown to the model as its own mistake. A file tool refused or failed because
of what the model asked (missing file, path outside the allowed roots) raises FileToolError: the model's fault,
to be shown to it.

Contract every backend keeps (ise/sandbox/conformance.py checks it; tests/sandbox/ run it on the real backend):
- `exec` runs each command in a fresh `bash -c` in the workspace directory: no state carries over. `run` uses one
  persistent bash per sandbox: cwd, environment, shell variables and functions persist between calls.
- Commands get no stdin (EOF), so interactive programs cannot wait for input; every call returns within its
  timeout plus a few seconds, and a timed-out command is really stopped (with everything it started).
- stdout and stderr come back apart (or both in stdout when the config merges them), as valid UTF-8, each cut
  to the configured limit (head and tail kept); `output_bytes` counts everything the command wrote.
- `exit_code` is the command's: 124 (or 137 when it had to be killed) with `timed_out` set on a timeout,
  128+N for a command killed by signal N.
- File tools and `run`/`exec` with the default user act as the agent user: unprivileged in the `user` profile,
  root in the `admin` one (ise/sandbox/config.py). `user="root"` is for fixtures, perturbations and checks only.
- A failing fixture or setup script raises SetupScriptFailed (a SandboxError the plan caused, not the sandbox).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, Protocol

from ise.errors import IseError
from ise.records import DirFixture, FileFixture, Fixtures, Record

__all__ = [
    "DirFixture",
    "ExecResult",
    "FileChange",
    "FileEntry",
    "FileFixture",
    "FileToolError",
    "Fixtures",
    "Sandbox",
    "SandboxError",
    "SandboxInfo",
    "SetupScriptFailed",
    "diff_snapshots",
]

User = Literal["agent", "root"]
EntryKind = Literal["file", "dir", "symlink", "other"]


class SandboxError(IseError):
    """The sandbox itself failed (container died, engine unreachable, API error)."""


class SetupScriptFailed(SandboxError):
    """The plan's fixtures or setup script failed while the sandbox itself is fine: the plan's fault."""


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
    """Working directory after the command (session mode; the start directory for exec)."""
    session_reset: bool = False
    """The persistent shell had to be restarted (the command exited it or could not be stopped otherwise): its
    cwd, variables and functions are gone."""


class FileEntry(Record):
    path: str
    kind: EntryKind
    size: int
    mode: str
    """Octal permission bits, e.g. "0644"."""
    sha256: str | None = None
    """Content hash for regular files (None for dirs, links and files over the hashing cap)."""
    mtime_ns: int | None = None
    """Modification time; tells edits of files too big to hash apart."""
    target: str | None = None
    """Where a symlink points (not resolved)."""


class FileChange(Record):
    path: str
    change: Literal["created", "modified", "deleted"]
    size: int | None = None
    mode: str | None = None
    sha256: str | None = None
    kind: EntryKind | None = None


class SandboxInfo(Record):
    """Everything a trace needs to say where it ran: backend, exact image, and the effective settings."""

    backend: str
    image: str
    image_id: str
    """Content-addressed image id (sha256:...), the same on every machine that built the same image."""
    image_context_sha256: str | None = None
    """Hash of the build context the image was built from (ise's own images)."""
    engine: str | None = None
    settings: dict[str, Any]
    """The effective SandboxConfig, every hardening option and limit included."""


class Sandbox(Protocol):
    """One isolated OS workspace for one trajectory."""

    image_id: str

    @property
    def info(self) -> SandboxInfo:
        """Backend, image and effective settings, for the trace."""
        ...

    def exec(self, command: str, *, timeout_s: float | None = None, user: User = "agent") -> ExecResult:
        """Run a command in a fresh shell (no state carried between calls)."""
        ...

    def run(self, command: str, *, timeout_s: float | None = None) -> ExecResult:
        """Run a command in the persistent agent shell session (cwd, env, functions persist)."""
        ...

    def read_file(self, path: str) -> str:
        """A text file's content; FileToolError if missing, not text, too big, or outside the allowed roots."""
        ...

    def write_file(self, path: str, content: str) -> None:
        """Create or overwrite a file (parent directories are created); FileToolError if not allowed."""
        ...

    def edit_file(self, path: str, old: str, new: str) -> None:
        """Replace exactly one occurrence of `old`; FileToolError if it occurs zero or several times."""
        ...

    def list_dir(self, path: str) -> list[FileEntry]:
        """The entries of one directory (not recursive), sorted by name; paths are absolute."""
        ...

    def snapshot(self, roots: Sequence[str] | None = None) -> dict[str, FileEntry]:
        """Every entry under `roots` (None: the configured watch roots), cheap enough to take after every step.
        A root that does not exist is simply empty; one that is not a directory is reported as itself."""
        ...

    def seed(self, fixtures: Fixtures) -> None:
        """Apply fixtures, then run their setup script as root; SetupScriptFailed names the fixture that failed,
        or gives the script's exit and the first and last lines of its output."""
        ...

    def close(self) -> None: ...


def diff_snapshots(before: dict[str, FileEntry], after: dict[str, FileEntry]) -> list[FileChange]:
    """What changed between two snapshots, sorted by path. Content is compared by hash where both sides have one,
    else by size and modification time."""
    changes: list[FileChange] = []
    for path in sorted(before.keys() | after.keys()):
        old, new = before.get(path), after.get(path)
        if new is None:
            assert old is not None
            changes.append(FileChange(path=path, change="deleted", kind=old.kind))
        elif old is None or _differs(old, new):
            changes.append(
                FileChange(
                    path=path,
                    change="created" if old is None else "modified",
                    size=new.size,
                    mode=new.mode,
                    sha256=new.sha256,
                    kind=new.kind,
                )
            )
    return changes


def _differs(old: FileEntry, new: FileEntry) -> bool:
    if (old.kind, old.mode, old.size, old.target) != (new.kind, new.mode, new.size, new.target):
        return True
    if old.kind != "file":
        return False
    if old.sha256 is not None and new.sha256 is not None:
        return old.sha256 != new.sha256
    return old.mtime_ns != new.mtime_ns
