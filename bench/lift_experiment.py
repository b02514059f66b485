"""The loop closed: does training on ise's verified trajectories lift a model on tasks it never saw?

    nice .venv/bin/python bench/lift_experiment.py -o runs/lift [--model qwen2.5-coder-0.5b]
        [--eval-tasks seeds:logs,text] [--train-tasks seeds] [--traces TRACES.jsonl]
        [--max-eval-tasks N] [--max-train-tasks N]
        [--train-steps N] [--grad-accum N] [--attempts k]

1. The held-out eval tasks (`--eval-tasks`, any `ise eval` source). The training tasks (`--train-tasks`) are
   decontaminated against them with ise/train/decontam.py (same plan id, task text or fixtures: refused and
   counted), and the rest written to train_plans.jsonl.
2. Trajectories: `--traces` (an `ise execute` run on those plans), or by default the oracle's: `ise eval --agent
   oracle` replays each training task's reference solution in the sandbox and keeps the verdict of its checks.
   `ise export` keeps the verified successes.
3. `ise eval` of the base model on the eval tasks, `ise train` (LoRA, `--exclude-tasks` = the eval tasks again, so
   the trainer refuses any overlap that slipped through), `ise eval` of base + adapter with the same seeds.
4. pass@1 before and after with 95% Wilson intervals, and what training cost.

Every step is the `ise` command a user would run (printed as it runs), so this is also the recipe. Both evals
use the same budgets (`--max-steps` agent steps per turn, `--max-tokens` per answer) and greedy decoding, so the
only difference between them is the adapter.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ise.config import Config
from ise.jsonl import write_atomic
from ise.tasks import load_tasks
from ise.train.decontam import Decontaminator, split_plans

ISE = str(Path(sys.executable).parent / "ise")


def ise(*args: str) -> float:
    """Run one ise command, echoing it; returns its wall time."""
    print("$ ise " + " ".join(shlex.quote(a) for a in args), flush=True)
    started = time.monotonic()
    subprocess.run([ISE, *args], check=True)
    return time.monotonic() - started


def agent_settings(model: str, adapter: Path | None, max_tokens: int, max_steps: int) -> list[str]:
    settings = [
        "llm.kind=transformers",
        f"llm.model={model}",
        "llm.temperature=0",
        f"llm.max_tokens={max_tokens}",
        f"execute.max_agent_steps_per_turn={max_steps}",
    ]
    if adapter is not None:
        settings.append(f"llm.adapter={adapter}")
    return [flag for setting in settings for flag in ("-c", setting)]


def training_plans(args: argparse.Namespace, out: Path) -> Path:
    """The training tasks minus any overlapping an eval task, as a plans file."""
    config = Config()
    eval_plans = load_tasks(args.eval_tasks, config).plans[: args.max_eval_tasks]
    kept, refused = split_plans(load_tasks(args.train_tasks, config).plans, Decontaminator(eval_plans))
    kept = kept[: args.max_train_tasks]
    print(f"training tasks: {len(kept)} kept, refused as eval overlaps: {dict(refused) or 'none'}")
    eval_file = out / "eval_plans.jsonl"
    write_atomic(eval_file, eval_plans)
    path = out / "train_plans.jsonl"
    write_atomic(path, kept)
    return eval_file


def figure(summary_path: Path) -> dict[str, Any]:
    summary: dict[str, Any] = json.loads(summary_path.read_text())
    return summary["overall"]["pass_at_1"] or {"value": 0.0, "low": 0.0, "high": 1.0, "tasks": 0}


def say_pass(label: str, value: dict[str, Any]) -> str:
    interval = f"[{value['low']:.2f}, {value['high']:.2f}]"
    return f"{label:<8} pass@1 {value['value']:.2f}  95% {interval}  ({int(value['tasks'])} tasks)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-o", "--out", type=Path, required=True)
    parser.add_argument("--model", default="qwen2.5-coder-0.5b")
    parser.add_argument("--eval-tasks", default="seeds:logs,text")
    parser.add_argument("--train-tasks", default="seeds")
    parser.add_argument("--traces", type=Path, help="an `ise execute` traces file of train_plans.jsonl")
    parser.add_argument("--max-eval-tasks", type=int, default=None)
    parser.add_argument("--max-train-tasks", type=int, default=None)
    parser.add_argument("--train-steps", type=int, default=20)
    parser.add_argument("--grad-accum", type=int, default=8, help="rows per optimizer step")
    parser.add_argument("--attempts", type=int, default=1)
    parser.add_argument("--max-steps", type=int, default=6, help="agent steps per turn in both evals")
    parser.add_argument("--max-tokens", type=int, default=384, help="tokens per answer in both evals")
    args = parser.parse_args()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()

    eval_file = training_plans(args, out)
    traces = args.traces
    if traces is None:
        traces = out / "train_traces.jsonl"
        ise("eval", "--agent", "oracle", "--tasks", str(out / "train_plans.jsonl"), "-o", str(traces))
    ise("export", "-i", str(traces), "-o", str(out / "sft"))

    agent = agent_settings(args.model, None, args.max_tokens, args.max_steps)
    k = ["--attempts", str(args.attempts)]
    before_s = ise("eval", *agent, *k, "--tasks", str(eval_file), "-o", str(out / "before.jsonl"))
    train_settings = ["-c", f"train.model={args.model}", "-c", "train.max_length=4096"]
    train_settings += ["-c", f"train.grad_accum={args.grad_accum}"]
    train_s = ise(
        "train", "--data", str(out / "sft" / "trl"), "-o", str(out / "adapter"), *train_settings,
        "--max-steps", str(args.train_steps), "--exclude-tasks", str(eval_file),
    )  # fmt: skip
    tuned = agent_settings(args.model, out / "adapter", args.max_tokens, args.max_steps)
    after_s = ise("eval", *tuned, *k, "--tasks", str(eval_file), "-o", str(out / "after.jsonl"))

    trained = json.loads((out / "adapter" / "train.json").read_text())
    print()
    print(say_pass("before", figure(out / "before.summary.json")))
    print(say_pass("after", figure(out / "after.summary.json")))
    print(
        f"training: {trained['rows_trained']} trajectories ({trained['tokens']} tokens, {trained['learnt_tokens']} "
        f"learnt), refused {trained['refused'] or 'none'}, {trained['steps']} steps, {trained['seconds']:.0f} s "
        f"({trained['seconds_per_step']:.1f} s/step), peak memory {trained['peak_memory_mb'] / 1024:.1f} GiB, "
        f"{trained['device']}; losses {trained['losses'][0]:.3f} -> {trained['losses'][-1]:.3f}"
    )
    total = time.monotonic() - started
    print(f"wall: eval before {before_s:.0f} s, train {train_s:.0f} s, eval after {after_s:.0f} s, all {total:.0f} s")


if __name__ == "__main__":
    main()
