"""A Harbor task's environment/Dockerfile as plan fixtures: what its build leaves behind, recreated in ise's sandbox.

ise cannot build images per task (no registry, and plans are data), so a Dockerfile is importable only when it
starts FROM ise's own workspace image and every instruction can be replayed in a fresh sandbox:
- COPY / ADD of local files from environment/ -> FileFixtures (root-owned unless --chown says agent or 1000, mode
  from --chmod or the file's own), at the destination resolved against the WORKDIR of that point;
- RUN -> a block of the setup script (run as root), in the WORKDIR of that point, with the ENV and ARG values of
  that point in its environment, through the SHELL of that point (/bin/sh -c, as Docker);
- WORKDIR -> created (mkdir -p) before any RUN; the last one is the task's working directory;
- ENV -> exported to every later RUN, to the verifier and to the reference solution (the agent's shell is ise's and
  does not get them: see the report's limits); ARG -> a build variable for later RUNs and substitutions;
- USER root is what Harbor's agents are; any other user cannot be the agent here (unimportable);
- CMD, ENTRYPOINT, EXPOSE, LABEL, MAINTAINER, HEALTHCHECK, STOPSIGNAL, VOLUME, ONBUILD are ignored: Harbor starts
  the container with a command of its own that keeps it alive, so the image's start command and its metadata never
  run; a VOLUME only marks a mount point, and the container's own layer holds the path here.
Everything else (multi-stage builds, ADD from a URL or of an archive, COPY --from, RUN --mount, heredocs, a RUN
that needs the network) makes the task unimportable, with that reason.

Order: fixtures are seeded before the setup script, so a RUN sees every COPY's file, even one copied after it in
the Dockerfile. A RUN that writes a path a later COPY writes again would end differently; that is rare enough to
accept and is said here rather than hidden.
"""

from __future__ import annotations

import base64
import json
import posixpath
import re
import shlex
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ise.plan_static import needs_network
from ise.records import FileFixture

Owner = Literal["agent", "root"]
CARRY_LIMIT = 256 * 1024
"""Bytes of a task's environment files, tests or solution that a plan carries (each set on its own)."""
IGNORED = frozenset({"CMD", "ENTRYPOINT", "EXPOSE", "LABEL", "MAINTAINER", "HEALTHCHECK", "STOPSIGNAL", "VOLUME"})
IGNORED |= {"ONBUILD"}  # only runs when another image is built FROM this one
_ARCHIVE = re.compile(r"\.(?:tar|tgz|tbz2?|txz|tar\.(?:gz|bz2|xz|zst))$")
_VARIABLE = re.compile(r"\$(?:\{(\w+)(?::-([^}]*))?\}|(\w+))")
_HEREDOC = re.compile(r"<<-?\s*['\"]?\w+")
_STANDARD_DIRS = frozenset(
    {"/", "/workspace", "/tmp", "/root", "/home/agent", "/opt", "/srv", "/etc", "/usr/local/bin"}
)
"""Destinations that already are directories in ise's image, so `COPY file /opt` puts the file inside."""


class Untranslatable(Exception):
    """The Dockerfile cannot be replayed here; the message is the reason an Unimportable carries."""


@dataclass
class Environment:
    """What the build leaves: files, a setup script, the working directory and the runtime ENV."""

    files: list[FileFixture] = field(default_factory=list)
    setup_script: str | None = None
    workdir: str = "/workspace"
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class _Build:
    context: Path
    workdir: str = "/workspace"
    env: dict[str, str] = field(default_factory=dict)
    args: dict[str, str] = field(default_factory=dict)
    shell: list[str] = field(default_factory=lambda: ["/bin/sh", "-c"])
    files: dict[str, FileFixture] = field(default_factory=dict)
    workdirs: list[str] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)
    carried: int = 0
    seen_from: bool = False


def instructions(text: str) -> list[tuple[int, str, str]]:
    """(line number, INSTRUCTION, arguments) of a Dockerfile: comments dropped, continuation lines joined."""
    found: list[tuple[int, str, str]] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.rstrip()
        if line.lstrip().startswith("#") or (not line.strip() and not pending):
            continue
        if not pending:
            start = number
        if line.endswith("\\"):
            pending.append(line[:-1])
            continue
        pending.append(line)
        joined = " ".join(part.strip() for part in pending).strip()
        pending = []
        word, _, rest = joined.partition(" ")
        found.append((start, word.upper(), rest.strip()))
    if pending:
        raise Untranslatable(f"Dockerfile line {start}: the last instruction ends with a line continuation")
    return found


