"""The agent's persistent shell against what the agent can do to it, and what the agent sees of ise, under both
profiles (`user`: the agent unprivileged; `admin`: root).

Whatever a command does to its shell (file descriptors, limits, traps, options, functions and aliases named like
the builtins ise's loop uses, exec, exit), the call returns with the command's own exit code, the next command
runs at once, and no byte of the protocol reaches a result; a shell that cannot go on is replaced and the result
says so (session_reset). And the machine looks like an ordinary one: no ise command lines, variables or functions,
a real parent for the agent's shell.
"""

from __future__ import annotations

import hashlib
import re
import time

import pytest
from sandbox_support import PROFILES
from test_sandbox_adversarial import ESCAPES

from ise.records import Profile
from ise.sandbox.base import ExecResult
from ise.sandbox.docker import DockerSandbox

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module", params=PROFILES)
def profile(request: pytest.FixtureRequest) -> Profile:
    value: Profile = request.param
    return value


PROTOCOL = ("POSIXLY_CORRECT", "\\builtin", "builtin unset", "builtin eval", "builtin mapfile", "1>&60 2>&61")
"""Pieces of the loop and of the wrapper every command is evaluated in: never in a result."""
TOKEN = re.compile(r"\b[0-9a-f]{32}\b")
"""What the old protocol's start and end markers looked like."""


def clean(box: DockerSandbox, *results: ExecResult, tokens: bool = True) -> None:
    session = box._session
    tag = f"_{session.tag}" if session is not None and session.tag else None
    for r in results:
        for text in (r.stdout, r.stderr):
            assert not any(piece in text for piece in PROTOCOL), r
            assert tag is None or tag not in text, r
            assert not tokens or not TOKEN.search(text), r


def fresh_session(box: DockerSandbox) -> None:
    """End the session shell whatever state the last case left it in; the next call starts a new one."""
    if box.session_pid:
        box.exec(f"kill -9 {box.session_pid}", user="root")


# name: (command, its exit code, whether it ends the shell)
CASES: dict[str, tuple[str, int, bool]] = {
    "exec >/dev/null": ("exec >/dev/null", 0, False),
    "exec 2>&1": ("exec 2>&1; echo to-stdout >&2", 0, False),
    "exec 2>/dev/null": ("exec 2>/dev/null", 0, False),
    "exec 2>&-": ("exec 2>&-", 0, False),
    "exec 1>&-": ("exec 1>&-", 0, False),
    "exec 0</dev/zero": ("exec 0</dev/zero", 0, False),
    "the driver's fd numbers": ("exec 60>&- 61>&- 62>&- 63>/dev/null 3>/tmp/three", 0, False),
    "ulimit -n 4": ("ulimit -n 4", 0, True),
    "ulimit -S -n 20": ("ulimit -S -n 20", 0, True),
    "ulimit -u 1": ("ulimit -u 1", 0, False),
    "ulimit -f 0": ("ulimit -f 0", 0, False),
    "ulimit -v": ("ulimit -v 400000", 0, False),
    "exec python3": ("exec python3", 0, True),
    "exec bash": ("exec bash", 0, True),
    "trap EXIT": ("trap 'echo bye' EXIT", 0, False),
    "trap DEBUG": ("trap ':' DEBUG", 0, False),
    "trap ERR": ("trap 'echo err' ERR", 0, False),
    "trap RETURN": ("trap 'echo ret' RETURN", 0, False),
    "set -euo pipefail": ("set -euo pipefail", 0, False),
    "set -x": ("set -x", 0, False),
    "set -v": ("set -v", 0, False),
    "PROMPT_COMMAND": ("PROMPT_COMMAND='echo prompt'; PS1='$ '", 0, False),
    "shopt": ("shopt -s extdebug extglob nullglob failglob nocasematch lastpipe xpg_echo", 0, False),
    "set -o posix": ("set -o posix", 0, False),
    "aliases": (
        "shopt -s expand_aliases; alias builtin='echo hijacked' eval='echo hijacked' printf='echo hijacked' "
        "read='echo hijacked' mapfile='echo hijacked' unset='echo hijacked' exit='echo hijacked' "
        "set='echo hijacked' shopt='echo hijacked' '[['='echo hijacked' '{'='echo hijacked' timeout='echo hijacked'",
        0,
        False,
    ),
    "functions": (
        "printf() { :; }; read() { :; }; builtin() { :; }; eval() { :; }; timeout() { :; }; unset() { :; }; "
        "set() { :; }; exit() { :; }; shopt() { :; }; command() { :; }; trap() { :; }",
        0,
        False,
    ),
    "cd into a deleted directory": ("mkdir -p /tmp/gone && cd /tmp/gone && rmdir /tmp/gone", 0, False),
    "unset PATH": ("unset PATH", 0, False),
    "IFS": ("IFS=0123456789/_", 0, False),
    "readonly": ("readonly PS4 TMOUT IFS", 0, False),
    "continue": ("continue; echo never", 0, False),
    "break": ("break 5; echo never", 0, True),
    "exit 3": ("exit 3", 3, True),
    "kill its own shell": ("kill -9 $$", 137, True),
    "kill its driver": ("kill -9 $PPID; sleep 1", 137, True),
    "close every fd": ('for fd in /proc/$$/fd/*; do eval "exec ${fd##*/}>&-"; done', 0, True),
}


