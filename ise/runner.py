"""The one runner every stage uses: per-record function, N worker threads, resume, progress, errors, stats.

Stages stay pure (record in, record out); the runner owns the I/O. Resume is "inputs minus ids already in the
output". Results are written by the main thread only, one whole line each, so Ctrl-C or kill -9 never leaves a
half record and a rerun picks up where the last one stopped.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ise.errors import InputError, IseError
from ise.jsonl import JsonlWriter, done_ids
from ise.llm.base import LLMError
from ise.outputs import check_output_file
from ise.sandbox.base import SandboxError


class HasId(Protocol):
    @property
    def id(self) -> str: ...


In = TypeVar("In", bound=HasId)
Out = TypeVar("Out", bound=BaseModel)

stop_requested = threading.Event()
"""Set on Ctrl-C; long-running stage functions may poll it to give up early."""


class StageAborted(IseError):
    """Too many records in a row failed: the cause is systemic (endpoint down, image missing), not per record."""


@dataclass
class RunStats:
    total: int = 0
    skipped: int = 0
    """Already in the output from an earlier run."""
    ok: int = 0
    errors: int = 0
    elapsed_s: float = 0.0
    labels: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "skipped": self.skipped,
            "ok": self.ok,
            "errors": self.errors,
            "elapsed_s": round(self.elapsed_s, 3),
            "labels": dict(self.labels),
        }


def errors_path(output: Path) -> Path:
    return output.with_name(output.name.removesuffix(".jsonl") + ".errors.jsonl")


def preflight(output: Path, inputs: Sequence[Path] = (), sidecars: Sequence[Path] = ()) -> None:
    """Before a stage reads or runs anything: its output (and the errors file and `sidecars` beside it) can be
    written, is no input, and an existing output can be resumed (every complete line readable). One line if not."""
    check_output_file(output, inputs=inputs, sidecars=[errors_path(output), *sidecars])
    done_ids(output)


def check_workers(workers: int) -> int:
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise InputError(f"workers must be a whole number >= 1, got {workers!r}")
    return workers


def is_infra(error: BaseException) -> bool:
    """An endpoint or sandbox failure (not the record's own): an infra LLMError or a SandboxError, also as a cause."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, SandboxError) or (isinstance(current, LLMError) and current.is_infra):
            return True
        current = current.__cause__ or current.__context__
    return False


def run_stage(
    inputs: Iterable[In],
    process: Callable[[In], Out],
    output: Path,
    *,
    workers: int = 1,
    description: str = "",
    label: Callable[[Out], str] | None = None,
    max_consecutive_errors: int = 10,
    console: Console | None = None,
) -> RunStats:
    """Apply `process` to every input whose id is not yet in `output`; append results, capture failures.

    Stops with StageAborted when `max_consecutive_errors` records fail in a row, and when every record of the run
    failed on infrastructure (nothing produced: the endpoint or sandbox is down, not the records)."""
    check_workers(workers)
    todo, stats = _pending(inputs, output)
    console = console or Console(stderr=True)
    started = time.monotonic()
    stop_requested.clear()
    try:
        _run(todo, process, output, stats, workers, description, label, max_consecutive_errors, console)
    finally:
        # Every worker has been joined by now: the stop signal has done its job and must not leak into the
        # next stage run in this process.
        stop_requested.clear()
        stats.elapsed_s = time.monotonic() - started
    return stats


def _run(
    todo: list[In],
    process: Callable[[In], Out],
    output: Path,
    stats: RunStats,
    workers: int,
    description: str,
    label: Callable[[Out], str] | None,
    max_consecutive_errors: int,
    console: Console,
) -> None:
    consecutive = infra = 0
    last_error: BaseException | None = None
    with (
        JsonlWriter(output) as out,
        JsonlWriter(errors_path(output)) as errs,
        _progress(console, description, len(todo) + stats.skipped, stats.skipped) as (progress, task),
        ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ise-worker") as pool,
    ):
        try:
            for item, result in _completed(pool, process, todo, workers):
                if isinstance(result, BaseException):
                    stats.errors += 1
                    consecutive += 1
                    infra += is_infra(result)
                    last_error = result
                    errs.write(_error_record(item.id, result))
                    if consecutive >= max_consecutive_errors:
                        raise StageAborted(
                            f"{consecutive} records failed in a row, stopping; last error: {result} "
                            f"(each in {errs.path}); {stats.ok} new records kept in {output}, a rerun resumes"
                        ) from result
                else:
                    consecutive = 0
                    stats.ok += 1
                    out.write(result)
                    if label is not None:
                        stats.labels[label(result)] += 1
                progress.update(task, advance=1, description=_describe(description, stats))
            if todo and stats.ok == 0 and infra == stats.errors == len(todo):
                raise StageAborted(
                    f"nothing produced: all {len(todo)} records failed on infrastructure; last error: "
                    f"{last_error} (each in {errs.path}); fix it and rerun to resume"
                ) from last_error
        except BaseException as exc:
            stop_requested.set()  # workers poll it and give up early
            pool.shutdown(wait=False, cancel_futures=True)
            if isinstance(exc, KeyboardInterrupt):
                console.print(f"interrupted: {stats.ok} new records saved in {output}; rerun to resume")
            raise


def _pending(inputs: Iterable[In], output: Path) -> tuple[list[In], RunStats]:
    done = done_ids(output)
    todo: list[In] = []
    seen: set[str] = set()
    stats = RunStats()
    for item in inputs:
        if item.id in seen:
            raise IseError(f"duplicate input id {item.id!r}: ids must be unique for resume to be safe")
        seen.add(item.id)
        stats.total += 1
        if item.id in done:
            stats.skipped += 1
        else:
            todo.append(item)
    return todo, stats


def _completed(
    pool: ThreadPoolExecutor, process: Callable[[In], Out], todo: list[In], window: int
) -> Iterator[tuple[In, Out | BaseException]]:
    """Yield (input, result or exception) as work finishes, keeping at most `window` records in flight."""
    queue = iter(todo)
    running: dict[Future[Out], In] = {}
    while True:
        while len(running) < window and (item := next(queue, None)) is not None:
            running[pool.submit(process, item)] = item
        if not running:
            return
        finished, _ = wait(running, return_when=FIRST_COMPLETED)
        for future in finished:
            item = running.pop(future)
            error = future.exception()
            yield item, (error if error is not None else future.result())


def _error_record(record_id: str, error: BaseException) -> dict[str, Any]:
    return {
        "id": record_id,
        "error": type(error).__name__,
        "message": str(error),
        "traceback": "".join(traceback.format_exception(error)[-3:]),
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _describe(description: str, stats: RunStats) -> str:
    parts = [f"ok {stats.ok}", f"errors {stats.errors}"]
    parts += [f"{name} {count}" for name, count in sorted(stats.labels.items())]
    return f"{description} [{' · '.join(parts)}]"


class _progress:
    """A rich progress bar that stays quiet when not attached to a terminal."""

    def __init__(self, console: Console, description: str, total: int, completed: int) -> None:
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            disable=not console.is_terminal,
        )
        self.task = self.progress.add_task(description, total=total, completed=completed)

    def __enter__(self) -> tuple[Progress, Any]:
        self.progress.start()
        return self.progress, self.task

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()
