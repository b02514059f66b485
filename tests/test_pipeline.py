"""`ise run`: all stages in one folder; after an interruption a rerun redoes nothing that was finished."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from execute_support import (
    docker_engine,  # noqa: F401  (a fixture, requested by name)
    scripted_turns,
    simple_user,
)
from rich.console import Console
from simulate_support import CARD, GOOD_WORLD

from ise.config import Config, load_config
from ise.jsonl import read_records
from ise.llm.scripted import ScriptedLLM
from ise.pipeline import run_pipeline
from ise.records import Message, TerminationReason, ToolSpec, Trace

TAXONOMY = Path(__file__).resolve().parents[1] / "configs" / "taxonomy"


def config(run_dir: Path) -> Config:
    return load_config(
        [
            f"run_dir={run_dir}",
            f"intents.taxonomy={TAXONOMY}",
            "intents.count=2",
            "intents.embedding_model=hashing",
            "seed=3",
            "export.include_failed=true",
            "export.render_samples=0",
            "export.token_counter=approx",
        ]
    )


REQUESTS = [
    "Our checkout keeps failing. Go through logs/app.log, count the HTTP 500s per endpoint and record each failing "
    "endpoint as a row of the incidents table in shop.db.",
    "Quick one before the retro: which API routes returned server errors today according to logs/app.log? I want "
    "them in report/errors.csv and logged as incidents in shop.db.",
]


class IntentWriter:
    """Distinct requests (so dedup keeps both) about the files the scripted plan seeds."""

    def __init__(self) -> None:
        self.written = 0

    def __call__(self, messages: Sequence[Message], tools: Sequence[ToolSpec], schema: dict[str, Any] | None) -> Any:
        request = REQUESTS[self.written % len(REQUESTS)]
        self.written += 1
        return {
            "json": {
                "request": request,
                "deliverable": "report/errors.csv and an incidents row per failing endpoint",
                "workspace": ["logs/app.log", "shop.db"],
            }
        }


def planner(messages: Sequence[Message], tools: Sequence[ToolSpec], schema: dict[str, Any] | None) -> Any:
    return {"json": CARD if schema and schema.get("title") == "CardDraft" else GOOD_WORLD}


def endpoint_down(messages: Sequence[Message], tools: Sequence[ToolSpec], schema: dict[str, Any] | None) -> Any:
    return {"error": "connection"}


def must_not_be_called(messages: Sequence[Message], tools: Sequence[ToolSpec], schema: dict[str, Any] | None) -> Any:
    raise AssertionError("a finished stage was asked to redo its work")


@pytest.mark.usefixtures("docker_engine")
def test_run_resumes_after_interruption_without_redoing_finished_work(tmp_path: Path) -> None:
    cfg = config(tmp_path / "run")
    console = Console(file=open("/dev/null", "w"), width=120)  # noqa: SIM115, PTH123

    # First run: intents and plans are made, then the agent's endpoint is down for every episode.
    first = {
        "intents": ScriptedLLM(responder=IntentWriter()),
        "simulate": ScriptedLLM(responder=planner),
        "agent": ScriptedLLM(responder=endpoint_down),
        "user": ScriptedLLM(responder=simple_user()),
    }
    layout = run_pipeline(cfg, cfg.run_dir, console=console, llms=first)
    intents_before = layout.intents.read_text()
    plans_before = layout.plans.read_text()
    assert len(plans_before.splitlines()) == 2
    assert {t.termination for t in read_records(layout.traces, Trace)} == {TerminationReason.INFRA_ERROR}

    # Second run: the endpoint is back. Intents and plans are not asked for again; the broken episodes rerun.
    second = {
        "intents": ScriptedLLM(responder=must_not_be_called),
        "simulate": ScriptedLLM(responder=must_not_be_called),
        "agent": ScriptedLLM(responder=scripted_turns({})),
        "user": ScriptedLLM(responder=simple_user()),
    }
    run_pipeline(cfg, cfg.run_dir, console=console, llms=second)
    assert second["intents"].calls == second["simulate"].calls == []
    assert layout.intents.read_text() == intents_before
    assert layout.plans.read_text() == plans_before
    traces = list(read_records(layout.traces, Trace))
    assert len(traces) == 2
    assert len({t.id for t in traces}) == 2
    assert all(t.termination != TerminationReason.INFRA_ERROR for t in traces)
    for product in (layout.dataset / "README.md", layout.report, layout.viewer):
        assert product.exists(), product
