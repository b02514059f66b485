"""Shared pieces of the simulate tests: the hand-written plan, LLM drafts for its intent, and real sandboxes."""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import yaml

from ise.records import Intent, Plan, Profile
from ise.sandbox import lifecycle
from ise.sandbox.base import Sandbox
from ise.sandbox.config import SandboxConfig
from ise.sandbox.docker import open_sandbox
from ise.sandbox.docker_api import shared_api
from ise.sandbox.engine import ensure_engine
from ise.sandbox.image import build_image
from ise.sandbox.provider import SandboxFactory

DATA = Path(__file__).parent / "data" / "simulate"
RUN_ID = f"pytest-simulate-{uuid.uuid4().hex[:8]}"
"""Every container the simulate tests make carries this run id."""


def good_plan() -> Plan:
    return Plan.model_validate(yaml.safe_load((DATA / "good_plan.yaml").read_text()))


def intent(intent_id: str = "shop-500s") -> Intent:
    return good_plan().intent.model_copy(update={"id": intent_id})


NO_ANSWER = {"match": "none", "expected": "", "expected_from": ""}
"""A milestone's answer when it asks no question."""

GOOD_WORLD: dict[str, Any] = {
    "goal": "know which endpoints fail with 500 and record them as incidents",
    "files": [
        {
            "path": "logs/app.log",
            "content": "10:00:03 POST /api/checkout 500 340ms\n10:00:04 GET /api/cart 200 9ms\n",
            "executable": False,
        },
        {"path": "~/shop/checkout.py", "content": "def total(items):\n    return sum(items)\n", "executable": False},
        {"path": "schema.sql", "content": "CREATE TABLE incidents (endpoint TEXT, n INTEGER);\n", "executable": False},
    ],
    "setup_as_agent": "sqlite3 shop.db < schema.sql\ncd ~/shop && git init -q && git add -A && git commit -qm 'go'",
    "setup_as_root": "",
    "milestones": [
        {
            "ask": "count the 500s per endpoint into report/errors.csv",
            "solution": "mkdir -p report\n"
            "awk '$4 == 500 {n[$3]++} END {for (e in n) print e \",\" n[e]}' logs/app.log > report/errors.csv",
            "checks": [
                {
                    "description": "checkout counted",
                    "command": "grep -qx '/api/checkout,1' /workspace/report/errors.csv",
                    "expect_exit": 0,
                    "expect_stdout": "",
                }
            ],
            "answer": dict(NO_ANSWER),
        },
        {
            "ask": "now log them in the incidents table",
            "solution": "sqlite3 shop.db \"INSERT INTO incidents VALUES ('/api/checkout', 1)\"",
            "checks": [
                {
                    "description": "one incident",
                    "command": "sqlite3 /workspace/shop.db 'SELECT count(*) FROM incidents'",
                    "expect_exit": 0,
                    "expect_stdout": "1",
                }
            ],
            "answer": dict(NO_ANSWER),
        },
    ],
    "perturbations": [
        {
            "description": "the log is rotated",
            "script": "mv /workspace/logs/app.log /workspace/logs/app.log.1",
            "at_user_turn": 2,
            "when": "",
        }
    ],
}

PASSING_CHECK = {
    "description": "the log exists",
    "command": "test -f /workspace/logs/app.log",
    "expect_exit": 0,
    "expect_stdout": "",
}

CARD: dict[str, Any] = {
    "voice": "terse, lowercase, never more than one line",
    "hidden_facts": [{"fact": "the csv has no header", "reveal_when": "asked about the format"}],
    "on_failure": "says 'still broken' and pastes the error",
    "on_question": "answers in three words",
    "on_partial": "",
}


def bad_world() -> dict[str, Any]:
    """GOOD_WORLD with a first check that already passes on the initial state."""
    world = copy.deepcopy(GOOD_WORLD)
    world["milestones"][0]["checks"] = [PASSING_CHECK]
    return world


@contextmanager
def docker_sandboxes(config: SandboxConfig | None = None) -> Iterator[SandboxFactory]:
    """Fresh sandboxes from the real image, made ready the way `ise sandbox engine/build` does (never skipped);
    afterwards none of the simulate tests' containers may be left."""
    ensure_engine()
    build_image("workspace")
    config = config or SandboxConfig()

    def opener(profile: Profile) -> AbstractContextManager[Sandbox]:
        return open_sandbox(config.for_profile(config.resolve(profile)), run_id=RUN_ID)

    yield opener
    assert lifecycle.ours(shared_api(), run_id=RUN_ID) == []
