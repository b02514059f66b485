"""Lifecycle: engine and image set-up are idempotent, containers never outlive their run (atexit, signals, TTL,
reaper, gc), the warm pool hands out ready sandboxes, and the CLI reports."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sandbox_support import RUN_ID

from ise.records import Profile
from ise.sandbox import lifecycle
from ise.sandbox.config import ADMIN_CAPABILITIES, SandboxConfig
from ise.sandbox.docker import DockerSandbox, open_sandbox
from ise.sandbox.docker_api import shared_api
from ise.sandbox.docker_pool import SandboxPool
from ise.sandbox.engine import ensure_engine
from ise.sandbox.image import apt_mirror, build_image, context_sha256, images_root

pytestmark = pytest.mark.docker

ISE = str(Path(sys.executable).with_name("ise"))


def containers_of(run_id: str) -> list[str]:
    return [c["Id"] for c in lifecycle.ours(shared_api(), run_id=run_id)]


def test_engine_and_image_setup_are_idempotent(docker_ready: None) -> None:
    assert ensure_engine().startswith("Docker engine")
    started = time.monotonic()
    built = build_image("workspace")
    assert not built.built
    assert time.monotonic() - started < 10
    assert built.context_sha256 == context_sha256(images_root() / "workspace")
    labels = shared_api().inspect_image(built.tag)["Config"]["Labels"]
    assert labels["ise.context-sha256"] == built.context_sha256


def test_debootstrap_uses_this_machines_apt_mirror() -> None:
    mirror = apt_mirror()
    assert mirror.startswith("http")
    sources = [Path("/etc/apt/sources.list"), *Path("/etc/apt/sources.list.d").glob("*")]
    assert any(mirror in path.read_text() for path in sources if path.is_file())


def test_containers_are_labelled_with_run_and_owner(config: SandboxConfig) -> None:
    run_id = f"{RUN_ID}-labels"
    with open_sandbox(config, run_id=run_id) as box:
        labels = shared_api().inspect_container(box.container_id)["Config"]["Labels"]
        assert labels[lifecycle.LABEL_RUN] == run_id
        assert labels[lifecycle.LABEL_OWNER] == lifecycle.owner_label()
        assert not lifecycle.owner_gone(labels[lifecycle.LABEL_OWNER])
    assert containers_of(run_id) == []


def test_hardening_is_applied_and_recorded(config: SandboxConfig) -> None:
    with open_sandbox(config, run_id=RUN_ID) as box:
        host = shared_api().inspect_container(box.container_id)["HostConfig"]
        assert host["NetworkMode"] == "none"
        assert host["ReadonlyRootfs"] is True
        assert host["CapDrop"] == ["ALL"]
        assert host["SecurityOpt"] == ["no-new-privileges"]
        assert host["PidsLimit"] == config.pids_limit
        assert host["Memory"] == host["MemorySwap"] == config.memory_mb * 2**20
        assert host["NanoCpus"] == int(config.cpus * 1e9)
        assert host["Init"] is True
        assert host["LogConfig"]["Config"]["max-size"] == config.log_max_size
        assert box.info.settings == config.model_dump(mode="json")


def test_admin_profile_keeps_the_hardening_that_is_not_its_own(docker_ready: None) -> None:
    config = SandboxConfig().for_profile("admin")
    with open_sandbox(config, run_id=RUN_ID) as box:
        host = shared_api().inspect_container(box.container_id)["HostConfig"]
        assert host["NetworkMode"] == "none"
        assert host["ReadonlyRootfs"] is False
        assert host["CapDrop"] == ["ALL"]
        assert sorted(host["CapAdd"]) == sorted(ADMIN_CAPABILITIES)
        assert host["SecurityOpt"] == ["no-new-privileges"]
        assert host["PidsLimit"] == config.pids_limit
        assert host["Memory"] == host["MemorySwap"] == config.memory_mb * 2**20
        assert host["Ulimits"] == [{"Name": "fsize", "Soft": 2**30, "Hard": 2**30}]
        assert host["Init"] is False  # PID 1 is the keeper itself
        assert host["Tmpfs"] == config.tmpfs
        settings = box.info.settings
        assert settings == config.model_dump(mode="json")
        assert (settings["active_profile"], settings["agent_user"], settings["read_only_root"]) == (
            "admin",
            "root",
            False,
        )
        assert box.exec("ps -o user=,args= -p 1").stdout.startswith("nobody   bash -c trap ''")


@pytest.mark.parametrize("profile", ["user", "admin"])
def test_ttl_is_a_dead_man_switch(docker_ready: None, profile: Profile) -> None:
    run_id = f"{RUN_ID}-ttl-{profile}"
    box = DockerSandbox(SandboxConfig(ttl_s=2).for_profile(profile), run_id=run_id)
    try:
        assert containers_of(run_id) == [box.container_id]
        deadline = time.monotonic() + 20
        while containers_of(run_id) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert containers_of(run_id) == [], "the container outlived its TTL"
    finally:
        box.close()


_LEAVE_OPEN = """
import os, signal, sys, time
from concurrent.futures import ThreadPoolExecutor
from ise.sandbox.config import SandboxConfig
from ise.sandbox.docker import DockerSandbox, require_image
require_image(SandboxConfig())  # what stages do first, in the main thread
with ThreadPoolExecutor(2) as workers:  # sandboxes opened by worker threads, as stages do
    boxes = list(workers.map(lambda _: DockerSandbox(SandboxConfig(), run_id=sys.argv[1]), range(2)))
