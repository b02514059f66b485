"""Stage 3: run each plan as a live episode (ise/stages/episode.py) and write its Trace.

The stage reads the whole input first (a bad line stops it with nothing written), drops the traces a rerun must
redo (infra errors; setup errors whose plan or image changed), then runs the rest concurrently through the runner.
Infra failures in a row stop it (the endpoint or engine is down); Ctrl-C or SIGTERM abandon the episodes in flight
and remove their containers, and the rerun resumes.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from rich.console import Console

from ise.config import Config, ExecuteConfig
from ise.errors import IseError
from ise.jsonl import read_records, repair_tail
from ise.llm.base import LLM
from ise.provenance import attempt_id, plan_hash
from ise.records import (
    Plan,
    Trace,
)
from ise.runner import RunStats, StageAborted, preflight, run_stage
from ise.sandbox.provider import Sandboxes, SandboxFactory, open_provider
from ise.stages.episode import ExecuteEnv, execute_plan
from ise.trace_file import read_traces

# --- the stage -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Attempt:
    """One attempt at one plan: the runner's work item (execute.attempts, ise eval --attempts)."""

    plan: Plan
    index: int

    @property
    def id(self) -> str:
        return attempt_id(self.plan.id, self.index)


def read_plans(path: Path) -> list[Plan]:
    """The whole input, validated before anything runs: a bad line stops the stage with nothing written."""
    plans = list(read_records(path, Plan, unique_ids=True))
    if not plans:
        raise IseError(f"{path}: no plans to execute")
    return plans


def drop_rerunnable(
    output: Path, hashes: dict[str, str], *, infra_errors: bool, setup_errors: bool, image_id: str | None
) -> tuple[int, int]:
    """Remove the traces this run must redo: infra_errors (when asked to), and a setup_error when asked to, when its
    plan changed since (`hashes`: trace id -> plan hash), or when it ran on another image. The file is replaced
    atomically. How many of each."""
    if not output.exists():
        return 0, 0
    repair_tail(output)
    kept: list[str] = []
    infra = setup = 0
    with output.open(encoding="utf-8") as handle:
        for line in handle:
            verdict = _error_verdict(line)
            if verdict == "infra_error" and infra_errors:
                infra += 1
            elif verdict == "setup_error" and (setup_errors or _changed_since(line, hashes, image_id)):
                setup += 1
            else:
                kept.append(line)
    if infra or setup:
        tmp = output.with_name(output.name + ".tmp")
        with tmp.open("w", encoding="utf-8") as out:
            out.writelines(kept)
            out.flush()
            os.fsync(out.fileno())
        tmp.replace(output)
    return infra, setup


def _error_verdict(line: str) -> str | None:
    """infra_error or setup_error for such a trace line, else None (cheap: most lines are neither)."""
    if '"infra_error"' not in line and '"setup_error"' not in line:
        return None
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return None
    termination = record.get("termination") if isinstance(record, dict) else None
    return termination if termination in ("infra_error", "setup_error") else None


def _changed_since(line: str, hashes: dict[str, str], image_id: str | None) -> bool:
    record = json.loads(line)
    env = record.get("env") or {}
    plan_changed = hashes.get(record.get("id", "")) not in (None, env.get("plan_sha256"))
    return plan_changed or (image_id is not None and env.get("image_id") != image_id)


def trace_label(trace: Trace) -> str:
    """The progress and stats label: passed, failed_checks, infra_error or setup_error."""
    verdict = trace.verdict
    return "failed_checks" if verdict == "failed" else verdict


