"""`ise eval`: an agent on every task of a suite, scored by the tasks' own checks.

The agent is whatever `ise execute` runs — any LLM backend, the same loop, tools, sandbox profiles and budgets —
or a control: `oracle` replays each task's reference solution, `null` answers "I do not know." without acting.
Oracle passing every task and null passing none is the proof that the sandbox and the checks agree with a suite's
own scoring; each exception is listed with its cause.

Single-turn by default (the task's request is the only user message; no user simulator); `multi_turn` runs the
plan's user card as `ise execute` does. Each task runs `attempts` times with distinct seeds (trace ids `<task>`,
`<task>.a1`, ...), one Trace per attempt in the output, written through the runner (resumable, concurrent,
exactly-once by id). Beside it: `<name>.summary.json` and `<name>.html` (ise/eval_report.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Literal, get_args

from rich.console import Console

from ise.config import Config
from ise.controls import null_llm, oracle_llm, relay_user_llm, single_turn_oracle_llm
from ise.errors import InputError
from ise.eval_report import EvalSummary, print_table, summarise, write_reports
from ise.llm.base import LLM
from ise.provenance import plan_hash
from ise.records import AnswerCheck, Plan, Trace
from ise.runner import RunStats, errors_path, preflight, run_stage
from ise.sandbox.provider import Sandboxes, SandboxFactory
from ise.stages.episode import ExecuteEnv, execute_plan
from ise.stages.execute import Attempt, InfraWatch, drop_for_rerun, open_sandboxes, sigterm_as_interrupt
from ise.tasks import TaskSet, Unimportable
from ise.trace_file import read_traces

AgentKind = Literal["llm", "oracle", "null"]
AGENTS: tuple[AgentKind, ...] = get_args(AgentKind)


def runnable(plans: list[Plan], agent: AgentKind, multi_turn: bool) -> tuple[list[Plan], list[Unimportable]]:
    """The tasks this run can score, and the rest with the reason."""
    kept: list[Plan] = []
    skipped: list[Unimportable] = []
    for plan in plans:
        if reason := _cannot_run(plan, agent, multi_turn):
            skipped.append(Unimportable(task_id=plan.id, path=plan.origin.path if plan.origin else "", reason=reason))
        else:
            kept.append(plan)
    return kept, skipped


def _cannot_run(plan: Plan, agent: AgentKind, multi_turn: bool) -> str | None:
    if agent == "oracle" and not plan.solution:
        return "no reference solution to replay"
    answer_ids = {c.id for c in plan.checks if isinstance(c, AnswerCheck)}
    asking = [m.id for m in plan.user.milestones if answer_ids & set(m.checks)]
    if not multi_turn and len(asking) > 1:
        # One message gets one answer: checks written for separate answers cannot all accept it.
        return f"asks for answers in {len(asking)} separate turns ({', '.join(asking)}): run it with --multi-turn"
    return None


def run_eval(
    tasks: TaskSet,
    output: Path,
    config: Config,
    *,
    agent: AgentKind = "llm",
    attempts: int = 1,
    multi_turn: bool = False,
    workers: int | None = None,
    llm: LLM | None = None,
    sandbox_factory: SandboxFactory | None = None,
    console: Console | None = None,
) -> EvalSummary:
    """Run every attempt not yet in `output`, then write and print the summary (see the module docstring)."""
    console = console or Console(stderr=True)
    if attempts < 1:
        raise InputError(f"--attempts must be at least 1 (got {attempts})")
    preflight(output, sidecars=[summary_path(output), html_path(output)])
    plans, not_run = runnable(tasks.plans, agent, multi_turn)
    if not plans:
        raise InputError(f"{tasks.suite}: no task to evaluate ({len(tasks.unimportable)} could not be imported)")
    items = [Attempt(plan, i) for plan in plans for i in range(attempts)]
    with ExitStack() as cleanup:
        cleanup.enter_context(sigterm_as_interrupt())
        if sandbox_factory is None:
            sandbox_factory = cleanup.enter_context(open_sandboxes(config))
        image_id = sandbox_factory.image_id if isinstance(sandbox_factory, Sandboxes) else None
        hashes = {item.id: plan_hash(item.plan) for item in items}
        drop_for_rerun(output, hashes, config.execute, image_id, console)
        env, agent_for = _environment(config, agent, multi_turn, llm, sandbox_factory, cleanup)
        stats = run_stage(
            items,
            lambda item: execute_plan(item.plan, agent_for(env, item.plan), attempt=item.index),
            output,
            workers=workers or config.workers,
            description=f"eval {agent}",
            label=InfraWatch(config.execute.max_consecutive_infra_errors),
            console=console,
        )
    traces = _traces_of(output, {item.id for item in items})
    summary = summarise(
        tasks,
        plans,
        traces,
        agent=agent,
        model=_model_name(config, agent),
        attempts=attempts,
        multi_turn=multi_turn,
        not_run=not_run,
        elapsed_s=stats.elapsed_s,
    )
    write_reports(summary, summary_path(output), html_path(output))
    print_table(summary, console)
    _say_errors(stats, output, console)
    return summary


def summary_path(output: Path) -> Path:
    return output.with_name(output.stem + ".summary.json")


def html_path(output: Path) -> Path:
    return output.with_name(output.stem + ".html")


AgentFor = Callable[[ExecuteEnv, Plan], ExecuteEnv]


def _environment(
    config: Config,
    agent: AgentKind,
    multi_turn: bool,
    llm: LLM | None,
    sandbox_factory: SandboxFactory,
    cleanup: ExitStack,
) -> tuple[ExecuteEnv, AgentFor]:
    """The episodes' shared environment, and how each task's agent is picked (controls are per plan)."""
    agent_llm = (llm or _built(config, "agent", cleanup)) if agent == "llm" else null_llm()
    user_llm = agent_llm
    if multi_turn and agent != "llm":
        user_llm = relay_user_llm()  # controls test the world and its checks, so their user says the asks as written
    elif multi_turn:
        same = config.llm_for("user") == config.llm_for("agent")
        user_llm = agent_llm if same else _built(config, "user", cleanup)
    env = ExecuteEnv(
        config=config,
        agent_llm=agent_llm,
        user_llm=user_llm,
        sandbox_factory=sandbox_factory,
        single_turn=not multi_turn,
    )
    if agent != "oracle":
        return env, lambda shared, plan: shared

    def with_oracle(shared: ExecuteEnv, plan: Plan) -> ExecuteEnv:
        oracle = oracle_llm(plan) if multi_turn else single_turn_oracle_llm(plan)
        return dataclasses.replace(shared, agent_llm=oracle)

    return env, with_oracle


def _built(config: Config, role: Literal["agent", "user"], cleanup: ExitStack) -> LLM:
    client = config.llm_for(role).build()
    cleanup.callback(client.close)
    return client


def _model_name(config: Config, agent: AgentKind) -> str:
    if agent != "llm":
        return f"control:{agent}"
    backend = config.llm_for("agent")
    model = str(getattr(backend, "model", backend.kind))
    adapter = getattr(backend, "adapter", None)  # a trained adapter on a local model (kind: transformers)
    return f"{model}+{adapter}" if adapter else model


def _traces_of(output: Path, ids: set[str]) -> list[Trace]:
    """This run's attempts as written (earlier runs' included: resume), in file order."""
    if not output.exists():
        return []
    return [trace for _, trace in read_traces(output) if trace.id in ids]


def _say_errors(stats: RunStats, output: Path, console: Console) -> None:
    if stats.errors:
        console.print(f"[yellow]{stats.errors} attempts failed to run[/] (see {errors_path(output)})")
