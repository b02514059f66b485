"""Fixtures of the sandbox tests: a real engine and image (set up by the same code as `ise sandbox engine/build`,
failing loudly when that is impossible: these tests never skip), one shared sandbox for tests that only run
commands, and a check at the end of the session that none of this session's containers is left."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager

import pytest
from sandbox_support import RUN_ID, OpenSandbox

from ise.records import Profile
from ise.sandbox import lifecycle
from ise.sandbox.config import SandboxConfig
from ise.sandbox.docker import DockerSandbox, open_sandbox
from ise.sandbox.docker_api import shared_api
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


@pytest.fixture(scope="module")
def profile() -> Profile:
    """The profile of `config`, `open_box` and `shared_box`; a module runs under both by overriding it with
    `@pytest.fixture(scope="module", params=PROFILES)`."""
    return "user"


@pytest.fixture(scope="module")
def config(docker_ready: None, profile: Profile) -> SandboxConfig:
    """The effective settings of `profile`."""
    return SandboxConfig().for_profile(profile)


@pytest.fixture
def open_box(config: SandboxConfig) -> OpenSandbox:
    """Open a fresh sandbox of `profile` with config overrides: `with open_box(memory_mb=256) as box: ...`."""

    def opener(**overrides: object) -> AbstractContextManager[DockerSandbox]:
        return open_sandbox(config.model_copy(update=overrides), run_id=RUN_ID)

    return opener


@pytest.fixture(scope="module")
def shared_box(config: SandboxConfig) -> Iterator[DockerSandbox]:
    """One sandbox for a whole module: for tests that neither break it nor depend on a pristine one."""
    with open_sandbox(config, run_id=RUN_ID) as box:
        yield box
