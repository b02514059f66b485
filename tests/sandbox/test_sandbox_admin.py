"""The admin profile does the system work it exists for, as the agent (root in the container) through `run`, and
the user profile refuses the same operations (read-only root filesystem, no capabilities): the profiles differ as
README.md's "Sandbox profiles" says. Each profile shares one sandbox; every test uses names of its own."""

from __future__ import annotations

import time

import pytest
from sandbox_support import PROFILES

from ise.records import Fixtures, Profile
from ise.sandbox.base import diff_snapshots
from ise.sandbox.docker import DockerSandbox

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module", params=PROFILES)
def profile(request: pytest.FixtureRequest) -> Profile:
    value: Profile = request.param
    return value


def outcome(box: DockerSandbox, profile: Profile, command: str) -> str | None:
    """Run `command` in the agent's session: its stdout under admin (where it must succeed); under user it must
    fail, and None is returned."""
    r = box.run(command)
    if profile == "user":
        assert r.exit_code != 0, f"the user profile allowed: {command}: {r}"
        return None
    assert r.exit_code == 0, f"the admin profile refused: {command}: {r}"
    return r.stdout


def test_users_and_groups(shared_box: DockerSandbox, profile: Profile) -> None:
    done = outcome(
        shared_box,
        profile,
        "groupadd devs && useradd --create-home --shell /bin/bash alice && groupadd ops && "
        "usermod -aG ops alice && gpasswd -a alice devs && id -nG alice",
    )
    if done is not None:
        message, groups = done.splitlines()
        assert message == "Adding user alice to group devs"
        assert sorted(groups.split()) == ["alice", "devs", "ops"]
        group = shared_box.exec("grep -E '^(devs|ops):' /etc/group").stdout
        assert sorted(line.split(":")[0] + ":" + line.split(":")[3] for line in group.split()) == [
            "devs:alice",
            "ops:alice",
        ]
        assert shared_box.exec("stat -c %U /home/alice").stdout == "alice\n"


def test_shared_directory_with_setgid_and_sticky_bits(shared_box: DockerSandbox, profile: Profile) -> None:
    done = outcome(
        shared_box,
        profile,
        "groupadd team && mkdir -p /srv/shared && chgrp team /srv/shared && chmod 3770 /srv/shared && "
        "stat -c '%a %U %G' /srv/shared",
    )
    if done is not None:
        assert done == "3770 root team\n"  # setgid on a group root is not in: needs CAP_FSETID


def test_script_installed_into_usr_local_bin_runs_by_name(shared_box: DockerSandbox, profile: Profile) -> None:
    done = outcome(
        shared_box,
        profile,
        "printf '#!/bin/sh\\necho tool says $1\\n' > /tmp/tool.sh && "
        "install -m 0755 /tmp/tool.sh /usr/local/bin/isetool && isetool hi",
    )
    assert done in (None, "tool says hi\n")


def test_config_in_etc_is_edited(shared_box: DockerSandbox, profile: Profile) -> None:
    done = outcome(
        shared_box,
        profile,
        "sed -i 's/^UMASK.*/UMASK 027/' /etc/login.defs && grep '^UMASK' /etc/login.defs",
    )
    assert done in (None, "UMASK 027\n")


def test_service_started_by_the_setup_is_found_and_stopped(shared_box: DockerSandbox, profile: Profile) -> None:
    name = f"isesvc-{profile}"
    pattern = f"[/]tmp/{name}"  # (matches the service, not a command line that names it)
    shared_box.seed(
        Fixtures(
            setup_script=f"printf '#!/bin/bash\\nwhile :; do sleep 1; done\\n' > /tmp/{name} && chmod 755 /tmp/{name} "
            f"&& setsid -f setpriv --reuid=daemon --regid=daemon --init-groups /tmp/{name} >/dev/null 2>&1"
        )
    )
    found = shared_box.run(f"ps -eo user=,args= | grep '{pattern}'")
    assert found.stdout.split() == ["daemon", "/bin/bash", f"/tmp/{name}"]
    # A timed-out command's sweep kills what the command started, never the older service nor ise's own helpers.
    shared_box.write_file("before-timeout.txt", "x")
    helpers = sorted(helper.pid for helper in shared_box._helpers.values())
    assert len(helpers) == 2  # the agent's (file tools) and root's (snapshots, seeding)
    timed_out = shared_box.run("sleep 100 & setsid sleep 101 & (sleep 102 &); sleep 103", timeout_s=1)
    assert timed_out.timed_out
    assert sorted(helper.pid for helper in shared_box._helpers.values()) == helpers
    assert shared_box.exec(f"kill -0 {' '.join(map(str, helpers))}", user="root").exit_code == 0
    assert shared_box.read_file("before-timeout.txt") == "x"
    assert shared_box.exec("pgrep -f 'slee[p] 10[0-3]'", user="root").exit_code == 1
    assert shared_box.exec(f"pgrep -f '{pattern}'", user="root").exit_code == 0, "the service survived the sweep"
    done = outcome(shared_box, profile, f"kill $(pgrep -f '{pattern}') && sleep 0.5 && ! pgrep -f '{pattern}'")
    if done is None:
        assert shared_box.exec(f"pkill -f '{pattern}'", user="root").exit_code == 0
    assert shared_box.exec(f"sleep 0.5; pgrep -f '{pattern}'", user="root").exit_code == 1


