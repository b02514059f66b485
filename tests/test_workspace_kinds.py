"""The kinds of things an intent's workspace names (ise/workspace_kinds.py): read from its words on paper, then
tested in real sandboxes after a setup, each kind once as it should be and once faked the way small models fake it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from simulate_support import docker_sandboxes, good_plan, intent

from ise.config import SimulateConfig
from ise.plan_validation import validate
from ise.records import FileFixture, Plan
from ise.sandbox.base import Sandbox
from ise.sandbox.provider import SandboxFactory
from ise.workspace_kinds import claims, kind_problems


def claimed(item: str) -> list[tuple[str, str]]:
    return [(c.token, c.kind) for c in claims(intent().model_copy(update={"workspace": [item]}))]


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ("~/data holds three broken symlinks (broken_target1, broken_target2)", [("~/data", "broken_symlink")]),
        ("~/bin/tool, a symlink to ~/opt/tool/bin/tool", [("~/bin/tool", "symlink")]),
        ("a git repository at ~/proj with a README.md", [("~/proj", "git")]),
        ("shop.db, an SQLite database with an orders table", [("shop.db", "sqlite")]),
        ("a folder called reports/ containing q1.csv", [("reports/", "directory")]),
        ("~/backups/backup.tar.gz from last night", [("~/backups/backup.tar.gz", "tar")]),
        ("~/docs/manual.pdf, a PDF manual", [("~/docs/manual.pdf", "pdf")]),
        ("a Flask app (~/app/server.py) running on port 5000", [("~/app/server.py", "process")]),
        ("a cron job that runs ~/bin/backup.sh nightly", [("~/bin/backup.sh", "cron")]),
    ],
)
def test_a_kind_named_next_to_a_path_is_read(item: str, expected: list[tuple[str, str]]) -> None:
    assert claimed(item) == expected


@pytest.mark.parametrize(
    "item",
    [
        "logs directory with app.log and error.log",  # the folder is not a path it names
        "the project directory contains main.py and utils.py",
        "a script ~/bin/start.sh that starts the running service",  # start.sh is not what runs
        "report.md with a PDF attachment",  # a file does not hold things
        "logs/app.log with 500 errors",
        "a copy of the server crontab, /workspace/ops/crontab.txt",  # a file about cron, not an entry
        "a README.md with links to the docs",
    ],
)
def test_a_kind_not_clearly_said_of_a_path_is_not_read(item: str) -> None:
    assert claimed(item) == []


# --- on the real engine -------------------------------------------------------------------------------------------

STATE = r"""
set -e
mkdir -p /home/agent/k/dir && cd /home/agent/k
printf x > regular && ln -s regular link && ln -s /no/such/target broken
mkdir -p links && ln -s /no/such/target links/dangling
sqlite3 real.db 'CREATE TABLE t (x INTEGER)' && printf 'CREATE TABLE t (x INTEGER);\n' > fake.db && touch empty.db
git init -q repo && git -C repo -c user.name=dev -c user.email=dev@x commit -q --allow-empty -m go && mkdir norepo
tar -czf real.tar.gz regular && printf 'regular\n' > fake.tar.gz
printf '%%PDF-1.4\n%%EOF\n' > real.pdf && printf 'a report\n' > fake.pdf
printf 'import time\ntime.sleep(600)\n' > worker.py
nohup python3 /home/agent/k/worker.py >/dev/null 2>&1 &
"""


@pytest.fixture(scope="module")
def sandboxes() -> Iterator[SandboxFactory]:
    with docker_sandboxes() as factory:
        yield factory


@pytest.fixture(scope="module")
def seeded(sandboxes: SandboxFactory) -> Iterator[Sandbox]:
    """One sandbox holding every kind, real and faked: the tests are about the probes, not the sandbox."""
    with sandboxes("user") as sandbox:
        assert sandbox.exec(STATE, timeout_s=30, user="root").exit_code == 0
        yield sandbox


def findings(item: str, sandbox: Sandbox) -> list[str]:
    problems = kind_problems(intent().model_copy(update={"workspace": [item]}), sandbox, 20)
    assert all(p.kind == "consistency" for p in problems)
    return [p.message for p in problems]


@pytest.mark.docker
@pytest.mark.parametrize(
    ("real", "fake", "found"),
    [
        ("~/k/link is a symlink", "~/k/regular is a symlink", "/home/agent/k/regular is a regular file"),
        ("~/k/broken, a broken symlink", "~/k/link, a broken symlink", "/home/agent/k/link is a symbolic link"),
        (
            "~/k/links holds a dangling symlink",
            "~/k/dir holds a broken symlink",
            "/home/agent/k/dir is a directory with none inside",
        ),
        ("the folder ~/k/dir", "the folder ~/k/regular", "/home/agent/k/regular is a regular file"),
        (
            "~/k/real.db, an SQLite database",
            "~/k/fake.db, an SQLite database",
            "/home/agent/k/fake.db is a regular file",
        ),
        (
            "~/k/real.db, an SQLite database",
            "~/k/empty.db, an SQLite database",
            "/home/agent/k/empty.db is a regular empty file",
        ),
        (
            "a git repository at ~/k/repo",
            "a git repository at ~/k/norepo",
            "/home/agent/k/norepo is a directory with none inside",
        ),
        ("~/k/real.tar.gz", "~/k/fake.tar.gz", "/home/agent/k/fake.tar.gz is a regular file"),
        ("~/k/real.pdf", "~/k/fake.pdf", "/home/agent/k/fake.pdf is a regular file"),
    ],
)
def test_each_kind_is_tested_after_setup(real: str, fake: str, found: str, seeded: Sandbox) -> None:
    assert findings(real, seeded) == []
    [message] = findings(fake, seeded)
    assert message.startswith("the workspace says ~/k/")
    assert f"but after setup {found}; " in message


@pytest.mark.docker
def test_a_process_the_workspace_says_is_running(seeded: Sandbox) -> None:
    assert findings("~/k/worker.py running in the background", seeded) == []
    [message] = findings("~/k/server.py running in the background", seeded)
    assert message.startswith(
        "the workspace says ~/k/server.py is running, but after setup no process matches server.py"
    )


@pytest.mark.docker
def test_a_cron_entry_the_workspace_names(sandboxes: SandboxFactory) -> None:
    with sandboxes("admin") as sandbox:
        item = "a cron job that runs ~/bin/backup.sh nightly"
        [message] = findings(item, sandbox)
        assert message.startswith("the workspace says there is a cron entry for backup.sh, but after setup neither")
        install = "echo '0 2 * * * /home/agent/bin/backup.sh' | crontab -u agent -"
        assert sandbox.exec(install, timeout_s=10, user="root").exit_code == 0
        assert findings(item, sandbox) == []


def broken_link_plan(setup: str | None, files: list[FileFixture]) -> Plan:
    plan = good_plan()
    workspace = [*plan.intent.workspace, "~/data holds a broken symlink (broken_target1)"]
    fixtures = plan.fixtures.model_copy(
        update={
            "files": [*plan.fixtures.files, *files],
            "setup_script": "\n".join(s for s in (plan.fixtures.setup_script, setup) if s),
        }
    )
    return plan.model_copy(
        update={"intent": plan.intent.model_copy(update={"workspace": workspace}), "fixtures": fixtures}
    )


@pytest.mark.docker
def test_a_plan_whose_broken_symlink_is_a_regular_file_is_rejected(sandboxes: SandboxFactory) -> None:
    faked = broken_link_plan(None, [FileFixture(path="/home/agent/data", content="broken_target1 -> nowhere\n")])
    [problem] = validate(faked, sandboxes, SimulateConfig()).problems
    assert problem.kind == "consistency"
    assert problem.message.startswith(
        "the workspace says ~/data is or holds a broken symlink, but after setup /home/agent/data is a regular file;"
    )


@pytest.mark.docker
def test_the_same_plan_with_a_real_broken_symlink_passes(sandboxes: SandboxFactory) -> None:
    real = broken_link_plan(
        "mkdir -p /home/agent/data && ln -s /gone/broken_target1 /home/agent/data/broken_target1", []
    )
    assert validate(real, sandboxes, SimulateConfig()).problems == []
