"""The adversarial cases worth testing (bombs, floods, escapes, timeouts, exit codes, leaks), each against the real
Docker backend, under both profiles (`user`: the agent unprivileged; `admin`: the agent root in the container), plus
the escapes root in a container tries.

Each test says which case it covers. "Contained" always means three things: the call returns in bounded time,
the host and the other sandboxes are unaffected, and the sandbox is usable (or fails with SandboxError) after.
Tests of one profile only say so with `user_only` / `admin_only`; the others run once per profile, each profile
sharing one sandbox for the tests that neither break it nor need a pristine one.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sandbox_support import PROFILES, RUN_ID, OpenSandbox, agent_processes, settled

from ise.records import Profile
from ise.sandbox import lifecycle
from ise.sandbox.base import FileToolError, SandboxError
from ise.sandbox.config import ADMIN_CAPABILITIES, SandboxConfig
from ise.sandbox.docker import DockerSandbox, open_sandbox
from ise.sandbox.docker_api import shared_api

pytestmark = pytest.mark.docker

user_only = pytest.mark.parametrize("profile", ["user"], indirect=True)
admin_only = pytest.mark.parametrize("profile", ["admin"], indirect=True)


@pytest.fixture(scope="module", params=PROFILES)
def profile(request: pytest.FixtureRequest) -> Profile:
    value: Profile = request.param
    return value


def usable(box: DockerSandbox) -> None:
    assert box.exec("echo ok").stdout == "ok\n"
    assert box.run("echo ok").stdout == "ok\n"


# 1. fork bomb ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["exec", "run"])
def test_foreground_fork_bomb_is_stopped_at_the_timeout(open_box: OpenSandbox, mode: str) -> None:
    with open_box(pids_limit=64) as box:
        run = box.exec if mode == "exec" else box.run
        started = time.monotonic()
        r = run("bomb() { bomb | bomb; }; bomb", timeout_s=3)
        assert time.monotonic() - started < 30
        assert r.timed_out
        assert settled(box) == []
        usable(box)


def test_background_fork_bomb_stays_inside_its_pids_limit(open_box: OpenSandbox, config: SandboxConfig) -> None:
    with open_box(pids_limit=64) as box, open_sandbox(config, run_id=RUN_ID) as neighbour:
        r = box.run(":(){ :|:& };:", timeout_s=5)
        assert not r.timed_out  # the classic bomb backgrounds itself: the call returns at once
        time.sleep(2)
        pids = shared_api().inspect_container(box.container_id)["HostConfig"]["PidsLimit"]
        assert pids == 64
        usable(neighbour)
        count = len(shared_api().top(box.container_id)["Processes"])
        assert 32 <= count <= 64
    assert box.container_id not in {c["Id"] for c in lifecycle.ours(shared_api())}


# 2. memory bomb -------------------------------------------------------------------------------------------------


def test_memory_bomb_is_killed_inside_the_sandbox(open_box: OpenSandbox) -> None:
    with open_box(memory_mb=200) as box:
        r = box.run('python3 -c "b = []\nwhile True: b.append(bytearray(50 * 2**20))"', timeout_s=30)
        assert (r.exit_code, r.timed_out) == (137, False)
        oom = box.exec("cat /sys/fs/cgroup/memory/memory.oom_control 2>/dev/null || cat /sys/fs/cgroup/memory.events")
        assert "oom_kill" in oom.stdout
        assert int(oom.stdout.split("oom_kill")[-1].split()[0]) >= 1
        usable(box)


# 3. disk fill ---------------------------------------------------------------------------------------------------


def test_disk_fill_stops_at_the_tmpfs_cap(open_box: OpenSandbox, profile: Profile) -> None:
    tmpfs = {**SandboxConfig().tmpfs, "/workspace": "size=32m,mode=0755,uid=1000,gid=1000,exec"}
    with open_box(tmpfs=tmpfs, file_size_limit_mb=16 if profile == "admin" else None) as box:
        r = box.exec("dd if=/dev/zero of=/workspace/fill bs=1M count=500")
        assert r.exit_code != 0
        size = int(box.exec("stat -c %s /workspace/fill").stdout)
        if profile == "user":
            assert "No space left on device" in r.stderr
            assert size <= 32 * 2**20
            for path in ("/fill", "/usr/fill", "/etc/fill", "/var/fill"):
                r = box.exec(f"echo x > {path}", user="root")
                assert r.exit_code != 0, f"{path} must not be writable (read-only root)"
        else:  # the root filesystem is writable: each file stops at the file size limit, tmpfs or not
            assert size == 16 * 2**20
            for path in ("/fill", "/usr/fill", "/etc/fill", "/var/fill"):
                r = box.exec(f"dd if=/dev/zero of={path} bs=1M count=100")
                assert r.exit_code != 0, r
                assert int(box.exec(f"stat -c %s {path}").stdout) == 16 * 2**20
        usable(box)


# 4. infinite and binary output ----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["exec", "run"])
@pytest.mark.parametrize("source", ["yes", "cat /dev/urandom"])
def test_infinite_output_is_capped_and_stopped(open_box: OpenSandbox, mode: str, source: str) -> None:
    with open_box(output_stop_bytes=4_000_000, output_limit_bytes=10_000) as box:
        run = box.exec if mode == "exec" else box.run
        started = time.monotonic()
        r = run(source, timeout_s=60)
        assert time.monotonic() - started < 20
        assert r.truncated
        assert r.output_bytes >= 4_000_000
        assert len(r.stdout.encode()) < 40_000
        assert "the command was stopped" in r.stderr
        json.loads(r.model_dump_json())
        assert agent_processes(box) == []
        usable(box)


# 5. sleep past the timeout --------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["exec", "run"])
def test_sleep_past_timeout_returns_and_leaves_nothing(shared_box: DockerSandbox, mode: str) -> None:
    run = shared_box.exec if mode == "exec" else shared_box.run
    started = time.monotonic()
    r = run("sleep 1000", timeout_s=2)
    elapsed = time.monotonic() - started
    assert (r.exit_code, r.timed_out) == (124, True)
    assert 2 <= elapsed < 5
    assert agent_processes(shared_box) == []


# 6. background, setsid and double-fork children -----------------------------------------------------------------


@pytest.mark.parametrize("mode", ["exec", "run"])
def test_escaped_children_of_a_timed_out_command_are_killed(shared_box: DockerSandbox, mode: str) -> None:
    run = shared_box.exec if mode == "exec" else shared_box.run
    escapes = (
        "sleep 1001 & setsid sleep 1002 & (sleep 1003 &) ; nohup sleep 1004 >/dev/null 2>&1 & "
        "python3 -c 'import os,time\nif os.fork() == 0:\n os.setsid()\n if os.fork() == 0: time.sleep(1005)' ; "
        "sleep 1000"
    )
    r = run(escapes, timeout_s=2)
    assert r.timed_out
    # Nothing runs on. A killed child of ise's pooled command shell stays a zombie (dead, holding only its pid)
    # until that shell runs its next command and reaps it: seen on a loaded machine, so zombies are not counted.
    assert [p for p in agent_processes(shared_box) if "<defunct>" not in p] == []


def test_background_job_does_not_hold_the_call(shared_box: DockerSandbox) -> None:
    """Case 8: `sleep 30 & echo hi` returns at once, and the job keeps running (it is the agent's)."""
    for run in (shared_box.exec, shared_box.run):
        r = run("sleep 30 & echo hi")
        assert (r.stdout, r.exit_code) == ("hi\n", 0)
        assert r.duration_s < 2
    assert sum("sleep 30" in p for p in agent_processes(shared_box)) == 2
    shared_box.exec("pkill -f 'sleep 30'")


# 7. trapped signals ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["exec", "run"])
def test_trapped_sigterm_escalates_to_sigkill(open_box: OpenSandbox, mode: str) -> None:
    with open_box(kill_grace_s=1) as box:
        run = box.exec if mode == "exec" else box.run
        stubborn = (
            "trap '' TERM INT HUP; "
            "python3 -c 'import signal,time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(1000)'"
        )
        started = time.monotonic()
        r = run(stubborn, timeout_s=2)
        assert (r.exit_code, r.timed_out) == (137, True)
        assert time.monotonic() - started < 8
        assert agent_processes(box) == []
        usable(box)


# 9. interactive programs ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    ["python3", "vi notes.txt", "vim notes.txt", "less /etc/passwd", "cd repo && git commit", "read line", "sudo id"],
)
def test_interactive_programs_cannot_hang_a_call(shared_box: DockerSandbox, command: str) -> None:
    shared_box.exec("mkdir -p repo && cd repo && git init -q && echo a > f && git add f")
    for run in (shared_box.exec, shared_box.run):
        r = run(command, timeout_s=20)
        assert not r.timed_out, r
        assert r.duration_s < 5
    shared_box.run("cd /workspace")