boxes[0].run("sleep 1000 &")
print("open", flush=True)
if sys.argv[2] == "exit":
    sys.exit(0)  # never closed: atexit must remove them
time.sleep(1000)  # waiting for a signal
"""


@pytest.mark.parametrize("ending", ["exit", "SIGTERM", "SIGINT"])
def test_a_process_that_ends_takes_its_containers_with_it(docker_ready: None, ending: str) -> None:
    run_id = f"{RUN_ID}-{ending.lower()}"
    child = subprocess.Popen([sys.executable, "-c", _LEAVE_OPEN, run_id, ending], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    assert child.stdout.readline() == "open\n"
    assert len(containers_of(run_id)) == 2
    if ending != "exit":
        child.send_signal(getattr(signal, ending))
    child.wait(timeout=30)
    assert containers_of(run_id) == []


def test_gc_removes_orphans_and_spares_live_runs(config: SandboxConfig) -> None:
    orphan_run, live_run = f"{RUN_ID}-orphan", f"{RUN_ID}-live"
    with open_sandbox(config, run_id=live_run):
        child = subprocess.Popen(
            [sys.executable, "-c", _LEAVE_OPEN, orphan_run, "wait"], stdout=subprocess.PIPE, text=True
        )
        assert child.stdout is not None
        assert child.stdout.readline() == "open\n"
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        assert len(containers_of(orphan_run)) == 2
        done = subprocess.run([ISE, "sandbox", "gc"], capture_output=True, text=True, check=True)
        assert "removed 2 container(s)" in done.stdout
        assert containers_of(orphan_run) == []
        assert len(containers_of(live_run)) == 1


def test_warm_pool_hands_out_started_sandboxes_and_refills(config: SandboxConfig) -> None:
    run_id = f"{RUN_ID}-pool"
    with SandboxPool(config, run_id=run_id, size=2) as pool:
        assert pool.wait_ready(60) == 2
        pooled = set(containers_of(run_id))
        with open_sandbox(config, run_id=run_id, pool=pool) as box:
            assert box.container_id in pooled
            assert box.run("echo warm").stdout == "warm\n"
            box.write_file("mine.txt", "x")
        assert pool.wait_ready(60) == 2
        assert len(containers_of(run_id)) == 2
        with open_sandbox(config, run_id=run_id, pool=pool) as other:
            assert other.list_dir(".") == [], "a pooled sandbox is fresh"
    assert containers_of(run_id) == []


def test_cli_check_runs_the_conformance_checks(docker_ready: None) -> None:
    done = subprocess.run([ISE, "sandbox", "check"], capture_output=True, text=True, check=False, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "all 16 checks passed" in done.stdout
    assert "FAIL" not in done.stdout


def test_cli_errors_are_one_line(docker_ready: None) -> None:
    done = subprocess.run([ISE, "sandbox", "build", "no-such-image"], capture_output=True, text=True, check=False)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0
    assert "no Dockerfile" in done.stderr
