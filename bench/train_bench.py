"""Cost of `ise train` (LoRA) on this machine: seconds per optimizer step and peak memory at 2k and 4k tokens.

Each length is one real `ise train` run in its own process (so its peak memory is its own) on a conversation of
about that many tokens: a task, tool calls and long shell output, shaped like an exported trajectory. The figures
come from the run's train.json (steps timed from the first step, model loading excluded; peak resident memory of
the process, or peak GPU memory on a GPU).

    nice .venv/bin/python bench/train_bench.py [--model qwen2.5-coder-0.5b] [--lengths 2048,4096] [--steps 2]

The last lines scale the figure to the method's size (23k trajectories, an 8B model), by FLOPs: training costs
about 6 x parameters x tokens (8 x with activation checkpointing), whatever the hardware.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ise.stages.sft_rows import approx_tokens

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from train_support import BASH, call  # the training tests' tool and call shapes: one definition for both

ROOT = Path(__file__).resolve().parent.parent


def conversation(tokens: int) -> dict[str, Any]:
    """A trajectory of about `tokens` tokens: two commands whose output is a long listing."""
    listing_line = "-rw-r--r-- 1 agent agent  48213 Mar  3 10:12 /workspace/data/sample_{:05d}.csv\n"

    def row(lines: int) -> dict[str, Any]:
        listing = "".join(listing_line.format(i) for i in range(lines))
        messages = [
            {"role": "system", "content": "You are a careful terminal agent working in /workspace."},
            {"role": "user", "content": "Which CSV files in /workspace/data are larger than 40 kB? Count them."},
            {"role": "assistant", "content": "Listing.", "tool_calls": [call("c1", "ls -l /workspace/data")]},
            {"role": "tool", "tool_call_id": "c1", "name": "bash", "content": listing},
            {"role": "assistant", "content": None, "tool_calls": [call("c2", "find /workspace/data -size +40k | wc")]},
            {"role": "tool", "tool_call_id": "c2", "name": "bash", "content": str(lines)},
            {"role": "assistant", "content": f"{lines} CSV files are larger than 40 kB."},
        ]
        return {"messages": messages, "tools": [BASH]}

    lines = 1
    while approx_tokens(_as_openai(row(lines * 2))["messages"], [BASH]) < tokens:
        lines *= 2
    low, high = lines, lines * 2
    while high - low > 1:
        middle = (low + high) // 2
        short = approx_tokens(_as_openai(row(middle))["messages"], [BASH]) < tokens
        low, high = (middle, high) if short else (low, middle)
    return row(low)


def _as_openai(value: dict[str, Any]) -> dict[str, Any]:
    """approx_tokens reads arguments as JSON strings (the canonical shape)."""
    messages = []
    for message in value["messages"]:
        calls = [
            {**c, "function": {**c["function"], "arguments": json.dumps(c["function"]["arguments"])}}
            for c in message.get("tool_calls") or []
        ]
        messages.append({**message, "tool_calls": calls} if calls else message)
    return {**value, "messages": messages}


def run_length(model: str, tokens: int, steps: int, folder: Path) -> dict[str, Any]:
    data = folder / f"trl-{tokens}"
    data.mkdir(parents=True)
    (data / "train.jsonl").write_text(json.dumps(conversation(int(tokens * 0.95))) + "\n", encoding="utf-8")
    out = folder / f"adapter-{tokens}"
    settings = {
        "model": model,
        "max_length": tokens,
        "overlong": "error",
        "max_steps": steps,
        "grad_accum": 1,
        "save_steps": 10_000,
        "gradient_checkpointing": True,
    }
    command = [str(Path(sys.executable).parent / "ise"), "train", "--data", str(data), "-o", str(out)]
    for key, value in settings.items():
        command += ["-c", f"train.{key}={json.dumps(value)}"]
    started = time.monotonic()
    subprocess.run(command, check=True, cwd=ROOT)
    summary: dict[str, Any] = json.loads((out / "train.json").read_text())
    summary["wall_s"] = round(time.monotonic() - started, 1)
    return summary


def method_scale(seconds_per_token: float, params_measured: float) -> list[str]:
    """What 23k trajectories on an 8B model would need, scaled by FLOPs from this measurement."""
    trajectories, mean_tokens, params = 23_000, 6_000, 8e9
    tokens = trajectories * mean_tokens
    # forward + backward + recomputed forward (activation checkpointing); an upper bound for LoRA, which skips the
    # frozen weights' gradients (about 6 x)
    flops = 8 * params * tokens
    here = seconds_per_token * tokens * params / params_measured
    h100_s = flops / (989e12 * 0.4)  # H100 SXM dense bf16 peak, at 40% utilisation
    return [
        f"method scale: {trajectories} trajectories x ~{mean_tokens} tokens = {tokens / 1e6:.0f}M tokens per epoch, "
        "an 8B model",
        f"  ~{flops:.1e} FLOPs per epoch; on this CPU ~{here / 86400 / 365:.0f} years; "
        f"on one H100 ~{h100_s / 3600:.0f} h (8 x H100 ~{h100_s / 3600 / 8:.1f} h)",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="qwen2.5-coder-0.5b")
    parser.add_argument("--lengths", default="2048,4096")
    parser.add_argument("--steps", type=int, default=2)
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="ise-train-bench-") as tmp:
        for tokens in (int(t) for t in args.lengths.split(",")):
            summary = run_length(args.model, tokens, args.steps, Path(tmp))
            results.append((tokens, summary))
            print(
                f"{tokens:>5} max tokens ({summary['tokens']} in the row): {summary['seconds_per_step']:.1f} s/step, "
                f"peak memory {summary['peak_memory_mb'] / 1024:.2f} GiB, {summary['device']}, "
                f"losses {summary['losses']}, wall {summary['wall_s']} s",
                flush=True,
            )
    tokens, last = results[-1]
    for line in method_scale(last["seconds_per_step"] / last["tokens"], 0.494e9):
        print(line)


if __name__ == "__main__":
    main()