# 10. zombie reaping ---------------------------------------------------------------------------------------------


def test_orphans_are_reaped(shared_box: DockerSandbox) -> None:
    shared_box.exec("for i in $(seq 20); do (sleep 0.2 &) ; done; setsid sh -c 'sleep 0.2 &' ")
    time.sleep(1.0)
    states = shared_box.exec("ps -eo stat=,args=", user="root").stdout.splitlines()
    assert [s for s in states if s.startswith("Z")] == []


# 11. network egress and the engine socket -----------------------------------------------------------------------


def test_no_network_and_no_engine_socket(shared_box: DockerSandbox) -> None:
    r = shared_box.exec("ls /sys/class/net")
    assert r.stdout.split() == ["lo"]
    for probe in ("curl -sS --max-time 5 http://1.1.1.1/", "getent hosts example.com"):
        r = shared_box.exec(probe, timeout_s=15)
        assert (r.exit_code != 0, r.stdout) == (True, ""), probe
    for user in ("agent", "root"):
        r = shared_box.exec("find / -xdev -name '*.sock' 2>/dev/null; grep -c sock /proc/mounts", user=user)
        assert r.stdout == "0\n", f"no engine socket anywhere ({user}): {r.stdout!r}"


# 12. privilege ----------------------------------------------------------------------------------------------------


