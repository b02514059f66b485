"""Fixture seeding, run inside the sandbox as root before the agent starts.

Request: {"op": "seed", "base", "dirs": [{path, mode, owner}], "files": [{path, content, encoding, mode, owner}]}.
Directories first, then files. Missing parent directories are created with the fixture's owner (so the agent can
write in the trees it is given). Reply: {"ok": n} or {"failed": "fixture PATH: reason"}.
"""

from __future__ import annotations

import base64
import os
import pwd
from pathlib import Path
from typing import Any


def ids(owner: str) -> tuple[int, int]:
    entry = pwd.getpwnam(owner)
    return entry.pw_uid, entry.pw_gid


def absolute(path: str, base: str) -> Path:
    return Path(os.path.normpath(Path(base) / path))  # an absolute `path` replaces `base`


def make_parents(path: Path, owner: tuple[int, int]) -> None:
    missing = [parent for parent in path.parents if not parent.is_dir()]
    for directory in reversed(missing):
        directory.mkdir(0o755)
        os.chown(directory, *owner)


def seed_dir(spec: dict[str, Any], base: str) -> None:
    path, owner = absolute(spec["path"], base), ids(spec["owner"])
    make_parents(path, owner)
    if not path.is_dir():
        path.mkdir()
    path.chmod(int(spec["mode"], 8))
    os.chown(path, *owner)


def seed_file(spec: dict[str, Any], base: str) -> None:
    path, owner = absolute(spec["path"], base), ids(spec["owner"])
    content = spec["content"]
    data = base64.b64decode(content, validate=True) if spec["encoding"] == "base64" else content.encode("utf-8")
    make_parents(path, owner)
    if path.is_symlink():
        path.unlink()
    path.write_bytes(data)
    path.chmod(int(spec["mode"], 8))
    os.chown(path, *owner)


def handle(request: dict[str, Any]) -> dict[str, Any]:
    done = 0
    for kind, seeder in (("dirs", seed_dir), ("files", seed_file)):
        for spec in request[kind]:
            try:
                seeder(spec, request["base"])
            except (OSError, ValueError, KeyError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
                return {"failed": f"fixture {spec['path']}: {reason}"}
            done += 1
    return {"ok": done}


OPS = {"seed": handle}
