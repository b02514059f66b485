"""The Docker backend's engine client: one pooled low-level API client per process, and engine errors turned into
SandboxErrors that carry the engine's own explanation."""

from __future__ import annotations

import threading
from typing import Any

from ise.sandbox.base import SandboxError
from ise.sandbox.engine import docker_client

_client_lock = threading.Lock()
_shared: dict[str, Any] = {}


def shared_api() -> Any:
    """One low-level API client per process, with room for many concurrent sandboxes' connections."""
    with _client_lock:
        if "api" not in _shared:
            client = docker_client()
            client.api.close()
            _shared["client"] = client = _pooled_client()
            _shared["api"] = client.api
            _shared["engine"] = f"docker {client.version().get('Version', '?')}"
        return _shared["api"]


def _pooled_client() -> Any:
    import docker

    return docker.DockerClient.from_env(version="auto", timeout=120, max_pool_size=128)


def engine_version() -> str:
    shared_api()
    return str(_shared["engine"])


def translate_error(exc: Exception, what: str) -> SandboxError:
    """An engine error as a SandboxError with the engine's own explanation."""
    explanation = getattr(exc, "explanation", None) or str(exc) or type(exc).__name__
    return SandboxError(f"{what}: {str(explanation).strip().splitlines()[0]}")


def engine_call(what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    import docker.errors
    import requests.exceptions

    try:
        return fn(*args, **kwargs)
    except (docker.errors.DockerException, requests.exceptions.RequestException, OSError) as exc:
        raise translate_error(exc, what) from None