@user_only
@pytest.mark.parametrize(
    "attempt",
    [
        "sudo -n true",
        "su -c true root </dev/null",
        "mount -t tmpfs none /mnt",
        "unshare -r true",
        "unshare -m true",
        "echo 1 > /proc/sys/kernel/sysrq",
        "chown root /workspace",
        "cp /bin/bash /tmp/b && chmod u+s /tmp/b && /tmp/b -p -c 'test $(id -u) = 0'",
        "nsenter -t 1 -m true",
        "cat /etc/shadow",
    ],
)
def test_privilege_escalation_is_denied(shared_box: DockerSandbox, attempt: str) -> None:
    r = shared_box.exec(attempt, timeout_s=10)
    assert r.exit_code != 0, f"{attempt!r} succeeded: {r}"


@user_only
def test_agent_holds_no_capabilities_and_root_cannot_mount(shared_box: DockerSandbox) -> None:
    caps = shared_box.exec("grep -E 'Cap(Eff|Prm|Amb)' /proc/self/status").stdout.split()
    assert caps[1::2] == ["0000000000000000"] * 3
    assert "NoNewPrivs:\t1" in shared_box.exec("cat /proc/self/status").stdout
    r = shared_box.exec("mount -t tmpfs none /mnt", user="root")
    assert r.exit_code != 0


@admin_only
def test_admin_agent_holds_exactly_the_admin_capabilities(shared_box: DockerSandbox) -> None:
    status = dict(line.split(":\t", 1) for line in shared_box.exec("cat /proc/self/status").stdout.splitlines())
    expected = f"{sum(1 << CAP_NUMBERS[cap] for cap in ADMIN_CAPABILITIES):016x}"
    assert status["Uid"].split() == ["0"] * 4
    assert [status[f"Cap{kind}"] for kind in ("Prm", "Eff", "Bnd")] == [expected] * 3
    assert status["CapAmb"] == "0000000000000000"
    assert (status["NoNewPrivs"], status["Seccomp"]) == ("1", "2")


CAP_NUMBERS = {"CHOWN": 0, "DAC_OVERRIDE": 1, "FOWNER": 3, "FSETID": 4, "KILL": 5, "SETGID": 6, "SETUID": 7}


def _python(code: str) -> str:
    """A probe: runs `code` with ctypes' libc as `libc`; `fail(name)` prints the errno's name and exits 1."""
    prelude = (
        "import ctypes, errno, os, socket, sys\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "def fail(what):\n"
        "    print(what, errno.errorcode.get(ctypes.get_errno(), '?'), flush=True); sys.exit(1)\n"
    )
    return "python3 -c " + shlex.quote(prelude + code)