def test_log_rotated_as_root(shared_box: DockerSandbox, profile: Profile) -> None:
    shared_box.seed(
        Fixtures(
            setup_script="mkdir -p /tmp/rotlog; "
            "printf 'old line\\n' > /tmp/rotlog/app.log; chown daemon:daemon /tmp/rotlog/app.log; "
            "chmod 0640 /tmp/rotlog/app.log"
        )
    )
    done = outcome(
        shared_box,
        profile,
        "mkdir -p /var/log/app && cp -p /tmp/rotlog/app.log /var/log/app/app.log && cd /var/log/app && ("
        "mv app.log app.log.1 && install -o daemon -g daemon -m 0640 /dev/null app.log && gzip app.log.1 && "
        "cp -p app.log app.log.copy && truncate -s 0 app.log.copy && stat -c '%n %a %U %s' app.log app.log.1.gz && "
        "zcat app.log.1.gz); r=$?; cd /workspace; (exit $r)",
    )
    if done is not None:
        lines = done.splitlines()
        assert lines[0] == "app.log 640 daemon 0"
        assert lines[1].startswith("app.log.1.gz 640 daemon ")
        assert lines[2] == "old line"


def test_local_package_built_and_installed_with_dpkg(shared_box: DockerSandbox, profile: Profile) -> None:
    done = outcome(
        shared_box,
        profile,
        "rm -rf /tmp/pkg && mkdir -p /tmp/pkg/DEBIAN /tmp/pkg/usr/local/bin && "
        "printf 'Package: ise-hello\\nVersion: 1.0\\nArchitecture: all\\nMaintainer: ise <ise@example.org>\\n"
        "Description: test\\n' > /tmp/pkg/DEBIAN/control && "
        "printf '#!/bin/sh\\necho hello from the package\\n' > /tmp/pkg/usr/local/bin/ise-hello && "
        "chmod 0755 /tmp/pkg/usr/local/bin/ise-hello && "
        "dpkg-deb --build --root-owner-group /tmp/pkg /tmp/ise-hello.deb >/dev/null && "
        "dpkg -i /tmp/ise-hello.deb >/dev/null && ise-hello && dpkg-query -W -f '${Status}\\n' ise-hello",
    )
    assert done in (None, "hello from the package\ninstall ok installed\n")


def test_system_changes_show_in_the_snapshot(shared_box: DockerSandbox, profile: Profile) -> None:
    before = shared_box.snapshot()
    done = outcome(shared_box, profile, "useradd snapuser && mkdir -p /srv/snap && touch /usr/local/bin/snapped")
    changes = {(c.path, c.change) for c in diff_snapshots(before, shared_box.snapshot())}
    if done is None:
        assert changes == set()
    else:
        expected = {
            ("/etc/passwd", "modified"),
            ("/etc/group", "modified"),
            ("/etc/shadow", "modified"),
            ("/srv/snap", "created"),
            ("/usr/local/bin/snapped", "created"),
        }
        assert expected <= changes, sorted(changes)
    assert all(path.startswith("/etc/") for path in shared_box.snapshot(["/etc"]))


def test_snapshots_of_system_roots_record_links_and_special_files(shared_box: DockerSandbox) -> None:
    shared_box.exec("mkfifo /tmp/ise-fifo; ln -sfn /tmp/ise-fifo /tmp/ise-link; ln -sfn /etc /tmp/ise-etc", user="root")
    started = time.monotonic()
    entries = shared_box.snapshot(["/etc", "/etc/ssl", "/tmp/ise-fifo", "/tmp/ise-link", "/tmp/ise-etc", "/nowhere"])
    assert time.monotonic() - started < 5  # the FIFO is never opened
    assert entries["/etc/mtab"].kind == "symlink"
    assert entries["/etc/mtab"].target is not None
    assert entries["/etc/passwd"].sha256 is not None  # root-only files are read too (root's helper)
    assert entries["/etc/shadow"].sha256 is not None
    assert (entries["/tmp/ise-fifo"].kind, entries["/tmp/ise-fifo"].sha256) == ("other", None)
    assert (entries["/tmp/ise-link"].kind, entries["/tmp/ise-etc"].kind) == ("symlink", "symlink")  # not followed
    assert not [path for path in entries if path.startswith("/tmp/ise-etc/")]
    assert len([path for path in entries if path.startswith("/etc/ssl/")]) == len(shared_box.snapshot(["/etc/ssl"]))
    everything = shared_box.snapshot(["/"])
    assert not [path for path in everything if path.startswith(("/proc/", "/sys/", "/dev/"))]
    assert "/etc/passwd" in everything
