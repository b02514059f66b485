"""The provider seam stages open sandboxes through: profiles resolved (a forced one wins), one warm pool per
profile, everything removed when the provider closes, and no backend loaded by importing it."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from sandbox_support import RUN_ID

from ise.sandbox import lifecycle
from ise.sandbox.config import SandboxConfig
from ise.sandbox.docker import DockerSandbox
from ise.sandbox.docker_api import shared_api
from ise.sandbox.provider import open_provider

pytestmark = pytest.mark.docker


def containers_of(run_id: str) -> list[str]:
    return [c["Id"] for c in lifecycle.ours(shared_api(), run_id=run_id)]


def test_importing_the_provider_loads_no_backend() -> None:
    probe = (
        "import sys, ise.sandbox.provider\n"
        "loaded = sorted(m for m in sys.modules if m == 'docker' or m.startswith(('docker.', 'ise.sandbox.docker')))\n"
        "assert loaded == [], loaded\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


def test_each_plan_gets_its_profile_unless_one_is_forced(docker_ready: None) -> None:
    run_id = f"{RUN_ID}-provider"
    with open_provider(SandboxConfig(), run_id=run_id) as sandboxes:
        for profile, uid in (("user", "1000"), ("admin", "0")):
            with sandboxes(profile) as box:
                assert box.exec("id -u").stdout == f"{uid}\n"
                assert box.info.settings["active_profile"] == profile
                assert box.info.settings["profile"] == "plan"
    with open_provider(SandboxConfig(profile="user"), run_id=run_id) as sandboxes, sandboxes("admin") as box:
        assert box.exec("id -u").stdout == "1000\n"
        assert box.info.settings["active_profile"] == "user"
    assert containers_of(run_id) == []


def test_one_warm_pool_per_profile_closed_with_the_provider(docker_ready: None) -> None:
    run_id = f"{RUN_ID}-provider-pool"
    with open_provider(SandboxConfig(pool_size=1), run_id=run_id) as sandboxes:
        for profile in ("user", "admin"):
            with sandboxes(profile):
                pass
        deadline = time.monotonic() + 60
        while True:  # until both come from their pool: started and warmed (session shell open) before they are asked
            while len(containers_of(run_id)) < 2:
                assert time.monotonic() < deadline, "the pools did not start"
                time.sleep(0.1)
            with sandboxes("admin") as admin, sandboxes("user") as user:
                assert isinstance(admin, DockerSandbox)
                assert isinstance(user, DockerSandbox)
                pooled = admin._session is not None and user._session is not None
                assert admin.exec("id -un").stdout == "root\n"
                assert user.exec("id -un").stdout == "agent\n"
            if pooled:
                break
            assert time.monotonic() < deadline, "no sandbox came from the pools"
            time.sleep(0.5)
    assert containers_of(run_id) == []