_CHROOT_BREAKOUT = """
os.makedirs('/tmp/jail', exist_ok=True)
fd = os.open('/', os.O_RDONLY)
try:
    os.chroot('/tmp/jail')
except PermissionError as exc:
    print('chroot', errno.errorcode[exc.errno]); sys.exit(1)
os.fchdir(fd)
for _ in range(64):
    os.chdir('..')
os.chroot('.')
"""
_SHOCKER = """
handle = ctypes.create_string_buffer(8 + 8)
ctypes.memmove(handle, (8).to_bytes(4, 'little') + (1).to_bytes(4, 'little') + (2).to_bytes(8, 'little'), 16)
fd = os.open('/', os.O_RDONLY)
if libc.syscall(304, fd, handle, os.O_RDONLY) < 0:
    fail('open_by_handle_at')
"""
# Every release_agent / notify_on_release of the cgroup mounts (their own values written back), then a fresh mount
# of a cgroup hierarchy, where release_agent would be writable.
_RELEASE_AGENT = (
    "ok=0; for f in $(find /sys/fs/cgroup -mindepth 2 -maxdepth 3 \\( -name release_agent -o -name notify_on_release "
    '\\) 2>/dev/null); do v=$(cat $f); echo "$v" > $f && ok=1; done; '
    "mkdir -p /tmp/cg && mount -t cgroup -o memory cgroup /tmp/cg && ok=1; [ $ok = 1 ]"
)
_CGROUP_LIMITS = (
    "ok=0; for f in /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max "
    "/sys/fs/cgroup/memory.max /sys/fs/cgroup/pids.max; do [ -e $f ] || continue; "
    "case $f in *limit_in_bytes) v=-1 ;; *) v=max ;; esac; echo $v > $f && ok=1; done; [ $ok = 1 ]"
)


def _same_value(path: str) -> str:
    """Write a kernel setting's own value back: a write that should fail changes nothing even if it succeeds."""
    return f'v="$(cat {path})" && echo "$v" > {path}'


ESCAPES = {
    "mount tmpfs": "mount -t tmpfs none /mnt",
    "mount proc": "mkdir -p /tmp/p && mount -t proc proc /tmp/p",
    "bind mount": "mount --bind / /mnt",
    "remount root": "mount -o remount,rw /",
    "write /proc/sys": _same_value("/proc/sys/kernel/sysrq"),
    "write /proc/sys/net": _same_value("/proc/sys/net/ipv4/ip_forward"),
    "sysrq trigger": "echo h > /proc/sysrq-trigger",
    "write /sys": _same_value("/sys/class/net/lo/mtu"),
    "write /sys/kernel": _same_value("/sys/kernel/uevent_helper"),
    "load a kernel module": _python("if libc.syscall(175, b'', 0, b'') != 0: fail('init_module')"),
    "load a kernel module from a file": _python(
        "fd = os.open('/bin/true', os.O_RDONLY)\nif libc.syscall(313, fd, b'', 0) != 0: fail('finit_module')"
    ),
    "raw socket": _python(
        "try:\n    socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)\n"
        "except PermissionError:\n    fail('SOCK_RAW')"
    ),
    "packet socket": _python(
        "try:\n    socket.socket(socket.AF_PACKET, socket.SOCK_RAW)\nexcept PermissionError:\n    fail('AF_PACKET')"
    ),
    "block device node": "mknod /tmp/sda b 8 0",
    "memory device node": "mknod /tmp/mem c 1 1",
    "a disk or kernel memory in /dev": "ls /dev | grep -E '^(sd|vd|xvd|nvme|hd|mmcblk|loop|dm-|mem$|kmem$|port$)'",
    "block devices anywhere": 'test -n "$(find /dev /tmp / -xdev -type b 2>/dev/null | head -1)"',
    "engine socket": "for s in /var/run/docker.sock /run/docker.sock /run/containerd/containerd.sock; do "
    "test -e $s && exit 0; done; exit 1",
    "cgroup release_agent": _RELEASE_AGENT,
    "lift the cgroup limits": _CGROUP_LIMITS,
    "chroot breakout": _python(_CHROOT_BREAKOUT),
    "open_by_handle_at (shocker)": _python(_SHOCKER),
    "unshare -U": "unshare -U true",
    "unshare -Ur": "unshare -Ur true",
    "unshare -m": "unshare -m true",
    "unshare -n": "unshare -n true",
    "unshare -p": "unshare -pf true",
    "nsenter PID 1": "nsenter -t 1 -m -u -n -p true",
    "ptrace PID 1": _python("if libc.ptrace(16, 1, None, None) != 0: fail('PTRACE_ATTACH')"),
    "ptrace PID 1 as its user": _python(
        "os.setgid(65534) if os.getuid() == 0 else None\nos.setuid(65534) if os.getuid() == 0 else None\n"
        "if libc.ptrace(16, 1, None, None) != 0: fail('PTRACE_ATTACH')"
    ),
    "write the container log": "echo x > /proc/1/fd/1",
    "hostname": "hostname evil",
    "set the clock": 'date -s "@$(date +%s)"',
    "set the clock (syscall)": _python(
        "import time\ntry:\n    time.clock_settime(time.CLOCK_REALTIME, time.time())\n"
        "except PermissionError:\n    fail('clock_settime')"
    ),
}
"""Each must fail when the agent tries it: under `admin` too, where the agent is root in the container."""


