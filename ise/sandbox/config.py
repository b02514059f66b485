"""Sandbox configuration: hardening and limits, each recorded in traces (SandboxInfo.settings).

The top-level fields are the `user` profile's (the agent an unprivileged user, the root filesystem read-only);
`admin` holds what the `admin` profile changes. `for_profile` gives the effective settings of one profile.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ise.records import Profile, Record

__all__ = ["ADMIN_CAPABILITIES", "AGENT_UID", "AdminProfile", "Profile", "ProfileChoice", "SandboxConfig"]

AGENT_UID = 1000
"""The agent user's uid/gid in sandbox_images/workspace (tmpfs mounts are given to it)."""


def _default_tmpfs() -> dict[str, str]:
    agent = f"uid={AGENT_UID},gid={AGENT_UID}"
    return {
        "/workspace": f"size=512m,mode=0755,{agent},exec",
        "/home/agent": f"size=128m,mode=0755,{agent},exec",
        "/tmp": "size=256m,mode=1777,exec",
        "/var/tmp": "size=64m,mode=1777",
        "/run": "size=16m,mode=0755",
    }


ProfileChoice = Literal["plan", "user", "admin"]

ADMIN_CAPABILITIES = ("CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID")
"""Docker's default set minus what system work was shown not to need (tests/sandbox/test_sandbox_admin.py runs
that work): NET_RAW (raw sockets), MKNOD (device nodes; mkfifo needs nothing), SYS_CHROOT, SETFCAP, SETPCAP,
AUDIT_WRITE, NET_BIND_SERVICE (the container's own network namespace lets anyone bind ports below 1024)."""


class AdminProfile(Record):
    """What the `admin` profile changes. Besides these, the agent works as root and the root filesystem is writable
    (the container's own layer, discarded with it). Network, limits, no-new-privileges, seccomp, TTL and labels are
    the same as in the user profile."""

    cap_add: list[str] = Field(default_factory=lambda: list(ADMIN_CAPABILITIES))
    """Capabilities of root, which is the agent here."""
    file_roots: list[str] = Field(default_factory=lambda: ["/workspace", "/"])
    """The agent is root: the file tools may go anywhere (relative paths are still taken from /workspace)."""
    watch_roots: list[str] = Field(
        default_factory=lambda: ["/workspace", "/home/agent", "/root", "/etc", "/usr/local", "/srv", "/opt"]
    )
    """What snapshot() reports by default: the workspace, both homes, and where system work leaves its traces."""
    file_size_limit_mb: int | None = Field(default=1024, gt=0)
    """Largest file any process may write (RLIMIT_FSIZE, which root cannot raise without CAP_SYS_RESOURCE): the
    writable root is not a size-capped tmpfs, so this keeps one runaway write from filling the host's disk."""