@pytest.mark.parametrize("name", list(CASES))
def test_the_shell_survives_what_a_command_does_to_it(shared_box: DockerSandbox, name: str) -> None:
    command, code, ends = CASES[name]
    fresh_session(shared_box)
    shared_box.run("cd /tmp")
    r = shared_box.run(command, timeout_s=10)
    assert (r.exit_code, r.timed_out, r.session_reset) == (code, False, ends), r
    assert r.duration_s < 5, r
    after = shared_box.run("echo ok")
    assert (after.stdout, after.exit_code, after.timed_out) == ("ok\n", 0, False), after
    assert not after.session_reset, after  # the call that ended the shell said so
    assert after.duration_s < 2, after
    assert after.cwd == ("/workspace" if ends else "/tmp/gone" if "deleted" in name else "/tmp"), after
    if name == "exec 2>&1":
        assert (r.stdout, r.stderr) == ("to-stdout\n", "")
        assert shared_box.run("echo err >&2").stderr == "err\n"  # each command gets its own stderr again
    if name == "set -x":
        assert after.stderr == "+++ echo ok\n"
    if name == "trap ERR":
        assert shared_box.run("false").stdout == "err\n"  # once, as in a terminal
    clean(shared_box, r, after)
    fresh_session(shared_box)


@pytest.mark.parametrize("name", list(CASES))
def test_the_shell_survives_it_twice_in_a_row(shared_box: DockerSandbox, name: str) -> None:
    """The same command again in the shell it left (or in its replacement), then the next command."""
    command, code, _ = CASES[name]
    fresh_session(shared_box)
    first = shared_box.run(command, timeout_s=10)
    second = shared_box.run(command, timeout_s=10)
    assert (first.exit_code, second.exit_code) == (code, code), (first, second)
    assert shared_box.run("echo ok").stdout == "ok\n"
    clean(shared_box, first, second)
    fresh_session(shared_box)


def test_exec_of_a_long_program_times_out_and_the_next_command_runs_at_once(shared_box: DockerSandbox) -> None:
    fresh_session(shared_box)
    r = shared_box.run("exec sleep 1000", timeout_s=2)
    assert (r.exit_code, r.timed_out, r.session_reset) == (137, True, True), r
    after = shared_box.run("echo ok")
    assert (after.stdout, after.duration_s < 2, after.session_reset) == ("ok\n", True, False)


@pytest.mark.parametrize("command", ["shopt -s extdebug; trap false DEBUG", "set -n"])
def test_a_shell_told_to_run_nothing_costs_one_timeout(shared_box: DockerSandbox, command: str) -> None:
    """With extdebug, a DEBUG trap that fails skips every command, the loop's own too; `set -n` runs none. A
    terminal would be as stuck: that call waits out its timeout, and the shell is replaced."""
    fresh_session(shared_box)
    r = shared_box.run(command, timeout_s=2)
    assert (r.timed_out, r.session_reset) == (True, True), r
    assert shared_box.run("echo ok").stdout == "ok\n"


def test_a_long_command_reaches_the_shell_whole_and_waiting_outlasts_tmout(shared_box: DockerSandbox) -> None:
    """Longer than a pipe holds, every kind of character; then a TMOUT that would end a shell waiting in `read`."""
    fresh_session(shared_box)
    body = "".join(f"{i:06d} \u00e9\u4e2d ' \\ \\x27 $HOME `id` \t;\n" for i in range(15000))
    r = shared_box.run(f"cat > /tmp/long <<'EOF'\n{body}EOF\nsha256sum < /tmp/long; TMOUT=1", timeout_s=30)
    assert r.stdout.split()[:1] == [hashlib.sha256(body.encode()).hexdigest()], r
    time.sleep(2)
    after = shared_box.run("echo ok")
    assert (after.stdout, after.session_reset) == ("ok\n", False)


