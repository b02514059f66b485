"""Small stdlib-only Python modules that run inside the sandbox (read as text, never imported by ise itself).

One helper process per sandbox and user serves them all (serve.py has the wire format). It is started with a short
bootstrap on the command line that reads the modules' sources from stdin, so `ps` in the sandbox shows
`python3 -I -S -c <bootstrap> __ise_helper N`, not pages of source. Each module contributes named ops (its `OPS`).
"""

import json
from importlib import resources

MODULES = ("fstool", "snapshot", "seed", "serve")
"""serve last: the bootstrap hands it every other module's ops."""

MARK = "__ise_helper"
"""In every helper's command line: tells ise's own processes apart from the agent's."""

BOOTSTRAP = """\
import json, os, sys, types
size, data = int(sys.argv[2]), b""
while len(data) < size:
    chunk = os.read(0, size - len(data))
    if not chunk:
        sys.exit(0)
    data += chunk
ops, modules = {}, {}
for name, text in json.loads(data).items():
    module = modules[name] = types.ModuleType(name)
    exec(compile(text, f"<ise {name}>", "exec"), module.__dict__)
    ops.update(getattr(module, "OPS", {}))
modules["serve"].serve(ops)
"""
"""Reads exactly argv[2] bytes of JSON {module: source} from stdin, runs each module, then serves their ops."""


def bundle() -> bytes:
    """The sources the bootstrap expects, in order."""
    folder = resources.files(__package__)
    sources = {name: folder.joinpath(f"{name}.py").read_text(encoding="utf-8") for name in MODULES}
    return json.dumps(sources).encode()


def command(size: int) -> list[str]:
    # -I -S: no site packages or user environment to import: faster, and nothing of the agent's gets loaded
    return ["python3", "-I", "-S", "-c", BOOTSTRAP, MARK, str(size)]
