"""No container outlives its run: labels, clean-up on exit and on signals, and a reaper for orphans.

Four layers, because each one alone has a hole:
1. every sandbox is removed in a `finally` (open_sandbox);
2. atexit and SIGINT/SIGTERM handlers remove whatever this process still has open (a worker thread stuck in a
   command would otherwise delay exit until its timeout);
3. kill -9 skips both, so each container carries its owner (host, pid, process start time) and the first sandbox a
   process opens reaps the containers of owners that are gone; `ise sandbox gc` does the same on demand;
4. the container's main process is `sleep <ttl>`: when it ends the container stops and removes itself (the engine
   auto-removes it), whatever happened to ise.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

LABEL_MANAGED = "ise.sandbox"
LABEL_RUN = "ise.run"
LABEL_OWNER = "ise.owner"
"""host:pid:start-time of the process that created the container."""


def _process_start(pid: int) -> str:
    """Start time of `pid` in clock ticks since boot ("" if unknown): tells a live owner from a reused pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[1].split()[19]


def owner_label(pid: int | None = None) -> str:
    pid = os.getpid() if pid is None else pid
    return f"{socket.gethostname()}:{pid}:{_process_start(pid)}"


def owner_gone(label: str) -> bool:
    """True when the owner ran on this host and is no longer running. Owners on other hosts are never judged."""
    host, _, rest = label.partition(":")
    pid_text, _, started = rest.partition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    return not Path(f"/proc/{pid}").exists() or _process_start(pid) != started


def labels(run_id: str) -> dict[str, str]:
    return {LABEL_MANAGED: "1", LABEL_RUN: run_id, LABEL_OWNER: owner_label()}


# --- containers this process has open ----------------------------------------------------------------------------
# One registry per process (not a singleton service: it only exists because signals and atexit are per process).


@dataclass
class _Live:
    lock: threading.RLock = field(default_factory=threading.RLock)  # re-entrant: a signal handler may take it
    closers: dict[str, Callable[[], None]] = field(default_factory=dict)
    atexit_registered: bool = False
    signals_installed: bool = False
    reaped: bool = False


_live = _Live()


def register(container_id: str, close: Callable[[], None]) -> None:
    with _live.lock:
        _live.closers[container_id] = close
    install_handlers()


def install_handlers() -> None:
    """Register the atexit clean-up and chain SIGINT/SIGTERM handlers, once per process. Signal handlers can only
    be set from the main thread: stages call this (through require_image) before they start worker threads."""
    with _live.lock:
        first_atexit = not _live.atexit_registered
        _live.atexit_registered = True
        in_main = threading.current_thread() is threading.main_thread()
        first_signals = in_main and not _live.signals_installed
        _live.signals_installed = _live.signals_installed or in_main
    if first_atexit:
        atexit.register(close_all)
    if first_signals:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, _chained(signum, signal.getsignal(signum)))


def unregister(container_id: str) -> None:
    with _live.lock:
        _live.closers.pop(container_id, None)


def open_count() -> int:
    with _live.lock:
        return len(_live.closers)


def close_all() -> None:
    """Remove every container this process still has open, in parallel (each removal is one API call)."""
    with _live.lock:
        closers = list(_live.closers.values())
        _live.closers.clear()
    threads = []
    for close in closers:
        try:
            thread = threading.Thread(target=_quietly, args=(close,), daemon=True)
            thread.start()
            threads.append(thread)
        except RuntimeError:  # no new threads at interpreter shutdown (Python 3.12+): one after the other
            _quietly(close)
    for thread in threads:
        thread.join(timeout=30)


def _quietly(close: Callable[[], None]) -> None:
    with contextlib.suppress(Exception):
        close()


def _chained(signum: int, previous: Any) -> Callable[[int, FrameType | None], None]:
    def handler(received: int, frame: FrameType | None) -> None:
        close_all()
        if callable(previous):
            previous(received, frame)
        elif previous == signal.SIG_IGN:
            return
        elif signum == signal.SIGINT:
            raise KeyboardInterrupt
        else:
            raise SystemExit(128 + received)

    return handler


# --- orphans -------------------------------------------------------------------------------------------------------


def ours(api: Any, *, run_id: str | None = None) -> list[dict[str, Any]]:
    """Every ise sandbox container on the engine (optionally of one run), running or not."""
    wanted = [f"{LABEL_MANAGED}=1"] + ([f"{LABEL_RUN}={run_id}"] if run_id else [])
    found: list[dict[str, Any]] = api.containers(all=True, filters={"label": wanted})
    return found


def reap_orphans(api: Any, *, everything: bool = False) -> list[str]:
    """Remove the containers whose owner process is gone (all of ours with `everything`); returns their names."""
    removed = []
    for container in ours(api):
        if everything or owner_gone(container.get("Labels", {}).get(LABEL_OWNER, "")):
            with contextlib.suppress(Exception):
                api.remove_container(container["Id"], force=True)
            removed.append(container["Names"][0].lstrip("/") if container.get("Names") else container["Id"][:12])
    return removed


def reap_once(api: Any) -> None:
    """Reap orphans the first time this process opens a sandbox."""
    with _live.lock:
        if _live.reaped:
            return
        _live.reaped = True
    reap_orphans(api)
