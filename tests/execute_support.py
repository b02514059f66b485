"""Shared pieces of the execute tests: plans, stateless agent/user responders, and a fake OpenAI-compatible server.

Responders read the conversation they are given and decide from it alone, so the same responder drives a
ScriptedLLM in-process, or any number of trajectories through the fake HTTP server in another process.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from ise.records import (
    Budgets,
    Check,
    Complexity,
    FileFixture,
    Fixtures,
    HiddenFact,
    Intent,
    Message,
    Milestone,
    Persona,
    Perturbation,
    Plan,
    ShellCheck,
    ToolCall,
    ToolSpec,
    UserCard,
)
from ise.sandbox.config import SandboxConfig
from ise.sandbox.docker import require_image
from ise.sandbox.engine import ensure_engine

Reply = dict[str, Any]


@pytest.fixture(scope="session")
def docker_engine() -> None:
    """A Docker engine and the workspace image, set up by the product's own code (as `ise sandbox engine` and the
    stage's preflight do); fails loudly when that is impossible, never skips."""
    ensure_engine(say=lambda _: None)
    require_image(SandboxConfig())


Responder = Callable[[Sequence[Message], Sequence[ToolSpec], dict[str, Any] | None], Reply]


SALES = {"sales.csv": "id,amount\n1,5\n2,7\n3,9\n"}

# --- plans -------------------------------------------------------------------------------------------------------


def make_plan(
    plan_id: str = "plan-1",
    *,
    milestones: list[Milestone] | None = None,
    checks: list[Check] | None = None,
    perturbations: list[Perturbation] | None = None,
    files: dict[str, str] | None = None,
    max_user_turns: int = 4,
    max_steps: int = 6,
    command_timeout_s: float = 10,
    wall_clock_s: float = 120,
    max_tokens: int = 200_000,
    complexity: Complexity = "simple",
) -> Plan:
    """A small, realistic plan: count the rows of a CSV, then write a report."""
    persona = Persona(role="data analyst", industry="retail", experience="junior", style="terse")
    intent = Intent(
        id=plan_id,
        persona=persona,
        domain="data processing",
        tasks=["count-rows", "write-report"],
        tools=["wc", "bash"],
        complexity=complexity,
        expected_turns=2,
        request="Count the rows in sales.csv into count.txt, then write report.txt.",
        deliverable="count.txt with the row count; report.txt saying the report is ready.",
        workspace=["sales.csv with a header and 3 rows"],
    )
    return Plan(
        id=plan_id,
        intent=intent,
        fixtures=Fixtures(
            files=[
                FileFixture(path=p, content=c)
                for p, c in (files or {"sales.csv": "id,amount\n1,5\n2,7\n3,9\n"}).items()
            ]
        ),
        user=UserCard(
            persona="A terse junior analyst who wants numbers, not explanations.",
            goal="A row count and a short report of sales.csv.",
            milestones=milestones
            or [
                Milestone(id="m1", ask="Count the data rows of sales.csv into count.txt.", checks=["count"]),
                Milestone(id="m2", ask="Now write report.txt that says 'report ready'.", checks=["report"]),
            ],
            hidden_facts=[HiddenFact(fact="The header row does not count.", reveal_when="asked about the header")],
        ),
        perturbations=perturbations or [],
        checks=checks
        or [
            ShellCheck(id="count", description="count.txt holds 3", command="grep -qx 3 /workspace/count.txt"),
            ShellCheck(
                id="report",
                description="report.txt says report ready",
                command="cat /workspace/report.txt",
                expect_stdout="report ready",
            ),
        ],
        budgets=Budgets(
            max_user_turns=max_user_turns,
            max_agent_steps_per_turn=max_steps,
            command_timeout_s=command_timeout_s,
            wall_clock_s=wall_clock_s,
            max_tokens=max_tokens,
        ),
    )


# --- reading a conversation -------------------------------------------------------------------------------------


def is_subagent(messages: Sequence[Message]) -> bool:
    return bool(messages) and (messages[0].content or "").startswith("You are a sub-agent")


def user_turn(messages: Sequence[Message]) -> int:
    """How many user messages the agent has been sent (its current turn); hints from the loop do not count."""
    return sum(1 for m in messages if m.role == "user" and not (m.content or "").startswith("Your last reply"))


def results_this_turn(messages: Sequence[Message]) -> list[Message]:
    """Tool results since the last user message."""
    out: list[Message] = []
    for message in reversed(messages):
        if message.role == "user":
            break
        if message.role == "tool":
            out.append(message)
    return out[::-1]


def sim_request(messages: Sequence[Message]) -> str:
    """The user simulator's turn request (its prompt's last user message)."""
    first = [m for m in messages if m.role == "user"]
    return first[0].content or "" if first else ""


def sim_closing(messages: Sequence[Message]) -> bool:
    """Is the simulator asked for its verdict (everything done, or no messages left)?"""
    request = sim_request(messages)
    return "Everything you wanted is done" in request or "You have no messages left" in request


def sim_turn(messages: Sequence[Message]) -> int:
    """The user turn being drafted: one more than the user's lines in the transcript it is shown."""
    return sim_request(messages).count("\nYOU: ") + 1


def bash(command: str) -> Reply:
    return {"tool_calls": [{"name": "bash", "arguments": {"command": command}}]}


def call(name: str, **arguments: Any) -> Reply:
    return {"tool_calls": [{"name": name, "arguments": arguments}]}