def translate(context: Path, images: set[str]) -> Environment:
    """The environment `context`/Dockerfile builds on top of one of `images` (ise's workspace image names)."""
    build = _Build(context=context)
    for number, word, args in instructions((context / "Dockerfile").read_text(encoding="utf-8", errors="replace")):
        try:
            _apply(build, word, args, images)
        except Untranslatable as exc:
            raise Untranslatable(f"Dockerfile line {number}: {exc}") from None
    if not build.seen_from:
        raise Untranslatable("the Dockerfile has no FROM")
    return Environment(
        files=list(build.files.values()),
        setup_script=_setup_script(build),
        workdir=build.workdir,
        env=dict(build.env),
    )


def _apply(build: _Build, word: str, args: str, images: set[str]) -> None:
    if _HEREDOC.search(args) and word in ("RUN", "COPY", "ADD"):
        raise Untranslatable(f"{word} with a heredoc is not translated")
    if word == "FROM":
        _from(build, args, images)
    elif word in ("COPY", "ADD"):
        _copy(build, word, _substitute(args, build))
    elif word == "RUN":
        _run(build, args)
    elif word == "WORKDIR":
        build.workdir = posixpath.normpath(posixpath.join(build.workdir, _substitute(_unquote(args), build)))
        build.workdirs.append(build.workdir)
    elif word in ("ENV", "ARG"):
        _variables(build, word, args)
    elif word == "USER":
        user = _substitute(args, build).split(":")[0]
        if user not in ("root", "0"):
            raise Untranslatable(f"USER {user}: the agent of an imported task is root (ise's admin profile)")
    elif word == "SHELL":
        build.shell = _json_list(args, word)
    elif word not in IGNORED:
        raise Untranslatable(f"{word} is not translated")


def _from(build: _Build, args: str, images: set[str]) -> None:
    if build.seen_from:
        raise Untranslatable("multi-stage builds are not translated")
    build.seen_from = True
    words = [w for w in args.split() if not w.startswith("--")]
    image = words[0] if words else ""
    if image not in images:
        known = ", ".join(sorted(images))
        raise Untranslatable(f"base image {image} cannot be built here (no registry); only ise's image is: {known}")


def _copy(build: _Build, word: str, args: str) -> None:
    flags, operands = _operands(args, word)
    owner = _owner(flags.pop("chown", None))
    mode = flags.pop("chmod", None)
    flags.pop("link", None)  # a layer-caching hint: the files are the same
    if flags:
        raise Untranslatable(f"{word} --{next(iter(flags))} is not translated")
    if len(operands) < 2:
        raise Untranslatable(f"{word} needs a source and a destination")
    *sources, destination = operands
    into_dir = destination.endswith("/") or len(sources) > 1 or destination == "."
    destination = posixpath.normpath(posixpath.join(build.workdir, destination))
    into_dir = into_dir or destination in _STANDARD_DIRS or destination in build.workdirs
    for source in sources:
        if word == "ADD" and "://" in source:
            raise Untranslatable(f"ADD {source} needs the network")
        if word == "ADD" and _ARCHIVE.search(source):
            raise Untranslatable(f"ADD of the archive {source} (Docker unpacks it) is not translated")
        for path in _matches(build.context, source):
            _copy_path(build, path, destination, into_dir=into_dir, owner=owner, mode=mode)


def _copy_path(build: _Build, path: Path, destination: str, *, into_dir: bool, owner: Owner, mode: str | None) -> None:
    if path.is_dir():
        for item in sorted(p for p in path.rglob("*") if p.is_file()):
            target = posixpath.join(destination, item.relative_to(path).as_posix())
            _add_file(build, item, target, owner, mode)
        return
    _add_file(build, path, posixpath.join(destination, path.name) if into_dir else destination, owner, mode)


def _add_file(build: _Build, path: Path, target: str, owner: Owner, mode: str | None) -> None:
    data = path.read_bytes()
    build.carried += len(data)
    if build.carried > CARRY_LIMIT:
        raise Untranslatable(f"the files it copies exceed {CARRY_LIMIT // 1024} KB")
    build.files[target] = file_fixture(target, data, mode or f"{stat.S_IMODE(path.stat().st_mode):04o}", owner)


