"""Where a command may write, and how: no output can land on an input, and no file is ever seen half-written.

Every whole-file output (the report, the viewer, intents.jsonl, stats files) is written to a temporary file in its
own folder, fsynced and renamed over the target, so a failure leaves the previous file or none. Appended outputs
(a stage's results and errors) are written a whole line at a time by ise.jsonl. The checks here run before any
work starts, so a bad -o costs nothing: each failure is one InputError naming the path and the cause.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO

from ise.errors import InputError

DATA_SUFFIXES = frozenset({".jsonl", ".json", ".parquet", ".yaml", ".yml"})
"""Names a run's data (or config) has: a page (report, viewer) is never written to one."""


def current_umask() -> int:
    """The process umask, read without changing it (os.umask would, for a moment, for every thread)."""
    with suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/self/status").read_text(encoding="ascii", errors="replace").splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file: one resolves to the other, or both are links to one inode."""
    try:
        if a.resolve() == b.resolve():
            return True
        return a.samefile(b)
    except (OSError, RuntimeError):
        return False


def within(path: Path, folder: Path) -> bool:
    """Whether `path` is `folder` or lies inside it (after resolving links)."""
    try:
        resolved, root = path.resolve(), folder.resolve()
    except (OSError, RuntimeError):
        return False
    return resolved == root or root in resolved.parents


def refuse_inputs(output: Path, inputs: Iterable[Path]) -> None:
    """One line, and nothing done, when `output` is one of the files the command reads."""
    for source in inputs:
        if same_file(output, source):
            detail = "" if output == source else f" (the same file as {source})"
            raise InputError(f"output {output} is an input of this command{detail}; writing it would destroy it")


def writable_folder(folder: Path, target: Path) -> None:
    """Prove that `folder` takes new files, or, while it does not exist yet, that it could be made: its nearest
    existing ancestor is a folder that takes new files. Nothing is created (a probe file is made and removed: as
    root, os.access says yes to read-only mounts and immutable folders alike)."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise InputError(f"cannot write {target}: {existing} is a file, not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".ise-probe-", dir=existing)
    except OSError as exc:
        raise InputError(f"cannot write {target}: {existing}: {exc.strerror}") from None
    os.close(fd)
    Path(probe).unlink()


def make_folder(folder: Path, target: Path) -> None:
    """Create the folder an output goes in (and its parents); one line naming the problem if that fails."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise InputError(f"cannot write {target}: {folder} or a parent is a file, not a folder") from None
    except OSError as exc:
        raise InputError(f"cannot write {target}: cannot create folder {folder}: {exc.strerror}") from None


def _not_a_file(path: Path) -> InputError | None:
    if not path.exists() or path.is_file():
        return None
    if path.is_dir():
        return InputError(f"output {path} is a directory; give a file path")
    return InputError(f"output {path} is not a regular file (a device, pipe or socket); give a file path")


def check_output_file(output: Path, *, inputs: Iterable[Path] = (), sidecars: Iterable[Path] = ()) -> None:
    """An output file (and the files written beside it) may be written: none is a folder or special file, none is
    an input, the folder takes new files, and an existing one can be opened for appending."""
    sources = list(inputs)
    paths = [output, *sidecars]
    for path in paths:
        if (problem := _not_a_file(path)) is not None:
            raise problem
        refuse_inputs(path, sources)
    writable_folder(output.parent, output)
    for path in paths:
        if path.exists():
            try:
                os.close(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_NONBLOCK))
            except OSError as exc:
                raise InputError(f"cannot write {path}: {exc.strerror}") from None


def check_page_output(output: Path, *, inputs: Iterable[Path] = ()) -> None:
    """An HTML page (report, viewer) may go to `output`: not a data file's name, not an input, not a folder, and
    not an existing file other than an HTML page (which it replaces)."""
    if output.suffix.lower() in DATA_SUFFIXES:
        raise InputError(
            f"refusing to write an HTML page to {output}: {output.suffix} is a data file's name; give an .html path"
        )
    if (problem := _not_a_file(output)) is not None:
        raise problem
    refuse_inputs(output, inputs)
    if output.exists() and not _is_html(output):
        raise InputError(f"{output} exists and is not an HTML page; refusing to replace it (give another -o)")
    writable_folder(output.parent, output)


def _is_html(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            head = handle.read(1024).lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    except OSError:
        return False
    return head.startswith((b"<!doctype html", b"<html")) or not head


def new_file_mode(replacing: Path | None = None) -> int:
    """The mode a new file gets from open(): 0666 less the umask; or the mode of the file it replaces."""
    if replacing is not None:
        with suppress(OSError):
            return stat.S_IMODE(replacing.stat().st_mode)
    return 0o666 & ~current_umask()


@contextmanager
def atomic_file(path: Path) -> Iterator[IO[bytes]]:
    """A binary handle whose content replaces `path` when the block ends without error: a temporary file in the
    same folder, fsynced, given the mode a plain write would give, renamed into place. On any error the temporary
    file is removed and `path` is as it was."""
    if (problem := _not_a_file(path)) is not None:
        raise problem
    make_folder(path.parent, path)
    try:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise InputError(f"cannot write {path}: {exc.strerror}") from None
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        tmp.chmod(new_file_mode(path if path.exists() else None))
        tmp.replace(path)
    except BaseException:
        with suppress(OSError):
            tmp.unlink()
        raise


def write_bytes_atomic(path: Path, data: bytes) -> None:
    with atomic_file(path) as handle:
        handle.write(data)


def write_text_atomic(path: Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))
