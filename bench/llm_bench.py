"""Embedded model speed: server start, prompt and generation tokens/s, cost of constrained decoding, prefix cache.

    .venv/bin/python bench/llm_bench.py [--model qwen2.5-coder-0.5b] [--repeats 3] [--threads 0]

Prints medians side by side. Token rates come from llama.cpp's own timings (prompt_per_second, predicted_per_second);
"wall" columns are what a caller of OpenAIChat waits, HTTP and JSON included. Don't run it next to other heavy work:
on 2 cores every other process shows up in the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
import urllib.request
from typing import Any

from ise.llm.config import EmbeddedBackend
from ise.llm.embedded import EmbeddedLLM, EmbeddedServer, available_cores
from ise.llm.weights import MODELS, ModelFilesError, fetch_model
from ise.records import Message, ToolSpec

RUN = ToolSpec(
    name="run",
    description="Run a shell command in the workspace and return its output.",
    parameters={"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]},
)
LONG_PROMPT = "Here is a log excerpt to summarise.\n" + "\n".join(
    f"2026-05-{day:02d} 03:{minute:02d}:00 backup[{4000 + day}]: copied {day * minute} files to /srv/backup/{day}"
    for day in range(1, 11)
    for minute in range(0, 60, 10)
)


def post(server: EmbeddedServer, body: dict[str, Any]) -> dict[str, Any]:
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {server.api_key}"}
    request = urllib.request.Request(server.openai_url + "/chat/completions", json.dumps(body).encode(), headers)
    with urllib.request.urlopen(request, timeout=600) as response:
        data: dict[str, Any] = json.load(response)
    return data


def generation(server: EmbeddedServer, tokens: int, constrained: bool) -> dict[str, float]:
    body: dict[str, Any] = {
        "messages": [{"role": "user", "content": "Write a detailed essay about the history of Unix shells."}],
        "max_tokens": tokens,
        "temperature": 0.0,
        "cache_prompt": False,
    }
    if constrained:
        # A long minimum keeps the answer about as long as the free run (ignore_eos would break the grammar).
        essay = {"type": "string", "minLength": tokens * 3}
        schema = {"type": "object", "properties": {"essay": essay}, "required": ["essay"]}
        body["response_format"] = {"type": "json_schema", "json_schema": {"name": "essay", "schema": schema}}
    else:
        body["ignore_eos"] = True  # always generate exactly `tokens`, so runs are comparable
    started = time.monotonic()
    timings = post(server, body)["timings"]
    return {
        "gen_tok_s": timings["predicted_per_second"],
        "prompt_tok_s": timings["prompt_per_second"],
        "wall_s": time.monotonic() - started,
    }


def prefix_cache(server: EmbeddedServer) -> dict[str, float]:
    body = {"messages": [{"role": "user", "content": LONG_PROMPT}], "max_tokens": 1, "temperature": 0.0}
    cold_started = time.monotonic()
    cold = post(server, body | {"cache_prompt": False})
    cold_s = time.monotonic() - cold_started
    post(server, body)  # fill the cache
    warm_started = time.monotonic()
    post(server, body)
    return {
        "prompt_tokens": cold["usage"]["prompt_tokens"],
        "cold_s": cold_s,
        "warm_s": time.monotonic() - warm_started,
        "prompt_tok_s": cold["timings"]["prompt_per_second"],
    }


def tool_call_latency(llm: EmbeddedLLM) -> dict[str, float]:
    messages = [
        Message(role="system", content="You are a shell agent. Use the tools."),
        Message(role="user", content="Count the lines in data.csv."),
    ]
    result = llm.chat(messages, tools=[RUN], temperature=0.0)
    return {"wall_s": result.latency_s, "completion_tokens": result.usage.completion_tokens}


def median(runs: list[dict[str, float]], key: str) -> float:
    return statistics.median(run[key] for run in runs)


def bench(model: str, repeats: int, threads: int) -> None:
    starts = []
    for _ in range(repeats):
        server = EmbeddedServer.start(model, n_ctx=8192, threads=threads)
        starts.append(server.start_s)
        server.stop()
    print(f"\n{model} ({threads or available_cores()} threads), medians of {repeats}")
    show("server start to healthy", f"{statistics.median(starts):7.2f} s")

    llm = EmbeddedLLM(EmbeddedBackend(model=model, n_ctx=8192, threads=threads))
    try:
        server = llm.server
        free = [generation(server, 128, constrained=False) for _ in range(repeats)]
        free_rate = median(free, "gen_tok_s")
        show("prompt processing, short", f"{median(free, 'prompt_tok_s'):7.1f} tok/s")
        show("generation, free text", f"{free_rate:7.1f} tok/s")
        json_schema = [generation(server, 128, constrained=True) for _ in range(repeats)]
        json_rate = median(json_schema, "gen_tok_s")
        show("generation, json_schema", f"{json_rate:7.1f} tok/s   ratio constrained/free {json_rate / free_rate:.2f}")
        cache = [prefix_cache(server) for _ in range(repeats)]
        tokens = int(median(cache, "prompt_tokens"))
        show("prompt processing, long", f"{median(cache, 'prompt_tok_s'):7.1f} tok/s ({tokens} tokens)")
        cold, warm = median(cache, "cold_s"), median(cache, "warm_s")
        show("long prompt cold / cached", f"{cold:7.2f} s / {warm:.2f} s   speed-up {cold / warm:.1f}x")
        calls = [tool_call_latency(llm) for _ in range(repeats)]
        used = int(median(calls, "completion_tokens"))
        show("one constrained tool call", f"{median(calls, 'wall_s'):7.2f} s ({used} tokens)")
    finally:
        llm.close()


def show(label: str, figure: str) -> None:
    print(f"  {label:<30} {figure}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=[*MODELS, "all"], default="qwen2.5-coder-0.5b")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(f"load average at start: {load} on {available_cores()} cores (other work skews every figure)")
    for model in MODELS if args.model == "all" else [args.model]:
        try:
            fetch_model(model)
        except ModelFilesError as exc:
            print(f"\n{model}: skipped: {exc}")
            continue
        bench(model, args.repeats, args.threads)


if __name__ == "__main__":
    main()
