"""Small stdlib-only Python programs that run inside the sandbox (read as text, never imported by ise itself).

Every long-lived process ise keeps in a sandbox (a helper, serve.py; a shell driver, shell.py) starts the same
way, so that nothing in `ps` or /proc there is ise's: the exec runs plain `bash`, which reads LAUNCH from its stdin
and execs `python3 -I -S /dev/fd/3` with BOOT as a here-document on fd 3. BOOT rewrites its command line to
`python3`, reads one length-prefixed JSON message from stdin ({"main", "modules": {name: source}, "config"}), runs
each module and calls `main(config, ops)` of the one named, ops being every module's `OPS`. The host knows the pid
of each such process (it is in its hello), which is how ise tells its own processes from the agent's.
"""

import json
import struct
from importlib import resources

HELPER_MODULES = ("fstool", "snapshot", "seed", "serve")
SHELL_MODULES = ("shell",)

BOOT = """\
import json, os, sys, types


def retitle(name):
    # /proc/PID/cmdline is the memory between arg_start and arg_end (fields 48 and 49 of /proc/PID/stat): overwritten
    # with the name and NULs, its last byte not a NUL, the kernel shows it up to the first NUL (as setproctitle does).
    try:
        with open("/proc/self/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
        start, end = int(fields[45]), int(fields[46])
        if end - start > len(name) + 1:
            with open("/proc/self/mem", "r+b", buffering=0) as mem:
                mem.seek(start)
                mem.write(name + bytes(end - start - len(name) - 1) + b" ")
    except (OSError, ValueError, IndexError):
        pass


def read(size):
    data = b""
    while len(data) < size:
        chunk = os.read(0, size - len(data))
        if not chunk:
            sys.exit(0)
        data += chunk
    return data


retitle(b"python3")
message = json.loads(read(int.from_bytes(read(4), "big")))
ops, modules = {}, {}
for name, text in message["modules"].items():
    module = modules[name] = types.ModuleType(name)
    exec(compile(text, f"<{name}>", "exec"), module.__dict__)
    ops.update(getattr(module, "OPS", {}))
modules[message["main"]].main(message["config"], ops)
"""

LAUNCH = f"exec python3 -I -S /dev/fd/3 3<<'PY'\n{BOOT}PY\n".encode()
"""What the exec's `bash` reads: -I -S, no site packages or user environment (faster, and nothing of the agent's
is imported); a here-document this small is a pipe, so nothing is written to disk."""

COMMAND = ["bash"]
"""The exec's command line."""


def bundle(main: str, modules: tuple[str, ...], config: dict[str, object] | None = None) -> bytes:
    """LAUNCH and the message BOOT reads: everything the exec's stdin gets before the program's own protocol."""
    folder = resources.files(__package__)
    sources = {name: folder.joinpath(f"{name}.py").read_text(encoding="utf-8") for name in modules}
    body = json.dumps({"main": main, "modules": sources, "config": config or {}}).encode()
    return LAUNCH + struct.pack(">L", len(body)) + body
