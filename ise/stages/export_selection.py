"""Which traces of `ise export` become rows: each trace parsed, filtered, validated and rendered in every format
(judge_lines, the workers' job), and which intents are held out for validation.

Reading and validating the traces file is ise/trace_file.py's job: report and view read with it too.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pydantic_core import from_json

from ise.config import ExportConfig
from ise.records import Trace
from ise.stages.delegation import WHOLE_DELEGATION, delegated_whole_request, subagent_rows
from ise.stages.sft_files import arrow_rows, jsonl_lines
from ise.stages.sft_rows import Row, approx_tokens, openai_messages, openai_tools, validate_conversation
from ise.trace_file import Span, parse_trace, read_span
from ise.yields import AttemptRecord


@dataclass
class Judged:
    """One input line after parsing, filtering and validation, with its finished output lines if it is kept:
    what a reading worker sends back."""

    line: int
    id: str
    provenance: tuple[tuple[tuple[str, str], ...], str, str, str]
    """((role, model), ...), image id, config hash, ise version."""
    filtered: str | None = None
    problems: list[str] = field(default_factory=list)
    metadata: Row = field(default_factory=dict)
    messages: int = 0
    tokens: int = 0
    """Approximate (see approx_tokens) until a limit asks for a real count."""
    lines: dict[str, bytes] = field(default_factory=dict)
    """Format -> JSON line; "openai" (the canonical row) is always there."""
    dropped_texts: int = 0
    """Assistant texts the ShareGPT line could not hold."""
    attempt: AttemptRecord | None = None
    """What pass@k and yield need of the trace (ise/yields.py)."""
    part: int = -1
    """Which Arrow table holds its Parquet row (-1: none), and at which index."""
    index: int = -1
    parent: str | None = None
    """A sub-agent row's trace (None: the trace's own row)."""
    subagents: list[Judged] = field(default_factory=list)
    """Its sub-agent rows (export.subagent_rows), each validated on its own."""

    def row(self) -> Row:
        """The canonical row, parsed back (only the render check and real token counts need it)."""
        return dict(from_json(self.lines["openai"]))


Candidate = Judged
"""A Judged line that passed the filters and validation."""


def is_infra_error(trace: Trace) -> bool:
    return trace.infra_error is not None or trace.termination == "infra_error" or "infra_error" in trace.tags


def filter_reason(trace: Trace, cfg: ExportConfig) -> str | None:
    """Why the filters leave this trace out, or None to keep it (then it still has to pass validation)."""
    if cfg.exclude_infra_errors and is_infra_error(trace):
        return "infra_error"
    if not cfg.include_failed and not trace.outcome.passed:
        return "checks_failed"
    if not cfg.include_unproven and not trace.env.plan_proven:
        return "unproven"
    if cfg.require_recovery and not any(f.recovered_by is not None for f in trace.failures):
        return "no_recovery"
    if trace.turns < cfg.min_user_turns:
        return "too_few_user_turns"
    if cfg.max_user_turns is not None and trace.turns > cfg.max_user_turns:
        return "too_many_user_turns"
    if not cfg.include_whole_delegation and delegated_whole_request(trace.steps):
        return WHOLE_DELEGATION  # checked last: only this reason still lets the sub-agent rows through
    return None


def canonical_row(trace: Trace) -> Row:
    """The OpenAI-format row plus the metadata a trainer may filter or weight by."""
    return {
        "id": trace.id,
        "messages": openai_messages(trace.messages),
        "tools": openai_tools(trace.tools),
        "metadata": {
            "intent_id": trace.plan_id,  # attempts at one plan stay in one split
            "domain": trace.intent.domain,
            "complexity": trace.intent.complexity,
            "persona": trace.intent.persona.role,
            "passed": trace.outcome.passed,
            "termination": str(trace.termination),
            "user_turns": trace.turns,
            "tool_calls": sum(len(m.tool_calls) for m in trace.messages),
            "recoveries": trace.recoveries,
            "tags": list(trace.tags),
            "subagent": False,
            "parent_id": None,
        },
    }


def judge_lines(job: tuple[Span, ExportConfig]) -> tuple[list[Judged], Any]:
    """Parse, filter and validate a span of input lines and render the kept ones in every format (runs in a
    worker process). Returns the verdicts and, if Parquet is wanted, an Arrow table of the kept rows."""
    span, cfg = job
    path = span[0]
    judged: list[Judged] = []
    rows: list[Row] = []
    for lineno, raw in read_span(span):
        trace = parse_trace(path, lineno, raw)
        env = trace.env
        models = tuple((usage.role, usage.model) for usage in trace.usage)
        verdict = Judged(lineno, trace.id, (models, env.image_id, env.config_hash, env.ise_version))
        judged.append(verdict)
        verdict.attempt = AttemptRecord.of(trace)
        verdict.filtered = filter_reason(trace, cfg)
        if verdict.filtered is None or (cfg.subagent_rows and verdict.filtered == WHOLE_DELEGATION):
            row = canonical_row(trace)
            if verdict.filtered is None:
                _judge_row(verdict, row, cfg, rows)
            if cfg.subagent_rows:
                sub_rows = subagent_rows(trace, row["metadata"])
                verdict.subagents = [
                    _judge_row(Judged(lineno, sub["id"], verdict.provenance, parent=trace.id), sub, cfg, rows)
                    for sub in sub_rows
                ]
    return judged, (arrow_rows(rows) if rows else None)


def _judge_row(verdict: Judged, row: Row, cfg: ExportConfig, rows: list[Row]) -> Judged:
    """Validate one row and, if it is legal, render it in every format (its Parquet row goes into `rows`)."""
    verdict.problems = validate_conversation(row["messages"], row["tools"])
    if verdict.problems:
        return verdict
    verdict.metadata, verdict.messages = row["metadata"], len(row["messages"])
    verdict.tokens = approx_tokens(row["messages"], row["tools"])
    verdict.lines, verdict.dropped_texts = jsonl_lines(row, cfg.formats)
    if "parquet" in cfg.formats:
        verdict.index = len(rows)
        rows.append(row)
    return verdict


def split_intents(intent_ids: Iterable[str], fraction: float, seed: int) -> set[str]:
    """The intents held out for validation: the round(fraction * n) intents that rank first under a seeded hash
    (at least one when fraction > 0 and there are two or more intents). Deterministic, order-independent."""
    unique = sorted(set(intent_ids))
    if fraction <= 0 or len(unique) < 2:
        return set()
    count = min(len(unique) - 1, max(1, round(fraction * len(unique))))
    ranked = sorted(unique, key=lambda i: hashlib.sha256(f"{seed}:{i}".encode()).digest())
    return set(ranked[:count])
