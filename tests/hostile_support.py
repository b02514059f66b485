"""Shared pieces of the hostile-input tests: real input files for every stage, the real CLI in-process, and the
assertion every bad input must meet (one line naming the cause, exit code 2, no traceback)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import pytest
import typer.main
import yaml
from trace_factory import make_trace, write_traces
from typer.testing import CliRunner, Result

from ise.cli import app
from ise.records import Intent, Plan
from ise.sandbox.base import Sandbox, SandboxError

PLAN_YAML = Path(__file__).parent / "data" / "simulate" / "good_plan.yaml"
EXPORT_FLAGS = ("--no-render-check", "--tokens", "approx", "--format", "openai")


def plan(plan_id: str = "plan-1") -> Plan:
    return Plan.model_validate(yaml.safe_load(PLAN_YAML.read_text())).model_copy(update={"id": plan_id})


def intent(intent_id: str = "intent-1") -> Intent:
    return plan().intent.model_copy(update={"id": intent_id})


def write_lines(path: Path, lines: list[str | bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join((line.encode() if isinstance(line, str) else line) + b"\n" for line in lines))
    return path


def intents_file(path: Path, n: int = 2) -> Path:
    return write_lines(path, [intent(f"intent-{i}").model_dump_json() for i in range(n)])


def plans_file(path: Path, n: int = 2) -> Path:
    return write_lines(path, [plan(f"plan-{i}").model_dump_json() for i in range(n)])


def traces_file(path: Path, n: int = 2) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_traces(path, [make_trace(f"t-{i}") for i in range(n)])
    return path


_RUNNER = CliRunner()
_COMMAND = typer.main.get_command(app)
"""Built once: typer's CliRunner.invoke rebuilds the click command from the app each call (most of its time)."""


def ise(*args: str | Path) -> Result:
    """`ise ARGS` through the real typer app in this process, as typer's CliRunner runs it. Any uncaught exception
    (what would be a traceback) fails the test."""
    argv = [str(arg) for arg in args]
    code = 0
    with _RUNNER.isolation() as streams:
        try:
            _COMMAND.main(args=argv, prog_name="ise")
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
        except Exception as exc:
            raise AssertionError(f"`ise {' '.join(argv)}` raised {exc!r}") from exc
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
        stdout, stderr, output = (stream.getvalue() for stream in streams[:3])
    result = Result(
        runner=_RUNNER,
        stdout_bytes=stdout,
        stderr_bytes=stderr,
        output_bytes=output,
        return_value=None,
        exit_code=code,
        exception=None,
        exc_info=None,
    )
    assert "Traceback" not in result.output
    return result


def one_line_error(result: Result, *fragments: str) -> str:
    """Exit code 2 and exactly one line on stderr, `error: ...`, holding every fragment."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 2, result.output
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (hidden ones too: a stray temp file must show)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@contextmanager
def _no_sandboxes(*_: Any, **__: Any) -> Iterator[Any]:
    def factory() -> AbstractContextManager[Sandbox]:
        raise SandboxError("no sandbox in this test")

    yield factory


def without_sandboxes(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sandbox seam of simulate and execute, for tests that are not about it: every sandbox fails to start."""
    import ise.stages.execute as execute
    import ise.stages.simulate as simulate

    monkeypatch.setattr(simulate, "open_provider", _no_sandboxes)
    monkeypatch.setattr(execute, "open_provider", _no_sandboxes)


@contextmanager
def read_only_folder(folder: Path) -> Iterator[Path]:
    """`folder` made read-only in a way that holds for root too (tests run as root, where chmod stops nothing):
    the immutable attribute (chattr +i), else, for other users, mode 0555. Skips when neither really stops a
    write here."""
    folder.mkdir(parents=True, exist_ok=True)
    undo: list[str] = []
    if shutil.which("chattr") and _run("chattr", "+i", str(folder)):
        undo = ["chattr", "-i", str(folder)]
    elif os.geteuid() != 0:
        folder.chmod(0o555)
    try:
        try:
            (folder / ".probe").touch()
        except OSError:
            pass
        else:
            (folder / ".probe").unlink()
            pytest.skip("cannot make a read-only folder here (no chattr +i on this filesystem)")
        yield folder
    finally:
        if undo:
            _run(*undo)
        folder.chmod(0o755)


def _run(*command: str) -> bool:
    return subprocess.run(command, capture_output=True, check=False).returncode == 0
