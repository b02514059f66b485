"""Where stages get their sandboxes from, without importing a backend.

    with open_provider(config.sandbox, run_id="execute-1a2b") as sandboxes:   # main thread, before the workers
        with sandboxes(plan.profile) as box:                                    # any thread
            box.seed(plan.fixtures)

`open_provider` makes sure the image exists (building ise's own when missing or stale), installs the clean-up
signal handlers, and keeps a warm pool per profile when `pool_size` > 0; the factory it yields opens a fresh
sandbox of the profile a plan asks for (or of the one `config.profile` forces), removed when its block ends.
Importing this module imports no backend: the Docker one is loaded when a provider opens.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

from ise.records import Profile
from ise.sandbox.base import Sandbox
from ise.sandbox.config import SandboxConfig

if TYPE_CHECKING:
    from ise.sandbox.docker_pool import SandboxPool

__all__ = ["Profile", "SandboxFactory", "Sandboxes", "open_provider"]

SandboxFactory = Callable[[Profile], AbstractContextManager[Sandbox]]
"""Opens a fresh sandbox of that profile; leaving the context removes it."""


class Sandboxes:
    """The factory `open_provider` yields: a SandboxFactory that also says which image its sandboxes run."""

    def __init__(self, image_id: str, opener: SandboxFactory) -> None:
        self.image_id = image_id
        """Content-addressed id of the image every sandbox of this run starts from."""
        self._opener = opener

    def __call__(self, profile: Profile) -> AbstractContextManager[Sandbox]:
        return self._opener(profile)


@contextlib.contextmanager
def open_provider(config: SandboxConfig, *, run_id: str) -> Iterator[Sandboxes]:
    """Sandboxes for one run, labelled with its run id. Call from the main thread (signal handlers can only be
    installed there); the factory it yields may be called from any thread. Pools are started on first use of a
    profile and closed, with every sandbox they still hold, when the block ends."""
    from ise.sandbox.docker import open_sandbox, require_image
    from ise.sandbox.docker_pool import SandboxPool

    image_id = require_image(config)
    lock = threading.Lock()
    pools: dict[Profile, SandboxPool] = {}
    closed = False

    def pool_of(settings: SandboxConfig, profile: Profile) -> SandboxPool | None:
        if settings.pool_size == 0:
            return None
        with lock:
            if closed:
                raise RuntimeError("the sandbox provider was closed")
            if profile not in pools:
                pools[profile] = SandboxPool(settings, run_id=run_id)
            return pools[profile]

    def factory(wanted: Profile) -> AbstractContextManager[Sandbox]:
        profile = config.resolve(wanted)
        settings = config.for_profile(profile)
        return open_sandbox(settings, run_id=run_id, pool=pool_of(settings, profile))

    try:
        yield Sandboxes(image_id, factory)
    finally:
        with lock:
            closed = True
            opened = list(pools.values())
        for pool in opened:
            pool.close()