class SandboxConfig(Record):
    profile: ProfileChoice = "plan"
    """plan: each plan's own profile (Plan.profile); user/admin: force one for every plan."""
    active_profile: Profile | None = None
    """The profile these settings are the effective ones of (set by for_profile; None: not resolved yet, the
    top-level fields are the user profile's)."""
    admin: AdminProfile = Field(default_factory=AdminProfile)
    image: str = "ise-workspace:latest"
    """Image the workspaces run; `ise-<name>:latest` is built from sandbox_images/<name> when missing or stale."""
    network: Literal["none", "bridge"] = "none"
    """`none`: loopback only, no egress."""
    read_only_root: bool = True
    """Root filesystem read-only; only the tmpfs mounts below are writable."""
    tmpfs: dict[str, str] = Field(default_factory=_default_tmpfs)
    """Writable tmpfs mounts (path -> mount options); size-capped, so a disk fill stops at the cap."""
    memory_mb: int = Field(default=1024, gt=0)
    """Memory limit (tmpfs contents count against it); swap is capped to the same value so it cannot double it."""
    cpus: float = Field(default=1.0, gt=0)
    pids_limit: int = Field(default=256, gt=0)
    """Processes and threads in the container: contains fork bombs."""
    cap_drop: list[str] = Field(default_factory=lambda: ["ALL"])
    cap_add: list[str] = Field(default_factory=lambda: ["CHOWN", "DAC_OVERRIDE", "FOWNER", "KILL", "SETUID", "SETGID"])
    """Capabilities only root processes can use (fixtures, setup, perturbations, checks): the agent user runs with
    none, and no-new-privileges keeps setuid binaries from handing them over."""
    no_new_privileges: bool = True
    init: bool = True
    """A tiny init as PID 1 reaps orphans and makes stopping instant."""
    log_max_size: str = "1m"
    """Cap of the container's own log (json-file, one file)."""
    agent_user: str = "agent"
    workdir: str = "/workspace"
    file_roots: list[str] = Field(default_factory=lambda: ["/workspace", "/home/agent"])
    """Where the file tools may read and write; relative paths are taken from the first."""
    watch_roots: list[str] = Field(default_factory=lambda: ["/workspace", "/home/agent"])
    """What snapshot() reports."""
    command_timeout_s: float = Field(default=30.0, gt=0)
    """Default per-command timeout."""
    kill_grace_s: float = Field(default=2.0, ge=0)
    """After a timeout's SIGTERM, how long before SIGKILL (GNU timeout -k)."""
    output_limit_bytes: int = Field(default=64_000, gt=0)
    """Output kept per stream (head and tail); the rest is cut and counted."""
    output_stop_bytes: int = Field(default=16_000_000, gt=0)
    """A command that writes more than this is stopped (infinite output must not cost minutes of copying)."""
    merge_stderr: bool = False
    """Return stderr interleaved into stdout, in the order written, instead of apart."""
    file_read_limit_bytes: int = Field(default=1_000_000, gt=0)
    """read_file refuses bigger files (the model should page them with a command)."""
    snapshot_hash_limit_bytes: int = Field(default=4_000_000, ge=0)
    """Files up to this size are hashed in snapshots; bigger ones are compared by size and mtime."""
    snapshot_max_entries: int = Field(default=50_000, gt=0)
    setup_timeout_s: float = Field(default=120.0, gt=0)
    """Timeout of a fixture's setup script."""
    ttl_s: int = Field(default=3600, gt=0)
    """Dead-man switch: the container's main process exits after this long, whatever happens to ise."""
    pool_size: int = Field(default=0, ge=0)
    """Started containers kept warm for the next trajectory, per profile (0: start each one on demand)."""
    immune_pid1: bool = False
    """The container's main process is a bash loop as PID 1 that ignores every signal (the kernel then drops
    all signals sent to it from inside, SIGKILL included), reaps orphans and exits at the TTL, instead of a tiny
    init and `sleep`: set by the admin profile, where the agent is root and `pkill sleep` or `kill -9 -1` would
    otherwise stop the container. `init` is ignored then."""
    file_size_limit_mb: int | None = Field(default=None, gt=0)
    """RLIMIT_FSIZE of every process in the container (None: unlimited; tmpfs sizes cap the user profile)."""

    def resolve(self, wanted: Profile) -> Profile:
        """The profile a plan that wants `wanted` runs under: the forced one, if any."""
        return wanted if self.profile == "plan" else self.profile

    def for_profile(self, profile: Profile) -> SandboxConfig:
        """The effective settings of `profile` (what a sandbox of it runs with, recorded in its traces)."""
        if self.active_profile is not None:
            if self.active_profile != profile:
                raise ValueError(f"these are already the {self.active_profile} profile's settings, not {profile}'s")
            return self
        if profile == "user":
            return self.model_copy(update={"active_profile": "user"})
        admin = self.admin
        return self.model_copy(
            update={
                "active_profile": "admin",
                "agent_user": "root",
                "read_only_root": False,
                "cap_add": list(admin.cap_add),
                "file_roots": list(admin.file_roots),
                "watch_roots": list(admin.watch_roots),
                "file_size_limit_mb": admin.file_size_limit_mb,
                "immune_pid1": True,
            }
        )
