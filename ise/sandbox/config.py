"""Sandbox configuration: hardening and limits, each recorded in traces."""

from __future__ import annotations

from typing import Literal

from ise.records import Record


class SandboxConfig(Record):
    image: str = "ise-workspace:latest"
    """Image the workspaces run; built by `ise sandbox build`."""
    network: Literal["none", "bridge"] = "none"
    read_only_root: bool = True
    memory_mb: int = 1024
    """Memory limit; swap is capped to the same value so it cannot double it."""
    cpus: float = 1.0
    pids_limit: int = 256
    command_timeout_s: float = 30.0
    """Default per-command timeout."""
    output_limit_bytes: int = 64_000
    """Output kept per command (stdout+stderr); the rest is cut and counted."""
    ttl_s: int = 3600
    """Dead-man switch: the container's main process exits after this long, whatever happens to ise."""