class InfraWatch:
    """Progress label that also stops the stage when infra failures come in a row (engine or endpoint down):
    those traces would only be rerun anyway. A setup_error is the plan's own fault and says nothing about the
    infrastructure: it neither counts nor breaks a run."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_a_row = 0

    def __call__(self, trace: Trace) -> str:
        label = trace_label(trace)
        if label != "setup_error":
            self.in_a_row = self.in_a_row + 1 if label == "infra_error" else 0
        if self.in_a_row >= self.limit:
            cause = trace.infra_error.message if trace.infra_error else "unknown"
            raise StageAborted(
                f"{self.in_a_row} trajectories in a row hit infrastructure errors, so the stage stopped "
                f"(execute.max_consecutive_infra_errors); last: {cause}. Traces written so far are kept: "
                "rerun the same command to resume (infra errors are retried)."
            )
        return label


@contextmanager
def open_sandboxes(config: Config) -> Iterator[SandboxFactory]:
    """Fresh sandboxes for one run, labelled with its run id (the provider owns images, pools and clean-up)."""
    with open_provider(config.sandbox, run_id=f"execute-{uuid.uuid4().hex[:8]}") as factory:
        yield factory


def build_llms(config: Config) -> tuple[LLM, LLM]:
    """One client per distinct backend: agent and user share it when configured alike (one embedded server)."""
    agent_cfg, user_cfg = config.llm_for("agent"), config.llm_for("user")
    agent = agent_cfg.build()
    user = agent if user_cfg == agent_cfg else user_cfg.build()
    return agent, user


def run_execute(
    input_path: Path,
    output: Path,
    config: Config,
    *,
    workers: int | None = None,
    llms: tuple[LLM, LLM] | None = None,
    sandbox_factory: SandboxFactory | None = None,
    console: Console | None = None,
) -> RunStats:
    """Run every plan not yet traced in `output`; returns the runner's stats (labels: passed, failed_checks,
    infra_error)."""
    console = console or Console(stderr=True)
    preflight(output, inputs=[input_path])
    plans = read_plans(input_path)
    with ExitStack() as cleanup:
        cleanup.enter_context(sigterm_as_interrupt())
        if sandbox_factory is None:
            sandbox_factory = cleanup.enter_context(open_sandboxes(config))
        image_id = sandbox_factory.image_id if isinstance(sandbox_factory, Sandboxes) else None
        hashes = {attempt_id(p.id, i): plan_hash(p) for p in plans for i in range(config.execute.attempts)}
        drop_for_rerun(output, hashes, config.execute, image_id, console)
        agent_llm, user_llm = llms or build_llms(config)
        if llms is None:
            cleanup.callback(agent_llm.close)
            if user_llm is not agent_llm:
                cleanup.callback(user_llm.close)
        stopping = config.execute.attempts > 1 and config.execute.stop_at_success
        env = ExecuteEnv(
            config=config,
            agent_llm=agent_llm,
            user_llm=user_llm,
            sandbox_factory=sandbox_factory,
            stop_at_success=stopping,
        )
        label = InfraWatch(config.execute.max_consecutive_infra_errors)

        def run(items: list[Attempt]) -> RunStats:
            return run_stage(
                items,
                lambda item: execute_plan(item.plan, env, attempt=item.index),
                output,
                workers=workers or config.workers,
                description="execute",
                label=label,
                console=console,
            )

        stats = _attempt_rounds(plans, config.execute, output, run)
    console.print(_summary(stats))
    return stats


def _attempt_rounds(
    plans: list[Plan], cfg: ExecuteConfig, output: Path, run: Callable[[list[Attempt]], RunStats]
) -> RunStats:
    """Every attempt at every plan in one run; or, with stop_at_success, round by round: attempt i of the plans
    that no earlier attempt passed (read back from the output, so a resumed run decides the same)."""
    if cfg.attempts == 1 or not cfg.stop_at_success:
        return run([Attempt(plan, i) for plan in plans for i in range(cfg.attempts)])
    total = RunStats()
    for index in range(cfg.attempts):
        passed = {t.plan_id for _, t in read_traces(output) if t.outcome.passed} if output.exists() else set()
        stats = run([Attempt(plan, index) for plan in plans if plan.id not in passed])
        total.total += stats.total
        total.skipped += stats.skipped
        total.ok += stats.ok
        total.errors += stats.errors
        total.elapsed_s += stats.elapsed_s
        total.labels.update(stats.labels)
    return total


def drop_for_rerun(
    output: Path, hashes: dict[str, str], cfg: ExecuteConfig, image_id: str | None, console: Console
) -> None:
    infra, setup = drop_rerunnable(
        output, hashes, infra_errors=cfg.retry_infra_errors, setup_errors=cfg.retry_setup_errors, image_id=image_id
    )
    if infra:
        console.print(f"rerunning {infra} trajectories that hit infrastructure errors last time")
    if setup:
        console.print(f"rerunning {setup} trajectories whose plan setup failed last time (plan or image changed)")


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """`kill` stops the stage the way Ctrl-C does: episodes abandoned, their containers removed, nothing half
    written. (Without this, SIGTERM ends the process on the spot and only the next run's reaper cleans up.)"""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _summary(stats: RunStats) -> str:
    labels = ", ".join(f"{name} {count}" for name, count in sorted(stats.labels.items())) or "none new"
    return (
        f"execute: {stats.ok} traces ({labels}), {stats.errors} errors, {stats.skipped} already done, "
        f"{stats.elapsed_s:.1f}s"
    )