def scripted_turns(turns: dict[int, list[Reply]], sub: list[Reply] | None = None) -> Responder:
    """An agent that plays a fixed list of replies per user turn, indexed by the tool results seen so far."""

    def respond(messages: Sequence[Message], tools: Sequence[ToolSpec], schema: dict[str, Any] | None) -> Reply:
        if is_subagent(messages):
            script = sub or [{"content": "Sub-task finished."}]
        else:
            script = turns.get(user_turn(messages), [{"content": "Done."}])
        seen = len(results_this_turn(messages))
        return script[min(seen, len(script) - 1)]

    return respond


def simple_user(*, drift_on_turn: int | None = None, done_after: int = 2) -> Responder:
    """A user that asks each milestone in turn (the first is the plan's own ask, sent without the simulator) and
    says done after `done_after` turns (or when all are met)."""
    drifted: set[int] = set()
    lock = threading.Lock()

    def respond(messages: Sequence[Message], tools: Sequence[ToolSpec], schema: dict[str, Any] | None) -> Reply:
        turn = sim_turn(messages)
        regenerating = any(m.role == "assistant" for m in messages)
        with lock:
            if turn == drift_on_turn and not regenerating and turn not in drifted:
                drifted.add(turn)
                return {"content": "Sure! I'd be happy to help. Here's how you can count rows: ```wc -l```"}
        if sim_closing(messages) or turn > done_after:
            return {"content": "ok thanks [[DONE]]"}
        return {"content": "good. now write report.txt that says 'report ready'"}

    return respond


# --- a fake OpenAI-compatible endpoint ----------------------------------------------------------------------------


def _messages_from_wire(raw: list[dict[str, Any]]) -> list[Message]:
    messages = []
    for item in raw:
        calls = [
            ToolCall(id=c["id"], name=c["function"]["name"], arguments=json.loads(c["function"]["arguments"] or "{}"))
            for c in item.get("tool_calls") or []
        ]
        messages.append(
            Message(
                role=item["role"], content=item.get("content"), tool_calls=calls, tool_call_id=item.get("tool_call_id")
            )
        )
    return messages


def _tools_from_wire(raw: list[dict[str, Any]]) -> list[ToolSpec]:
    return [
        ToolSpec(
            name=t["function"]["name"],
            description=t["function"].get("description", ""),
            parameters=t["function"]["parameters"],
        )
        for t in raw
    ]


def _envelope(reply: Reply) -> dict[str, Any]:
    """What a model decoding under the constrained tool schema writes: one call, or the `respond` pseudo-tool."""
    if reply.get("tool_calls"):
        first = reply["tool_calls"][0]
        return {"name": first["name"], "arguments": first.get("arguments", {})}
    return {"name": "respond", "arguments": {"content": reply.get("content") or ""}}


class FakeOpenAI:
    """/v1/chat/completions on 127.0.0.1, answering from a responder that picks the role by the offered tools.

    `fault_rate` of requests fail, drawn from a seeded RNG: 429, 500, a hang past the client's timeout, an
    unreadable body, or a tool call whose arguments are not JSON (the model's fault, not the endpoint's)."""

    FAULTS = ("rate_limit", "server", "timeout", "garbage", "bad_arguments")

    def __init__(
        self,
        agent: Responder,
        user: Responder,
        *,
        fault_rate: float = 0.0,
        seed: int = 0,
        hang_s: float = 3.0,
        latency_s: float = 0.0,
    ) -> None:
        self.agent, self.user = agent, user
        self.fault_rate = fault_rate
        self.hang_s = hang_s
        self.latency_s = latency_s
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self.requests = 0
        self.faults: dict[str, int] = dict.fromkeys(self.FAULTS, 0)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def _draw_fault(self) -> str | None:
        with self._lock:
            self.requests += 1
            if self._rng.random() >= self.fault_rate:
                return None
            fault = self._rng.choice(self.FAULTS)
            self.faults[fault] += 1
            return fault

    def answer(self, body: dict[str, Any]) -> tuple[int, str]:
        fault = self._draw_fault()
        if self.latency_s:
            time.sleep(self.latency_s)
        if fault == "rate_limit":
            return 429, json.dumps({"error": {"message": "slow down", "type": "rate_limit"}})
        if fault == "server":
            return 500, json.dumps({"error": {"message": "boom", "type": "server_error"}})
        if fault == "timeout":
            time.sleep(self.hang_s)
        if fault == "garbage":
            return 200, "<html>502 bad gateway</html>"
        messages = _messages_from_wire(body["messages"])
        tools = _tools_from_wire(body.get("tools") or [])
        responder = self.agent if tools else self.user
        reply = responder(messages, tools, None)
        message: dict[str, Any] = {"role": "assistant", "content": reply.get("content")}
        if tools and (body.get("response_format") or {}).get("type") == "json_schema":
            message["content"] = json.dumps(_envelope(reply))  # constrained decoding: one call, as text
        elif reply.get("tool_calls"):
            message["tool_calls"] = [
                {
                    "id": f"call_{self.requests}_{i}",
                    "type": "function",
                    "function": {
                        "name": c["name"],
                        "arguments": "{not json" if fault == "bad_arguments" else json.dumps(c.get("arguments", {})),
                    },
                }
                for i, c in enumerate(reply["tool_calls"])
            ]
        words = len(json.dumps(body["messages"])) // 4
        response = {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "model": body.get("model", "fake"),
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": words, "completion_tokens": len(json.dumps(message)) // 4},
        }
        return 200, json.dumps(response)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                status, text = fake.answer(body)
                data = text.encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (its timeout): that was the point

            def log_message(self, *args: Any) -> None:
                pass

        return Handler

    def close(self) -> None:
        """Stop listening: requests to base_url are then refused (an endpoint that is down)."""
        self._server.server_close()

    @contextmanager
    def running(self) -> Iterator[FakeOpenAI]:
        thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self.close()
