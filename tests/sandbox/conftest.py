"""Fixtures of the sandbox tests: a real engine and image (set up by the same code as `ise sandbox engine/build`,
failing loudly when that is impossible: these tests never skip), one shared sandbox for tests that only run
commands, and a check at the end of the session that none of this session's containers is left."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager

import pytest
from sandbox_support import RUN_ID, OpenSandbox

from ise.sandbox import lifecycle
from ise.sandbox.config import SandboxConfig
from ise.sandbox.docker import DockerSandbox, open_sandbox, shared_api
from ise.sandbox.engine import ensure_engine
from ise.sandbox.image import build_image


@pytest.fixture(scope="session")
def docker_ready() -> Iterator[None]:
    ensure_engine()
    build_image("workspace")
    yield
    # Every run id these tests use starts with RUN_ID (subprocesses and pools included): none may be left.
    leftovers = [
        c["Names"][0]
        for c in lifecycle.ours(shared_api())
        if c.get("Labels", {}).get(lifecycle.LABEL_RUN, "").startswith(RUN_ID)
    ]
    assert leftovers == [], f"sandbox containers left after the suite: {leftovers}"


@pytest.fixture(scope="session")
def config(docker_ready: None) -> SandboxConfig:
    return SandboxConfig()


@pytest.fixture
def open_box(docker_ready: None) -> OpenSandbox:
    """Open a fresh sandbox with config overrides: `with open_box(memory_mb=256) as box: ...`."""

    def opener(**overrides: object) -> AbstractContextManager[DockerSandbox]:
        return open_sandbox(SandboxConfig().model_copy(update=overrides), run_id=RUN_ID)

    return opener


@pytest.fixture(scope="module")
def shared_box(config: SandboxConfig) -> Iterator[DockerSandbox]:
    """One sandbox for a whole module: for tests that neither break it nor depend on a pristine one."""
    with open_sandbox(config, run_id=RUN_ID) as box:
        yield box
