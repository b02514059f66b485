"""The host side of the driver protocol without a container: framing of split chunks, start tokens, markers,
head-and-tail capture."""

from __future__ import annotations

import pytest

from ise.sandbox.channel import Capture, _Stream

START, MARKER = b"5f3a" * 8 + b"\n", b"0123456789abcdef" * 2


def feed_in_chunks(stream: _Stream, data: bytes, size: int) -> None:
    for at in range(0, len(data), size):
        stream.feed(data[at : at + size])


@pytest.mark.parametrize("size", [1, 2, 7, 33, 1000])
def test_stream_finds_start_and_marker_across_any_split(size: int) -> None:
    capture = Capture(1000)
    stream = _Stream(capture, MARKER, START)
    stale = b"late output of an earlier background job\n"
    body = b"line one\nno newline at the end"
    feed_in_chunks(stream, stale + START + body + MARKER + b" 3 1.5 2.5 - /work dir\nafter", size)
    assert capture.data() == body
    assert stream.line == b" 3 1.5 2.5 - /work dir"


def test_stream_without_start_token_keeps_nothing() -> None:
    capture = Capture(1000)
    stream = _Stream(capture, MARKER, START)
    stream.feed(b"stale only")
    stream.flush()
    assert (capture.data(), stream.started, stream.line) == (b"", False, None)


def test_near_miss_markers_are_output() -> None:
    capture = Capture(1000)
    stream = _Stream(capture, MARKER, None)
    near = MARKER[:-1] + b"x " + MARKER[1:] + b" 0 1.0 2.0 - /\n"
    stream.feed(near + MARKER + b"0\n")
    assert capture.data() == near


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
