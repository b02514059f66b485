"""The host's side of the driver protocol without a container (frames split anywhere, head-and-tail capture), and
the session driver's own pieces run by this machine's bash (quoting, the loop's renamed variables)."""

from __future__ import annotations

import json
import re
import struct
import subprocess

import pytest

from ise.sandbox.channel import Capture, Channel, Reply
from ise.sandbox.incontainer import shell


def frame(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">cL", kind, len(payload)) + payload


def channel() -> Channel:
    return Channel(None, "", user="agent", mode="session", merge=False, workdir="/workspace")


@pytest.mark.parametrize("size", [1, 2, 7, 33, 1000])
def test_frames_split_anywhere_make_one_reply(size: int) -> None:
    done = {"rc": 3, "t0": 1.5, "t1": 2.5, "cwd": "/work dir", "exited": False, "started": True, "timed_out": False}
    stream = frame(b"B", b"") + frame(b"O", b"line one\n") + frame(b"E", b"oops\n") + frame(b"O", b"no newline")
    stream += frame(b"D", json.dumps(done).encode()) + frame(b"O", b"a later job's output")
    link, reply = channel(), Reply(Capture(1000), Capture(1000))
    for at in range(0, len(stream), size):
        link._buf += stream[at : at + size]
        link._take(reply)
    assert (reply.stdout.data(), reply.stderr.data()) == (b"line one\nno newline", b"oops\n")
    assert (reply.done, reply.begun, reply.exit_code, reply.cwd, reply.elapsed) == (True, True, 3, "/work dir", 1.0)


def test_a_shell_gone_before_it_read_the_command_is_not_begun() -> None:
    done = {"rc": 137, "t0": 0, "t1": 0, "exited": True, "started": False}
    link, reply = channel(), Reply(Capture(100), Capture(100))
    link._buf += frame(b"B", b"") + frame(b"D", json.dumps(done).encode())
    link._take(reply)
    assert (reply.done, reply.exited, reply.begun) == (True, True, False)


def test_output_that_imitates_frames_is_output() -> None:
    fake = frame(b"D", b'{"rc": 0, "t0": 0, "t1": 0}')
    link, reply = channel(), Reply(Capture(1000), Capture(1000))
    link._buf += frame(b"O", fake)
    link._take(reply)
    assert (reply.stdout.data(), reply.done) == (fake, False)


def test_quoting_round_trips_every_byte_through_bash() -> None:
    text = bytes(range(1, 256)) + "\n é ' \\ $HOME `x` $(y)\n".encode()
    printed = subprocess.run(["bash", "-c", f"printf %s {shell.quoted(text)}"], capture_output=True, check=True)
    assert printed.stdout == text


def test_the_loop_names_only_its_own_variables() -> None:
    loop, wrap = shell.with_names(shell.LOOP, "0a1b2c"), shell.with_names(shell.WRAP, "0a1b2c")
    assert not re.search("@[SPAC]", loop + wrap)
    names = {word.rstrip(";") for word in wrap.split() if word.startswith("_0a1b2c")}
    assert names == {"_0a1b2cc", "_0a1b2cs", "_0a1b2cp", "_0a1b2ca"}
    assert loop.index("\n") == len(loop) - 1


def test_capture_keeps_head_and_tail_and_counts_all() -> None:
    capture = Capture(10)
    for chunk in (b"abc", b"defgh", b"ijklmnopq", b"rstuvwxyz"):
        capture.add(chunk)
    assert capture.total == 26
    assert capture.truncated
    assert capture.data() == b"abcde\n[... 16 bytes omitted ...]\nvwxyz"
    small = Capture(10)
    small.add(b"0123456789")
    assert (small.truncated, small.data()) == (False, b"0123456789")