def file_fixture(path: str, data: bytes, mode: str, owner: Owner) -> FileFixture:
    """A fixture holding `data` (as text when it is UTF-8, else base64)."""
    try:
        return FileFixture(path=path, content=data.decode("utf-8"), mode=mode, owner=owner)
    except UnicodeDecodeError:
        content = base64.b64encode(data).decode()
        return FileFixture(path=path, content=content, encoding="base64", mode=mode, owner=owner)


def _matches(context: Path, source: str) -> list[Path]:
    relative = posixpath.normpath(source.lstrip("/"))
    if relative.startswith(".."):
        raise Untranslatable(f"the source {source} is outside environment/")
    found = sorted(context.glob(relative)) if relative != "." else [context]
    found = [p for p in found if p.name != "Dockerfile" or p.parent != context or relative == "Dockerfile"]
    if not found:
        raise Untranslatable(f"the source {source} is not in environment/")
    return found


def _owner(chown: str | None) -> Owner:
    if chown is None:
        return "root"
    user, _, group = chown.partition(":")
    if user in ("root", "0") and group in ("", "root", "0"):
        return "root"
    if user in ("agent", "1000") and group in ("", "agent", "1000"):
        return "agent"
    raise Untranslatable(f"--chown={chown}: only root and agent (uid 1000) exist here")


def _operands(args: str, word: str) -> tuple[dict[str, str], list[str]]:
    words = shlex.split(args) if not args.startswith("[") else []
    flags: dict[str, str] = {}
    while words and words[0].startswith("--"):
        name, _, value = words.pop(0)[2:].partition("=")
        flags[name] = value
    if args.startswith("["):
        return flags, _json_list(args, word)
    return flags, words


def _run(build: _Build, args: str) -> None:
    if args.startswith("--"):
        raise Untranslatable(f"RUN {args.split()[0]} is not translated")
    command = shlex.join(_json_list(args, "RUN")) if args.startswith("[") else args
    if reason := needs_network(command):
        raise Untranslatable(f"RUN needs the network ({reason})")
    variables = [f"{name}={value}" for name, value in {**build.args, **build.env}.items()]
    argv = shlex.join([*(["env", *variables] if variables else []), *build.shell, command])
    build.runs.append(f"(cd {shlex.quote(build.workdir)} && {argv}) || exit $?")


def _variables(build: _Build, word: str, args: str) -> None:
    target = build.env if word == "ENV" else build.args
    pairs = shlex.split(args)
    if word == "ENV" and pairs and "=" not in pairs[0]:  # the old form: ENV NAME value with spaces
        pairs = [f"{pairs[0]}={' '.join(pairs[1:])}"]
    for pair in pairs:
        name, has_value, value = pair.partition("=")
        if not re.fullmatch(r"[A-Za-z_]\w*", name):
            raise Untranslatable(f"{word} {name!r} is not a variable name")
        if word == "ARG" and not has_value:
            value = build.args.get(name, "")
        target[name] = _substitute(value, build)


def _substitute(text: str, build: _Build) -> str:
    """Docker's build-time $NAME, ${NAME} and ${NAME:-default}, from the ENV and ARG values so far."""
    known = {**build.args, **build.env}

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(3)
        return known.get(name) or (match.group(2) or "")

    return _VARIABLE.sub(value, text)


def _unquote(text: str) -> str:
    words = shlex.split(text)
    if len(words) != 1:
        raise Untranslatable(f"expected one path, got {text!r}")
    return words[0]


def _json_list(args: str, word: str) -> list[str]:
    try:
        value = json.loads(args)
    except json.JSONDecodeError:
        value = None
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise Untranslatable(f"{word} {args!r} is not a JSON list of strings")
    return value


def _setup_script(build: _Build) -> str | None:
    if not build.runs and build.workdir == "/workspace":
        return None
    made = sorted({*build.workdirs, build.workdir})
    lines = ["# Replays the RUN instructions of the task's Dockerfile (ise/tasks/harbor_dockerfile.py)."]
    lines.append("mkdir -p -- " + " ".join(shlex.quote(d) for d in made))
    return "\n".join([*lines, *build.runs]) + "\n"
