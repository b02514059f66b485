"""The conformance suite of the Sandbox protocol: what any backend must do, checked on a live sandbox.

tests/sandbox/test_sandbox_conformance.py runs every check on the Docker backend, under each profile it applies
to; `ise sandbox check` runs the quick ones on this machine. A check takes an open sandbox (it may leave things
behind in /workspace and /tmp, never elsewhere; under `admin` also in /etc and /srv) and raises AssertionError
saying what is wrong.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass

from ise.records import DirFixture, FileFixture, Fixtures, Profile
from ise.sandbox.base import ExecResult, FileToolError, Sandbox, SandboxError, SetupScriptFailed, diff_snapshots

BOTH: tuple[Profile, ...] = ("user", "admin")


@dataclass(frozen=True)
class Check:
    name: str
    run: Callable[[Sandbox], None]
    quick: bool = True
    """Part of `ise sandbox check` (a few seconds in all)."""
    profiles: tuple[Profile, ...] = BOTH
    """The profiles whose promise this checks."""


def profile_of(box: Sandbox) -> Profile:
    """The profile a sandbox runs (its settings say; ones that predate profiles are `user`)."""
    return "admin" if box.info.settings.get("active_profile") == "admin" else "user"


def _expect(condition: bool, message: str, result: ExecResult | None = None) -> None:
    if not condition:
        raise AssertionError(message + (f"; got {result!r}" if result is not None else ""))


def exec_output_and_exit(box: Sandbox) -> None:
    r = box.exec("echo out; echo err >&2; exit 3")
    _expect((r.stdout, r.stderr, r.exit_code, r.timed_out) == ("out\n", "err\n", 3, False), "exec result", r)
    r = box.run("echo out; echo err >&2; false")
    _expect((r.stdout, r.stderr, r.exit_code) == ("out\n", "err\n", 1), "session result", r)
    _expect(r.output_bytes == 8 and not r.truncated, "output_bytes counts stdout and stderr", r)


def exec_is_stateless(box: Sandbox) -> None:
    box.exec("cd /tmp && export ISE_A=1 && f() { :; }")
    r = box.exec('pwd; echo "${ISE_A:-unset}"; type f >/dev/null 2>&1 || echo nofunc')
    _expect(r.stdout == "/workspace\nunset\nnofunc\n", "exec must start fresh in /workspace", r)


def session_keeps_state(box: Sandbox) -> None:
    box.run("mkdir -p /tmp/ise-state && cd /tmp/ise-state && export ISE_B=2 && greet() { echo hi $1; }")
    r = box.run('pwd; echo "$ISE_B"; greet there')
    _expect(r.stdout == "/tmp/ise-state\n2\nhi there\n", "cwd, env and functions persist", r)
    _expect(r.cwd == "/tmp/ise-state", "cwd reported", r)
    box.run("cd /workspace")


def agent_is_unprivileged(box: Sandbox) -> None:
    r = box.exec("id -un; id -u")
    _expect(r.stdout.split() == ["agent", "1000"], "commands run as the agent user", r)
    r = box.exec("id -u", user="root")
    _expect(r.stdout.strip() == "0", "user='root' runs as root", r)


def agent_is_root(box: Sandbox) -> None:
    r = box.exec("id -un; id -u")
    _expect(r.stdout.split() == ["root", "0"], "commands run as root in the admin profile", r)
    r = box.run("echo admin > /etc/ise-conformance && cat /etc/ise-conformance && rm /etc/ise-conformance")
    _expect(r.stdout == "admin\n", "the root filesystem is writable", r)
    box.write_file("/srv/ise-conformance/note.txt", "root's")
    _expect(box.exec("stat -c %U /srv/ise-conformance/note.txt").stdout == "root\n", "file tools act as root")
    _expect("/srv/ise-conformance" in box.snapshot(["/srv"]), "snapshots cover the roots asked for")
    box.exec("rm -r /srv/ise-conformance")


def exact_exit_codes(box: Sandbox) -> None:
    for run in (box.exec, box.run):
        r = run("exit 124") if run is box.exec else run("(exit 124)")
        _expect((r.exit_code, r.timed_out) == (124, False), "a command's own 124 is not a timeout", r)
        r = run("bash -c 'kill -9 $$'")
        _expect((r.exit_code, r.timed_out) == (137, False), "killed by SIGKILL: 137", r)
        r = run("sleep 5", timeout_s=1)
        _expect((r.exit_code, r.timed_out) == (124, True), "timeout: 124 and timed_out", r)
        _expect(r.duration_s < 4, "a timeout returns promptly", r)


def stdin_is_closed(box: Sandbox) -> None:
    for run in (box.exec, box.run):
        started = time.monotonic()
        r = run("read -r line; echo read=$?; cat; python3 -c 'import sys; print(len(sys.stdin.read()))'")
        _expect(r.stdout == "read=1\n0\n", "commands see EOF on stdin", r)
        _expect(time.monotonic() - started < 5, "reading stdin does not wait", r)


def background_jobs_do_not_block(box: Sandbox) -> None:
    for run in (box.exec, box.run):
        r = run("sleep 30 & echo hi")
        _expect(r.stdout == "hi\n" and r.exit_code == 0 and r.duration_s < 3, "returns without waiting for `&` jobs", r)


def output_is_capped(box: Sandbox) -> None:
    size = 3_000_000
    for run in (box.exec, box.run):
        r = run(f"head -c {size} /dev/zero | tr '\\0' a")
        _expect(r.truncated and r.output_bytes == size, "big output is cut and counted", r)
        _expect(len(r.stdout) < 200_000 and r.stdout.startswith("a") and r.stdout.endswith("a"), "head and tail kept")


def binary_output_is_valid_text(box: Sandbox) -> None:
    r = box.exec("head -c 4096 /dev/urandom; printf '\\377\\376\\000end'")
    _expect(r.output_bytes == 4096 + 6 and r.stdout.endswith("end"), "binary output arrives whole", r)
    json.loads(json.dumps(r.model_dump()))  # any record must stay valid JSON
    r.stdout.encode("utf-8")


def imitated_marker_is_output(box: Sandbox) -> None:
    fake = "ISE-READY 1\\n" + "0123456789abcdef" * 2 + " 0 1.0 2.0 - /tmp\\n"
    for run in (box.exec, box.run):
        r = run(f"printf '{fake}'; echo after; exit 5")
        _expect(r.exit_code == 5 and r.stdout.endswith("after\n") and "ISE-READY" in r.stdout, "fake marker", r)


def file_tools_round_trip(box: Sandbox) -> None:
    box.write_file("notes/today.txt", "alpha\nbeta\n")
    _expect(box.read_file("/workspace/notes/today.txt") == "alpha\nbeta\n", "write then read")
    box.edit_file("notes/today.txt", "beta", "gamma")
    _expect(box.read_file("notes/today.txt") == "alpha\ngamma\n", "edit replaces exactly once")
    home, agent = box.exec('printf %s "$HOME"; echo; id -un').stdout.split()
    box.write_file("~/home-note.txt", "in the home")
    _expect(box.exec(f"cat {home}/home-note.txt").stdout == "in the home", "~ is the agent's home")
    box.exec(f"rm {home}/home-note.txt")
    entries = box.list_dir("notes")
    _expect([(e.path, e.kind, e.size) for e in entries] == [("/workspace/notes/today.txt", "file", 12)], "list")
    owner = box.exec("stat -c %U notes/today.txt").stdout.strip()
    _expect(owner == agent, f"files are written as the agent user ({agent}), not {owner}")
    box.write_file("notes/twice.txt", "x x")
    for call, why in (
        (lambda: box.read_file("notes/missing.txt"), "missing file"),
        (lambda: box.edit_file("notes/twice.txt", "x", "y"), "ambiguous edit"),
        (lambda: box.edit_file("notes/twice.txt", "zzz", "y"), "edit text not found"),
        (lambda: box.read_file("notes"), "reading a directory"),
    ):
        _expect_refused(call, why)


def file_tools_are_confined(box: Sandbox) -> None:
    box.exec("mkdir -p /workspace/trap && ln -sfn /etc /workspace/trap/etc && ln -sfn ../.. /workspace/trap/up")
    for path in ("/etc/passwd", "../etc/passwd", "trap/etc/passwd", "trap/up/etc/hostname", "/workspace/../etc"):
        _expect_refused(functools.partial(box.read_file, path), f"read of {path}")
    _expect_refused(lambda: box.write_file("trap/etc/evil", "x"), "write through a symlink out of the roots")
    _expect(box.exec("test -e /etc/evil").exit_code != 0, "nothing was written outside")
    box.exec("ln -sfn /workspace/notes /workspace/trap/inside")
    box.write_file("trap/inside/via-link.txt", "ok")
    _expect(box.read_file("notes/via-link.txt") == "ok", "a symlink that stays inside the roots is followed")


def _expect_refused(call: Callable[[], object], why: str) -> None:
    try:
        call()
    except FileToolError:
        return
    raise AssertionError(f"{why}: expected FileToolError")


def snapshot_diff(box: Sandbox) -> None:
    box.exec("mkdir -p /workspace/snap && echo a > /workspace/snap/keep && echo b > /workspace/snap/gone")
    before = box.snapshot()
    box.exec("cd /workspace/snap && echo changed > keep && rm gone && echo new > made && chmod 600 made")
    after = box.snapshot()
    changes = {(c.path, c.change) for c in diff_snapshots(before, after)}
    expected = {
        ("/workspace/snap/keep", "modified"),
        ("/workspace/snap/gone", "deleted"),
        ("/workspace/snap/made", "created"),
    }
    _expect(expected <= changes, f"snapshot diff: {sorted(changes)}")
    made = after["/workspace/snap/made"]
    _expect(made.mode == "0600" and made.size == 4 and made.sha256 is not None, f"entry details: {made}")
    _expect(diff_snapshots(after, box.snapshot()) == [], "no change, no diff")
    only = box.snapshot(["/workspace/snap", "/no/such/root", "/workspace/snap/made"])
    _expect(sorted(only) == ["/workspace/snap/keep", "/workspace/snap/made"], f"exactly the roots asked: {only}")
    _expect(box.snapshot(["/no/such/root"]) == {}, "a missing root is empty")


def seeding(box: Sandbox) -> None:
    blob = bytes(range(256))
    box.seed(
        Fixtures(
            files=[
                FileFixture(path="seed/app.conf", content="port=8080\n", mode="0640"),
                FileFixture(
                    path="/workspace/seed/blob.bin", content=base64.b64encode(blob).decode(), encoding="base64"
                ),
                FileFixture(path="seed/root-only.txt", content="secret", mode="0600", owner="root"),
            ],
            dirs=[DirFixture(path="seed/logs", mode="0700")],
            setup_script="echo from-setup > /workspace/seed/setup.txt && id -u > /workspace/seed/setup-uid",
        )
    )
    r = box.exec("cd seed && stat -c '%n %a %U' app.conf logs root-only.txt && sha256sum blob.bin && cat setup-uid")
    expected = "app.conf 640 agent\nlogs 700 agent\nroot-only.txt 600 root\n"
    _expect(r.stdout.startswith(expected), "modes and owners", r)
    _expect(hashlib.sha256(blob).hexdigest() in r.stdout and r.stdout.endswith("0\n"), "binary and setup", r)
    if profile_of(box) == "user":
        _expect(box.exec("cat seed/root-only.txt").exit_code != 0, "the agent cannot read a root-only fixture")
    noisy = "echo 'cause: no such thing' >&2; for i in $(seq 2 40); do echo line $i >&2; done; exit 7"
    failing: list[tuple[Fixtures, tuple[str, ...]]] = [
        (Fixtures(setup_script=noisy), ("cause: no such thing", "line 40", "exit 7")),
        (Fixtures(files=[FileFixture(path="seed/app.conf/under-a-file", content="x")]), ("seed/app.conf/under",)),
    ]
    for fixtures, shown in failing:
        try:
            box.seed(fixtures)
        except SetupScriptFailed as exc:
            _expect(all(text in str(exc) for text in shown), f"setup failure names its cause: {exc}")
            _expect("line 20" not in str(exc), f"only the first and last lines: {exc}")
        else:
            raise AssertionError("failing fixtures or setup must raise SetupScriptFailed")


def no_network(box: Sandbox) -> None:
    r = box.exec(
        "python3 -c \"import socket; s=socket.socket(); s.settimeout(3); s.connect(('1.1.1.1', 80))\"", timeout_s=10
    )
    _expect(r.exit_code != 0 and "unreachable" in r.stderr.lower(), "no route out", r)


def info_is_complete(box: Sandbox) -> None:
    info = box.info
    _expect(info.image_id.startswith("sha256:") and info.image_id == box.image_id, f"image id: {info}")
    _expect({"network", "memory_mb", "pids_limit"} <= info.settings.keys(), f"settings recorded: {info}")


CHECKS: tuple[Check, ...] = (
    Check("exec output and exit code", exec_output_and_exit),
    Check("exec is stateless", exec_is_stateless),
    Check("session keeps cwd, env and functions", session_keeps_state),
    Check("agent is unprivileged", agent_is_unprivileged, profiles=("user",)),
    Check("agent is root, the root filesystem writable", agent_is_root, profiles=("admin",)),
    Check("exact exit codes and timeouts", exact_exit_codes),
    Check("stdin is closed", stdin_is_closed),
    Check("background jobs do not block", background_jobs_do_not_block),
    Check("output is capped and counted", output_is_capped),
    Check("binary output is valid text", binary_output_is_valid_text),
    Check("imitated end marker is plain output", imitated_marker_is_output),
    Check("file tools round trip", file_tools_round_trip),
    Check("file tools are confined", file_tools_are_confined, profiles=("user",)),
    Check("snapshot and diff", snapshot_diff),
    Check("fixture seeding", seeding),
    Check("no network", no_network),
    Check("info records image and settings", info_is_complete),
)


def run_checks(box: Sandbox, *, quick_only: bool = True) -> list[tuple[str, str | None, float]]:
    """Run the checks of the sandbox's profile on it; (name, failure or None, seconds) each."""
    outcomes = []
    profile = profile_of(box)
    for check in CHECKS:
        if (quick_only and not check.quick) or profile not in check.profiles:
            continue
        started = time.monotonic()
        try:
            check.run(box)
            failure = None
        except (AssertionError, FileToolError, SandboxError) as exc:
            failure = f"{type(exc).__name__}: {exc}"
        outcomes.append((check.name, failure, time.monotonic() - started))
    return outcomes