def test_a_timeout_sweep_spares_every_process_of_ise(shared_box: DockerSandbox) -> None:
    """Their command lines are neutral, so the sweep knows them by pid (root's too, when the agent is root)."""
    fresh_session(shared_box)
    shared_box.run("true")
    shared_box.exec("true")
    shared_box.exec("true", user="root")
    shared_box.list_dir(".")
    shared_box.snapshot()
    ours = shared_box.ise_pids()
    assert len(ours) == 6  # the session's driver and shell, a fresh driver of each user, both helpers
    r = shared_box.run("sleep 100 & setsid sleep 101 & (sleep 102 &); sleep 103", timeout_s=1)
    assert (r.timed_out, r.session_reset) == (True, False), r
    assert shared_box.ise_pids() == ours
    assert shared_box.exec(f"kill -0 {' '.join(map(str, ours))}", user="root").exit_code == 0
    assert shared_box.exec("pgrep -f 'slee[p] 10[0-3]'", user="root").exit_code == 1


def test_what_the_agent_sees_is_an_ordinary_machine(shared_box: DockerSandbox) -> None:
    fresh_session(shared_box)
    shared_box.exec("true")  # the agent's fresh driver and both helpers are running too
    shared_box.list_dir(".")
    shared_box.snapshot()
    own = shared_box.run("declare -f; declare -F; alias; trap -p")
    assert (own.stdout, own.stderr, own.exit_code) == ("", "", 0), own
    looks = shared_box.run(
        "ps -eo pid,ppid,user,args; cat /proc/[0-9]*/cmdline | tr '\\0' ' '; echo; set; env; "
        "cat /proc/[0-9]*/environ 2>/dev/null | tr '\\0' '\\n'"
    )
    assert looks.exit_code == 0, looks
    for mark in ("__ise", "ISE-READY", "ise_helper", "retitle", "import json", "/dev/fd/3", "-I -S", "noprofile"):
        assert mark not in looks.stdout + looks.stderr, mark
    clean(shared_box, looks, tokens=False)
    parent = shared_box.run('echo "$PPID"; ps -o args= -p "$PPID"; cat /proc/$PPID/cmdline; echo')
    ppid, args, cmdline = parent.stdout.splitlines()
    assert int(ppid) > 1
    assert (args.strip(), cmdline) == ("python3", "python3\0")
    assert int(ppid) in shared_box.ise_pids()


PROPERTY_COMMANDS = (
    "echo out; echo err >&2; exit 3",
    "(exit 124)",
    "bash -c 'kill -9 $$'",
    "sleep 30 & echo hi",
    "read -r line; echo read=$?; cat",
    "head -c 4096 /dev/urandom | od -An -tx1 | head -3",
    "printf 'ISE-READY 1\\n0123456789abcdef0123456789abcdef 0 1.0 2.0 - /tmp\\n'",
    "python3 -c 'import sys; sys.stdout.buffer.write(bytes(range(256)))'",
    "vi notes.txt; less /etc/passwd; python3; sudo id",
    "cat /proc/$$/cmdline /proc/$PPID/cmdline | tr '\\0' ' '; ls -l /proc/$$/fd",
    "set -x; ls /nonexistent; set +x",
    "trap 'echo err $BASH_COMMAND' ERR; false; trap - ERR",
    "trap 'echo dbg $BASH_COMMAND' DEBUG; echo x; trap - DEBUG",
    "cat <<EOF\nunterminated",
    "echo 'unbalanced",
    "}; fi; done; )",
    "exec 2>&1; echo mixed >&2",
    "yes | head -c 100000 | tail -c 10",
)
"""Kinds of command the adversarial suite tries (with its escapes of root in a container, below): none may show a
byte of the protocol in its result."""


@pytest.mark.parametrize("mode", ["run", "exec"])
def test_no_result_holds_a_byte_of_the_protocol(shared_box: DockerSandbox, mode: str) -> None:
    fresh_session(shared_box)
    run = shared_box.run if mode == "run" else shared_box.exec
    for command in (*PROPERTY_COMMANDS, *ESCAPES.values()):
        r = run(command, timeout_s=15)
        assert not r.timed_out, r
        clean(shared_box, r, tokens="0123456789abcdef" not in command and "od -An" not in command)
    assert shared_box.run("echo ok").stdout == "ok\n"


def test_output_that_imitates_the_protocol_stays_output(shared_box: DockerSandbox) -> None:
    """Frames like the driver's, status reports like the shell's, on stdout, stderr, and the fd the status uses."""
    fresh_session(shared_box)
    shared_box.run("true")
    frame = 'printf \'D\\0\\0\\0\\x20{"rc": 0, "t0": 0, "t1": 0}\''
    status = "printf '0 /etc\\0'"
    for command, fd in ((frame, 1), (frame, 2), (status, 1), (status, 2), (f"exec 62>&1; {status}", 62)):
        r = shared_box.run(f"{command} >&{fd}; echo after; (exit 5)")
        assert (r.exit_code, r.session_reset, r.cwd) == (5, False, "/workspace"), r
        assert r.stdout.endswith("after\n"), r
        assert ("rc" if command == frame else "/etc") in r.stdout + r.stderr, r
    assert shared_box.run("echo ok").stdout == "ok\n"