@pytest.mark.parametrize("name", list(ESCAPES))
def test_escapes_of_root_in_a_container_are_contained(shared_box: DockerSandbox, name: str) -> None:
    r = shared_box.exec(ESCAPES[name], timeout_s=15)
    assert r.exit_code != 0, f"{name}: {r}"
    assert not r.timed_out
    hostname, year, interfaces = shared_box.exec("hostname; date +%Y; ls /sys/class/net", user="root").stdout.split()
    assert (hostname, interfaces) == ("workspace", "lo")
    assert int(year) >= 2025


# 13. path traversal and symlink races on the file tools ---------------------------------------------------------


@user_only
def test_symlink_swap_race_never_escapes(open_box: OpenSandbox) -> None:
    with open_box() as box:
        box.exec("mkdir -p /tmp/outside /workspace/real && echo secret > /tmp/outside/secret.txt")
        box.exec("echo harmless > /workspace/real/secret.txt")
        swapper = (
            "while :; do rm -rf /workspace/swap; ln -s /tmp/outside /workspace/swap; "
            "rm -f /workspace/swap; ln -s /workspace/real /workspace/swap; done"
        )
        racer = threading.Thread(target=lambda: box.run(swapper, timeout_s=60), daemon=True)
        racer.start()
        reads, refusals = [], 0
        try:
            for _ in range(20):
                for call in (
                    lambda: reads.append(box.read_file("swap/secret.txt")),
                    lambda: box.write_file("swap/planted.txt", "x"),
                ):
                    try:
                        call()
                    except FileToolError:
                        refusals += 1
        finally:
            box.exec(f"kill -KILL {box.session_pid}")  # the loop's shell
            racer.join(timeout=10)
        assert "secret\n" not in reads
        assert box.exec("test -e /tmp/outside/planted.txt").exit_code != 0
        assert refusals + len(reads) > 0


def test_file_tools_refuse_special_files_without_hanging(shared_box: DockerSandbox) -> None:
    shared_box.exec("mkfifo /workspace/pipe; head -c 3000000 /dev/urandom > /workspace/big.bin")
    for call in (
        lambda: shared_box.read_file("pipe"),
        lambda: shared_box.write_file("pipe", "x"),
        lambda: shared_box.read_file("big.bin"),
    ):
        started = time.monotonic()
        with pytest.raises(FileToolError):
            call()
        assert time.monotonic() - started < 5


# 14. pipeline SIGKILL, then restart ----------------------------------------------------------------------------

_OWNER_SCRIPT = """
import sys, time
from ise.sandbox.config import SandboxConfig
from ise.sandbox.docker import DockerSandbox
box = DockerSandbox(SandboxConfig(), run_id=sys.argv[1])
box.run("sleep 1000 &")
print(box.container_id, flush=True)
time.sleep(1000)
"""


