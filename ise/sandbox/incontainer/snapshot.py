"""Workspace snapshot, run inside the sandbox as root: every entry under the watched roots.

Request: {"op": "snapshot", "roots", "hash_limit", "max_entries"}. Reply: {"entries": [[path, kind, size, mode,
sha256|null, mtime_ns, target|null], ...], "truncated": bool}. Symlinks are recorded, never followed; special files
are never opened (a FIFO would block), so a snapshot is one directory walk.

A root reports what is under it; a root that does not exist reports nothing, one that is not a directory (a file,
a symlink, even one to a directory) reports itself. Roots inside other roots are walked once. /proc, /sys and /dev
are never walked into (kernel views, not files: reading some of them blocks or costs seconds).

Hashing is most of a walk's cost, so the helper remembers each file's hash with its identity (device, inode, size,
mtime, ctime) and reads only files whose identity changed. ctime cannot be set back, so even an edit that keeps the
size and restores the mtime is seen. Files changed in the last second are always read (timestamps are coarse: a
second write in the same tick would keep them).
"""

from __future__ import annotations

import hashlib
import os
import stat
import time
from typing import Any

KINDS = {stat.S_IFREG: "file", stat.S_IFDIR: "dir", stat.S_IFLNK: "symlink"}
RACY_NS = 1_000_000_000
CACHE_MAX = 100_000
_hashes: dict[str, tuple[tuple[int, ...], str | None]] = {}
"""path -> (identity, sha256) of files hashed before, for the helper's life."""


def sha256(path: str) -> str | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return hashlib.file_digest(handle, "sha256").hexdigest()


def digest_of(path: str, info: os.stat_result, now_ns: int) -> str | None:
    identity = (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)
    known = _hashes.get(path)
    if known is not None and known[0] == identity:
        return known[1]
    digest = sha256(path)
    if now_ns - max(info.st_mtime_ns, info.st_ctime_ns) > RACY_NS:
        if len(_hashes) >= CACHE_MAX:
            _hashes.clear()
        _hashes[path] = (identity, digest)
    return digest


def describe(path: str, info: os.stat_result, hash_limit: int, now_ns: int) -> list[Any]:
    kind = KINDS.get(stat.S_IFMT(info.st_mode), "other")
    digest = digest_of(path, info, now_ns) if kind == "file" and info.st_size <= hash_limit else None
    target = os.readlink(path) if kind == "symlink" else None  # noqa: PTH115 (str in, str out)
    return [path, kind, info.st_size, f"{stat.S_IMODE(info.st_mode):04o}", digest, info.st_mtime_ns, target]


SKIPPED = ("/proc", "/sys", "/dev")


def distinct(roots: list[str]) -> list[str]:
    """Normalised roots, minus those inside another one."""
    normal = sorted({"/" + os.path.normpath(root).lstrip("/") for root in roots})
    return [root for root in normal if not any(inside(root, other) for other in normal if other != root)]


def inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def walk(roots: list[str], hash_limit: int, max_entries: int) -> tuple[list[list[Any]], bool]:
    entries: list[list[Any]] = []
    pending = []
    now_ns = time.time_ns()
    for root in distinct(roots):
        if any(inside(root, skipped) for skipped in SKIPPED):
            continue
        try:
            info = os.lstat(root)
        except OSError:
            continue
        if stat.S_ISDIR(info.st_mode):
            pending.append(root)
        elif len(entries) < max_entries:
            entries.append(describe(root, info, hash_limit, now_ns))
    while pending:
        directory = pending.pop()
        try:
            children = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError:
            continue
        for child in children:
            if len(entries) >= max_entries:
                return entries, True
            try:
                info = child.stat(follow_symlinks=False)
            except OSError:
                continue
            entries.append(describe(child.path, info, hash_limit, now_ns))
            if stat.S_ISDIR(info.st_mode) and child.path not in SKIPPED:
                pending.append(child.path)
    return entries, False


def handle(request: dict[str, Any]) -> dict[str, Any]:
    entries, truncated = walk(request["roots"], request["hash_limit"], request["max_entries"])
    return {"entries": entries, "truncated": truncated}


OPS = {"snapshot": handle}
