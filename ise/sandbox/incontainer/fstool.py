"""File tools, run inside the sandbox as the agent user: read, write, edit (exact replacement), list.

Request: {"op": "fstool", "tool", "path", "roots", "content"?, "old"?, "new"?, "read_limit"?}. Reply: {"ok": ...} or
{"refused": "..."} for anything the model asked that cannot be done (its own mistake, shown to it).

Paths are walked one component at a time with O_NOFOLLOW, each step relative to a directory fd held open, so a
symlink swapped in mid-way cannot lead outside the allowed roots: every symlink met is resolved logically and the
resulting path is checked against the roots again before the walk restarts from there.
"""

from __future__ import annotations

import errno
import os
import stat
from typing import Any

MAX_HOPS = 40
MAX_LIST = 10_000
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW


class Refused(Exception):
    pass


class Redirect(Exception):
    """A symlink was met: continue from this logical path."""

    def __init__(self, parts: list[str]) -> None:
        self.parts = parts


def logical(path: str, base: str) -> list[str]:
    """Components of `path` (relative ones taken from `base`), with `.` and `..` applied."""
    full = path if path.startswith("/") else f"{base}/{path}"
    parts: list[str] = []
    for part in full.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts:
                parts.pop()
            continue
        parts.append(part)
    return parts


def root_of(parts: list[str], roots: list[str], shown: str) -> list[str]:
    for root in roots:
        root_parts = logical(root, "/")
        if parts[: len(root_parts)] == root_parts:
            return root_parts
    raise Refused(f"{shown}: outside the allowed directories ({', '.join(roots)})")


def symlink_at(name: str, dir_fd: int) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def redirect(name: str, dir_fd: int, parent: list[str], rest: list[str]) -> Redirect:
    target = os.readlink(name, dir_fd=dir_fd)
    return Redirect(logical(target, "/" + "/".join(parent)) + rest)


