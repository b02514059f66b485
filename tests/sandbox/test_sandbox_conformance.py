"""The Sandbox protocol's conformance suite (ise/sandbox/conformance.py), run on the Docker backend, plus the
protocol details the suite leaves to configuration (merged stderr) or to a fresh sandbox (session restarts)."""

from __future__ import annotations

import time

import pytest
from sandbox_support import PROFILES, OpenSandbox

from ise.records import Profile
from ise.sandbox.base import FileEntry, diff_snapshots
from ise.sandbox.conformance import CHECKS, Check
from ise.sandbox.docker import DockerSandbox

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module", params=PROFILES)
def profile(request: pytest.FixtureRequest) -> Profile:
    value: Profile = request.param
    return value


@pytest.mark.parametrize(
    ("profile", "check"),
    [(profile, check) for profile in PROFILES for check in CHECKS if profile in check.profiles],
    ids=[f"{profile}-{check.name}" for profile in PROFILES for check in CHECKS if profile in check.profiles],
    indirect=["profile"],
)
def test_conformance(check: Check, shared_box: DockerSandbox) -> None:
    check.run(shared_box)


def test_merged_stderr_keeps_write_order(open_box: OpenSandbox) -> None:
    with open_box(merge_stderr=True) as box:
        for run in (box.exec, box.run):
            r = run("echo one; echo two >&2; echo three")
            assert (r.stdout, r.stderr) == ("one\ntwo\nthree\n", "")


def test_session_survives_exit_and_break(shared_box: DockerSandbox) -> None:
    shared_box.run("cd /tmp && export KEEP=1")
    r = shared_box.run("echo bye; exit 9")
    assert (r.stdout, r.exit_code, r.session_reset) == ("bye\n", 9, True)
    r = shared_box.run('pwd; echo "${KEEP:-gone}"')
    assert (r.stdout, r.session_reset) == ("/workspace\ngone\n", False)
    r = shared_box.run("break 5; echo after")
    assert r.exit_code == 0
    assert shared_box.run("echo still-here").stdout == "still-here\n"


def test_session_restarts_after_a_builtin_loop_times_out(shared_box: DockerSandbox) -> None:
    shared_box.run("cd /tmp")
    r = shared_box.run("while :; do :; done", timeout_s=1)
    assert (r.timed_out, r.exit_code, r.session_reset) == (True, 137, True)
    assert r.duration_s < 8
    r = shared_box.run("pwd")
    assert (r.stdout, r.exit_code) == ("/workspace\n", 0)


def test_session_restarts_when_its_shell_is_killed_between_calls(shared_box: DockerSandbox) -> None:
    shared_box.run("true")
    shared_box.exec(f"kill -KILL {shared_box.session_pid}")
    r = shared_box.run("echo back")
    assert (r.stdout, r.session_reset) == ("back\n", True)


def test_snapshot_sees_an_edit_that_keeps_size_and_mtime(shared_box: DockerSandbox) -> None:
    """Snapshots remember the hashes of files that did not change (identity incl. ctime): an edit that restores
    size and mtime still shows, once the file is old enough to be remembered and right after a write as well."""
    shared_box.exec("mkdir -p /workspace/same && echo aaaa > /workspace/same/f && echo bbbb > /workspace/same/g")
    time.sleep(1.2)
    before = shared_box.snapshot(["/workspace/same"])
    assert shared_box.snapshot(["/workspace/same"]) == before
    shared_box.exec('cd /workspace/same && m=$(stat -c %y f) && echo cccc > f && touch -d "$m" f')
    after = shared_box.snapshot(["/workspace/same"])
    assert after["/workspace/same/f"].mtime_ns == before["/workspace/same/f"].mtime_ns
    assert [(c.path, c.change) for c in diff_snapshots(before, after)] == [("/workspace/same/f", "modified")]
    shared_box.exec("cd /workspace/same && echo dddd > f")
    assert [c.path for c in diff_snapshots(after, shared_box.snapshot(["/workspace/same"]))] == ["/workspace/same/f"]


def test_diff_compares_big_files_by_mtime() -> None:
    old = FileEntry(path="/w/big", kind="file", size=10, mode="0644", mtime_ns=1)
    assert diff_snapshots({"/w/big": old}, {"/w/big": old}) == []
    changed = diff_snapshots({"/w/big": old}, {"/w/big": old.model_copy(update={"mtime_ns": 2})})
    assert [(c.path, c.change) for c in changed] == [("/w/big", "modified")]
