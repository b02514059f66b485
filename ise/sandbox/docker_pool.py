"""SandboxPool: started and warmed Docker sandboxes kept ready, so a trajectory starts in milliseconds."""

from __future__ import annotations

import queue
import threading
import time

from ise.sandbox import lifecycle
from ise.sandbox.base import SandboxError
from ise.sandbox.config import SandboxConfig
from ise.sandbox.docker import DockerSandbox


class SandboxPool:
    """Keeps `size` started (and warmed) sandboxes ready, so a trajectory starts in milliseconds.

    A background thread refills the pool after each acquire. Pooled containers count as this process's own
    (removed at exit like any other); ones older than half their TTL are replaced instead of handed out.
    """

    def __init__(self, config: SandboxConfig, *, run_id: str, size: int | None = None) -> None:
        self.config = config
        self.run_id = run_id
        self.size = config.pool_size if size is None else size
        lifecycle.install_handlers()
        self._ready: queue.Queue[DockerSandbox] = queue.Queue()
        self._wanted = threading.Semaphore(self.size)
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._fill, name="ise-sandbox-pool", daemon=True)
        self._thread.start()

    def _fill(self) -> None:
        while not self._closed.is_set():
            if not self._wanted.acquire(timeout=0.2):
                continue
            try:
                sandbox = DockerSandbox(self.config, run_id=self.run_id)
                sandbox.warm()
            except SandboxError:
                self._wanted.release()
                self._closed.wait(1.0)
                continue
            if self._closed.is_set():
                sandbox.close()
                return
            self._ready.put(sandbox)

    def acquire(self, timeout_s: float = 0.0) -> DockerSandbox:
        """A ready sandbox from the pool, or a freshly started one if none is ready within `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                sandbox = (
                    self._ready.get(timeout=max(0.0, deadline - time.monotonic()) or None)
                    if timeout_s
                    else (self._ready.get_nowait())
                )
            except queue.Empty:
                return DockerSandbox(self.config, run_id=self.run_id)
            self._wanted.release()
            if time.monotonic() - sandbox.started_at < self.config.ttl_s / 2 and sandbox.alive():
                return sandbox
            sandbox.close()

    def wait_ready(self, timeout_s: float = 60.0) -> int:
        """Block until the pool is full (or the timeout); how many are ready."""
        deadline = time.monotonic() + timeout_s
        while self._ready.qsize() < self.size and time.monotonic() < deadline:
            time.sleep(0.05)
        return self._ready.qsize()

    def close(self) -> None:
        self._closed.set()
        self._thread.join(timeout=30)
        while True:
            try:
                self._ready.get_nowait().close()
            except queue.Empty:
                return

    def __enter__(self) -> SandboxPool:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