def walk(parts: list[str], roots: list[str], shown: str, *, create: bool) -> tuple[int, str | None, list[str]]:
    """Open the parent directory of `parts` (fd, last name, parent parts); (root fd, None, root) for a root."""
    root = root_of(parts, roots, shown)
    fd = os.open("/" + "/".join(root), os.O_RDONLY | os.O_DIRECTORY)
    rest = parts[len(root) :]
    if not rest:
        return fd, None, root
    here = list(root)
    try:
        for index, name in enumerate(rest[:-1]):
            try:
                child = os.open(name, DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                os.mkdir(name, 0o755, dir_fd=fd)
                child = os.open(name, DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR) and symlink_at(name, fd):
                    raise redirect(name, fd, here, rest[index + 1 :]) from None
                raise
            os.close(fd)
            fd = child
            here.append(name)
    except BaseException:
        os.close(fd)
        raise
    return fd, rest[-1], here


def resolve(request: dict[str, Any], opener: Any, *, create: bool = False) -> Any:
    """Walk to the path and call opener(dir_fd, name, parts); follow symlinks that stay inside the roots."""
    shown, roots = request["path"], request["roots"]
    if not shown:
        raise Refused("empty path")
    path, home = shown, os.environ.get("HOME", "")
    if home and (path == "~" or path.startswith("~/")):
        path = home + path[1:]
    parts = logical(path, roots[0])
    for _ in range(MAX_HOPS):
        try:
            fd, name, parent = walk(parts, roots, shown, create=create)
            try:
                return opener(fd, name, parent)
            except OSError as exc:
                # A symlink opened with O_NOFOLLOW: ELOOP, or ENOTDIR when a directory was asked for (list_dir).
                if name is not None and exc.errno in (errno.ELOOP, errno.ENOTDIR) and symlink_at(name, fd):
                    raise redirect(name, fd, parent, []) from None
                raise
            finally:
                os.close(fd)
        except Redirect as hop:
            parts = hop.parts
    raise Refused(f"{shown}: too many levels of symbolic links")


def open_regular(dir_fd: int, name: str | None, flags: int, shown: str, mode: int = 0o644) -> int:
    if name is None:
        raise Refused(f"{shown}: is a directory")
    fd = os.open(name, flags | os.O_NOFOLLOW | os.O_NONBLOCK, mode, dir_fd=dir_fd)
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise Refused(f"{shown}: {'is a directory' if stat.S_ISDIR(info.st_mode) else 'not a regular file'}")
    return fd


def read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


def as_text(data: bytes, shown: str) -> str:
    try:
        if b"\0" in data:
            raise UnicodeDecodeError("utf-8", data, 0, 1, "NUL byte")
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise Refused(f"{shown}: binary file ({len(data)} bytes), not shown; inspect it with a command") from None


def do_read(request: dict[str, Any]) -> str:
    shown, limit = request["path"], request["read_limit"]

    def opener(dir_fd: int, name: str | None, _: list[str]) -> str:
        fd = open_regular(dir_fd, name, os.O_RDONLY, shown)
        try:
            size = os.fstat(fd).st_size
            if size > limit:
                raise Refused(f"{shown}: {size} bytes, over the read limit of {limit}; read parts with a command")
            return as_text(read_all(fd), shown)
        finally:
            os.close(fd)

    return str(resolve(request, opener))


def write_bytes(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def do_write(request: dict[str, Any]) -> int:
    shown, data = request["path"], request["content"].encode("utf-8")

    def opener(dir_fd: int, name: str | None, _: list[str]) -> int:
        fd = open_regular(dir_fd, name, os.O_WRONLY | os.O_CREAT, shown)
        try:
            os.ftruncate(fd, 0)
            write_bytes(fd, data)
        finally:
            os.close(fd)
        return len(data)

    return int(resolve(request, opener, create=True))


def do_edit(request: dict[str, Any]) -> int:
    shown, old, new = request["path"], request["old"], request["new"]
    if not old:
        raise Refused("the text to replace is empty")

    def opener(dir_fd: int, name: str | None, _: list[str]) -> int:
        fd = open_regular(dir_fd, name, os.O_RDWR, shown)
        try:
            text = as_text(read_all(fd), shown)
            count = text.count(old)
            if count != 1:
                found = "not found" if count == 0 else f"found {count} times (add context to make it unique)"
                raise Refused(f"{shown}: the text to replace was {found}")
            data = text.replace(old, new, 1).encode("utf-8")
            os.lseek(fd, 0, os.SEEK_SET)
            os.ftruncate(fd, 0)
            write_bytes(fd, data)
            return len(data)
        finally:
            os.close(fd)

    return int(resolve(request, opener))


def entry(name: str, dir_fd: int, path: str) -> dict[str, Any]:
    info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    kinds = {stat.S_IFREG: "file", stat.S_IFDIR: "dir", stat.S_IFLNK: "symlink"}
    kind = kinds.get(stat.S_IFMT(info.st_mode), "other")
    mode = f"{stat.S_IMODE(info.st_mode):04o}"
    item: dict[str, Any] = {"path": path, "kind": kind, "size": info.st_size, "mode": mode}
    if kind == "symlink":
        item["target"] = os.readlink(name, dir_fd=dir_fd)
    return item


def do_list(request: dict[str, Any]) -> list[dict[str, Any]]:
    def opener(dir_fd: int, name: str | None, parent: list[str]) -> list[dict[str, Any]]:
        fd = os.dup(dir_fd) if name is None else os.open(name, DIR_FLAGS, dir_fd=dir_fd)
        base = "/" + "/".join(parent if name is None else [*parent, name])
        try:
            names = sorted(os.listdir(fd))[:MAX_LIST]  # noqa: PTH208 (listing by fd: no path to swap)
            return [entry(n, fd, f"{base.rstrip('/')}/{n}") for n in names]
        finally:
            os.close(fd)

    result: list[dict[str, Any]] = resolve(request, opener)
    return result


def handle(request: dict[str, Any]) -> dict[str, Any]:
    """One file-tool request: {"ok": result}, or {"refused": why} for what the model asked that cannot be done."""
    try:
        return {"ok": TOOLS[request["tool"]](request)}
    except Refused as exc:
        return {"refused": str(exc)}
    except OSError as exc:
        return {"refused": f"{request['path']}: {exc.strerror or exc}"}


TOOLS = {"read": do_read, "write": do_write, "edit": do_edit, "list": do_list}
OPS = {"fstool": handle}