def test_pipeline_killed_with_sigkill_is_cleaned_up_on_restart(docker_ready: None) -> None:
    owner = subprocess.Popen(
        [sys.executable, "-c", _OWNER_SCRIPT, RUN_ID], stdout=subprocess.PIPE, text=True, cwd=Path.cwd()
    )
    assert owner.stdout is not None
    container_id = owner.stdout.readline().strip()
    owner.kill()  # SIGKILL: no finally, no atexit, no signal handler
    owner.wait()
    api = shared_api()
    assert api.inspect_container(container_id)["State"]["Running"]
    # The restarted pipeline's first sandbox reaps the orphan of the dead one.
    restart = subprocess.run([sys.executable, "-c", _RESTART], capture_output=True, text=True, check=False)
    assert restart.returncode == 0, restart.stderr
    assert container_id not in {c["Id"] for c in lifecycle.ours(api)}


_RESTART = f"""
from ise.sandbox.config import SandboxConfig
from ise.sandbox.docker import open_sandbox
with open_sandbox(SandboxConfig(), run_id={RUN_ID!r}) as box:
    assert box.exec("true").exit_code == 0
"""


# 15. container killed from outside ------------------------------------------------------------------------------


def test_container_killed_from_outside_raises_sandbox_error(open_box: OpenSandbox) -> None:
    with open_box() as box:
        box.run("true")
        box.exec("true")
        result: list[object] = []

        def long_command() -> None:
            try:
                result.append(box.run("sleep 20"))
            except SandboxError as exc:
                result.append(exc)

        worker = threading.Thread(target=long_command)
        worker.start()
        time.sleep(0.5)
        shared_api().kill(box.container_id)
        worker.join(timeout=15)
        assert not worker.is_alive()
        assert isinstance(result[0], SandboxError)
        for call in (lambda: box.exec("true"), lambda: box.run("true"), lambda: box.read_file("x")):
            with pytest.raises(SandboxError):
                call()
    assert box.container_id not in {c["Id"] for c in lifecycle.ours(shared_api())}


@user_only
def test_main_process_killed_from_inside_is_an_infra_error_and_leaves_nothing(open_box: OpenSandbox) -> None:
    with open_box() as box:
        with pytest.raises(SandboxError):
            box.exec("kill -9 $(pgrep -x sleep); sleep 5", user="root")
        with pytest.raises(SandboxError):
            box.run("true")
    assert box.container_id not in {c["Id"] for c in lifecycle.ours(shared_api())}


@admin_only
def test_root_agent_cannot_stop_the_container_from_inside(open_box: OpenSandbox) -> None:
    """The admin profile's PID 1 ignores every signal and cannot be traced: killing everything it can reach costs
    the agent its session (and ise's own shells and helpers, which are started again), never the sandbox."""
    with open_box() as box:
        box.run("true")
        for attack in ("pkill -9 sleep; pkill -9 -f ise-keeper", "kill -9 1; kill -TERM 1; kill -INT 1", "kill -9 -1"):
            box.exec(attack)
        box.run("cd /tmp && export KEPT=1")
        assert box.run("kill -9 1; pkill -9 -f ise-keeper; echo $KEPT").stdout == "1\n"
        assert box.run("/bin/kill -9 -1").session_reset  # not the builtin: that spares its own shell
        time.sleep(0.5)
        assert box.alive()
        assert box.run('pwd; echo "${KEPT:-gone}"').stdout == "/workspace\ngone\n"
        usable(box)
        box.write_file("after.txt", "still here")
        assert box.read_file("after.txt") == "still here"
        assert "ise-keeper" in box.exec("ps -o args= -p 1").stdout


# 16. paused container, API errors -------------------------------------------------------------------------------


def test_paused_container_gives_sandbox_error_in_bounded_time(open_box: OpenSandbox) -> None:
    with open_box() as box:
        box.run("true")
        shared_api().pause(box.container_id)
        try:
            started = time.monotonic()
            with pytest.raises(SandboxError, match="paused"):
                box.exec("true", timeout_s=2)
            with pytest.raises(SandboxError, match="paused"):
                box.run("true", timeout_s=2)
            assert time.monotonic() - started < 30
        finally:
            shared_api().unpause(box.container_id)


