"""Build the workspace images in sandbox_images/<name>/, offline if need be.

A build is skipped when an image with the same context hash exists (label `ise.context-sha256`). When the
Dockerfile's base cannot be pulled (no registry reachable), a Debian base is bootstrapped locally with
debootstrap from the machine's own apt sources, imported under the name the Dockerfile expects, and the normal
build follows. Image ids are what traces record, so a trace always says exactly which image it ran in.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ise.errors import IseError
from ise.sandbox.base import SandboxError
from ise.sandbox.engine import docker_client

if TYPE_CHECKING:
    import docker

CONTEXT_LABEL = "ise.context-sha256"
DEFAULT_IMAGE = "workspace"
APT_SOURCES = (Path("/etc/apt/sources.list"), Path("/etc/apt/sources.list.d"))


@dataclass(frozen=True)
class BuiltImage:
    tag: str
    id: str
    context_sha256: str
    built: bool
    """False when an up-to-date image was already there."""


def images_root() -> Path:
    """sandbox_images/ in the working directory, else the one next to the ise package (a source checkout)."""
    for candidate in (Path.cwd() / "sandbox_images", Path(__file__).resolve().parents[2] / "sandbox_images"):
        if candidate.is_dir():
            return candidate
    raise IseError("no sandbox_images/ directory here or next to the ise package")


def image_tag(name: str) -> str:
    return f"ise-{name}:latest"


def context_sha256(context: Path) -> str:
    """Hash of every file in the build context (names and bytes), so any edit triggers a rebuild."""
    digest = hashlib.sha256()
    for path in sorted(p for p in context.rglob("*") if p.is_file()):
        digest.update(path.relative_to(context).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def build_image(
    name: str = DEFAULT_IMAGE, *, root: Path | None = None, force: bool = False, say: Callable[[str], None] = print
) -> BuiltImage:
    context = (root or images_root()) / name
    dockerfile = context / "Dockerfile"
    if not dockerfile.is_file():
        raise IseError(f"no Dockerfile at {dockerfile}")
    tag, digest = image_tag(name), context_sha256(context)
    client = docker_client(timeout_s=600)
    try:
        existing = _find_image(client, tag)
        if existing is not None and existing.labels.get(CONTEXT_LABEL) == digest and not force:
            return BuiltImage(tag, existing.id, digest, built=False)
        _ensure_base(client, base_image(dockerfile), context, say)
        say(f"building {tag} from {context}")
        image_id = _docker_build(client, context, tag, digest)
        if existing is not None and existing.id != image_id:
            _remove_quietly(client, existing.id)  # the old build, now untagged
    finally:
        client.close()
    return BuiltImage(tag, image_id, digest, built=True)


def ensure_image(tag: str) -> str:
    """The id of image `tag`. One of ours (`ise-<name>:latest`) is built first when missing or stale, if its
    sandbox_images/<name> is at hand (an installed ise without the source tree uses what the engine has)."""
    match = re.fullmatch(r"ise-([\w.-]+):latest", tag)
    if match and _context_at_hand(match.group(1)):
        # A build can take minutes (offline bootstrap): say so on stderr, stdout may be data.
        return build_image(match.group(1), say=lambda line: print(line, file=sys.stderr)).id
    client = docker_client()
    try:
        image = _find_image(client, tag)
    finally:
        client.close()
    if image is None:
        if match is None:
            raise SandboxError(f"sandbox image {tag} not found: build or load it first")
        name = "" if match.group(1) == "workspace" else f" {match.group(1)}"
        raise SandboxError(
            f"sandbox image {tag} not found: build it with `ise sandbox build{name}` "
            f"(from a source checkout holding sandbox_images/{match.group(1)})"
        )
    return str(image.id)


def _context_at_hand(name: str) -> bool:
    try:
        return (images_root() / name / "Dockerfile").is_file()
    except IseError:
        return False


def _remove_quietly(client: docker.DockerClient, image_id: str) -> None:
    import docker.errors

    with contextlib.suppress(docker.errors.APIError):  # still used by a container: leave it
        client.images.remove(image_id)


def base_image(dockerfile: Path) -> str:
    for line in dockerfile.read_text().splitlines():
        words = line.split()
        if words and words[0].upper() == "FROM":
            return next(w for w in words[1:] if not w.startswith("--"))
    raise IseError(f"{dockerfile}: no FROM line")


def _find_image(client: docker.DockerClient, tag: str) -> Any:
    import docker.errors

    try:
        return client.images.get(tag)
    except docker.errors.ImageNotFound:
        return None


def _ensure_base(client: docker.DockerClient, base: str, context: Path, say: Callable[[str], None]) -> None:
    import docker.errors

    if _find_image(client, base) is not None:
        return
    try:
        client.images.pull(base)
        return
    except docker.errors.APIError as exc:
        reason = str(exc.explanation or exc).splitlines()[0]
    match = re.fullmatch(r"debian:(\w+)(?:-slim)?", base)
    if not match:
        raise SandboxError(f"cannot pull base image {base} ({reason}) and only debian:<suite> can be bootstrapped")
    say(f"cannot pull {base}; bootstrapping it with debootstrap (about a minute)")
    bootstrap_debian(client, suite=match.group(1), tag=base, packages=_listed_packages(context))


def bootstrap_debian(client: docker.DockerClient, *, suite: str, tag: str, packages: list[str]) -> None:
    """debootstrap a minimal Debian (with `packages` preinstalled) from the local apt mirror; import it as `tag`."""
    if shutil.which("debootstrap") is None:
        raise SandboxError("debootstrap is not installed (run `ise sandbox engine` as root, or apt-get install it)")
    mirror = apt_mirror()
    with tempfile.TemporaryDirectory(prefix="ise-debootstrap-", dir="/var/tmp") as tmp:
        rootfs = Path(tmp) / "rootfs"
        command = ["debootstrap", "--variant=minbase", f"--include={','.join(packages)}", suite, str(rootfs), mirror]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            tail = (done.stdout + done.stderr).strip().splitlines()[-1:] or ["no output"]
            raise SandboxError(f"debootstrap failed (exit {done.returncode}): {tail[0]}")
        for leftover in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for path in (rootfs / leftover).glob("*"):
                if path.is_file():
                    path.unlink()
        repository, _, version = tag.partition(":")
        with subprocess.Popen(["tar", "-C", str(rootfs), "--numeric-owner", "-c", "."], stdout=subprocess.PIPE) as tar:
            client.api.import_image_from_stream(tar.stdout, repository=repository, tag=version or "latest")
        if tar.returncode != 0:
            raise SandboxError(f"packing the bootstrapped rootfs failed (tar exit {tar.returncode})")


def apt_mirror() -> str:
    """The first Debian mirror in this machine's apt sources (debootstrap must use what apt here can reach)."""
    for source in APT_SOURCES:
        files = sorted(source.glob("*")) if source.is_dir() else [source]
        for path in files:
            try:
                text = path.read_text()
            except OSError:
                continue
            for uri in re.findall(r"^\s*(?:URIs:|deb)\s+(\S+)", text, flags=re.MULTILINE):
                if uri.startswith("http") and "security" not in uri:
                    return str(uri)
    raise SandboxError("no Debian mirror found in /etc/apt/sources.list{,.d}: cannot bootstrap a base image")


def _listed_packages(context: Path) -> list[str]:
    listing = context / "packages.txt"
    if not listing.is_file():
        return []
    return [line.strip() for line in listing.read_text().splitlines() if line.strip() and not line.startswith("#")]


def _docker_build(client: docker.DockerClient, context: Path, tag: str, digest: str) -> str:
    stream = client.api.build(
        path=str(context), tag=tag, labels={CONTEXT_LABEL: digest}, rm=True, forcerm=True, pull=False, decode=True
    )
    log: list[str] = []
    for chunk in stream:
        if "error" in chunk:
            raise SandboxError(f"docker build of {tag} failed: {str(chunk['error']).strip()}")
        if "stream" in chunk:
            log.append(str(chunk["stream"]))
    image = _find_image(client, tag)
    if image is None:
        raise SandboxError(f"docker build of {tag} produced no image; last output: {''.join(log[-3:]).strip()}")
    return str(image.id)