def test_closing_a_sandbox_under_a_running_command_ends_the_call(open_box: OpenSandbox) -> None:
    with open_box() as box:
        box.run("true")
        outcome: list[object] = []

        def long_command() -> None:
            try:
                outcome.append(box.run("sleep 30"))
            except SandboxError as exc:
                outcome.append(exc)

        worker = threading.Thread(target=long_command)
        worker.start()
        time.sleep(0.5)
        box.close()
        worker.join(timeout=15)
        assert not worker.is_alive()
        assert isinstance(outcome[0], SandboxError)
        assert "closed" in str(outcome[0])


def test_missing_image_is_a_clear_error(docker_ready: None) -> None:
    with (
        pytest.raises(SandboxError, match="ise-no-such-image"),
        open_sandbox(SandboxConfig(image="ise-no-such-image:latest"), run_id=RUN_ID),
    ):
        pass


# 17. 32 parallel episodes ---------------------------------------------------------------------------------------


def test_32_parallel_sandboxes_do_not_collide(config: SandboxConfig) -> None:
    def episode(n: int) -> tuple[int, str, str, list[str]]:
        with open_sandbox(config, run_id=RUN_ID) as box:
            box.write_file("me.txt", f"episode {n}\n")
            box.run(f"export N={n}; cd /tmp")
            echoed = box.run('echo "$N $(pwd)"').stdout
            return n, box.read_file("me.txt"), echoed, sorted(e.path for e in box.list_dir("."))

    with ThreadPoolExecutor(max_workers=32) as pool:
        results = list(pool.map(episode, range(32)))
    for n, content, echoed, listing in results:
        assert content == f"episode {n}\n"
        assert echoed == f"{n} /tmp\n"
        assert listing == ["/workspace/me.txt"]


# 18. log flood --------------------------------------------------------------------------------------------------


@user_only
def test_log_flood_is_capped(open_box: OpenSandbox) -> None:
    with open_box(log_max_size="100k") as box:
        assert box.exec("echo x > /proc/1/fd/1").exit_code != 0, "the agent cannot write the container log"
        box.exec("head -c 3000000 /dev/zero | tr '\\0' x | fold -w 100 > /proc/1/fd/1", user="root", timeout_s=30)
        logs = shared_api().logs(box.container_id)
        assert 0 < len(logs) <= 200_000


# 19. exact exit codes -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["exec", "run"])
def test_exact_exit_codes(shared_box: DockerSandbox, mode: str) -> None:
    run = shared_box.exec if mode == "exec" else shared_box.run
    cases = [
        ("(exit 3)", 3, False),
        ("(exit 124)", 124, False),
        ("(exit 137)", 137, False),
        ("bash -c 'kill -9 $$'", 137, False),
        ("bash -c 'kill -TERM $$'", 143, False),
        ("sleep 10", 124, True),
    ]
    for command, code, timed_out in cases:
        r = run(command, timeout_s=1)
        assert (r.exit_code, r.timed_out) == (code, timed_out), command


# 20. output that imitates the end marker ------------------------------------------------------------------------


def test_output_imitating_markers_is_kept_as_output(shared_box: DockerSandbox) -> None:
    shared_box.run("true")
    pid = shared_box.session_pid
    imitation = (
        "for i in $(seq 50); do printf '%032x %032x 0 1.0 2.0 - /\\n' $RANDOM $RANDOM; "
        "printf '%032x 0 1.0 2.0 exit /etc\\n' $i >&2; done; echo ISE-READY 1; "
        f"cat /proc/{pid}/cmdline | tr '\\0' ' ' | head -c 100; echo; (exit 7)"
    )
    for run in (shared_box.exec, shared_box.run):
        r = run(imitation)
        assert r.exit_code == 7
        assert r.stdout.count("\n") == 52
        assert r.stderr.count("\n") == 50
        assert not r.session_reset


# 21. nothing left after N episodes ------------------------------------------------------------------------------


def test_nothing_is_left_after_many_episodes(config: SandboxConfig) -> None:
    run_id = f"{RUN_ID}-many"
    for n in range(8):
        try:
            with open_sandbox(config, run_id=run_id) as box:
                box.run("sleep 100 &")
                if n % 2:
                    raise RuntimeError("an episode that fails half-way")
        except RuntimeError:
            pass
    assert lifecycle.ours(shared_api(), run_id=run_id) == []
