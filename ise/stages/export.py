"""`ise export`: traces -> filtered, validated, split SFT datasets in several formats, written atomically.

The output folder holds (each format only if selected):

    openai/{train,validation}.jsonl      canonical: messages + tools, tool-call arguments as JSON strings
    trl/{train,validation}.jsonl         messages + tools, arguments as objects (what HF chat templates read)
    sharegpt/{train,validation}.jsonl    conversations (human/gpt/function_call/observation) + system + tools
    parquet/{train,validation}.parquet   the canonical rows; arguments stay JSON strings (as dicts, Arrow merges keys)
    filtered.jsonl                       traces the filters left out, with the reason
    rejects.jsonl                        rows that failed validation or the render check, with every reason
    export.json                          counts, filters, provenance, statistics (also marks the folder as ours)
    README.md                            the dataset card

Everything is written into a temporary folder beside the target and renamed into place at the end, so a failure
(bad input line, full disk, Ctrl-C) leaves either the previous export or nothing, never half of one.

Speed: parsing/validation and the format writers are CPU-bound Python, so both run in forked worker processes
(one per core); bench/export_bench.py measures it.

This module is the pipeline and the command; its parts live beside it: chat_template.py (the model's real chat
template, for the render check and token counts), export_selection.py (each trace parsed, filtered, validated and
rendered: the workers' job) and export_summary.py (export.json's summary, statistics and the dataset card).
"""

from __future__ import annotations

import gc
import itertools
import json
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any, get_args

from rich.console import Console

from ise.config import Config, ExportConfig, TaskFormat
from ise.errors import InputError, IseError
from ise.llm.config import EmbeddedBackend
from ise.outputs import current_umask, make_folder, refuse_inputs, within, writable_folder
from ise.stages.chat_template import ChatTemplate, chat_template_for
from ise.stages.export_selection import Candidate, judge_lines, split_intents
from ise.stages.export_summary import ExportSummary, ProvenanceTally, render_card, split_stats
from ise.stages.sft_files import (
    JSONL_FORMATS,
    available_cores,
    ordered_map,
    parquet_schemas,
    replace_dir,
    write_jsonl,
    write_lines,
    write_parquet,
)
from ise.stages.sft_rows import APPROX_TOKENS, Row, check_rendered
from ise.tasks.sinks import write_task_formats
from ise.trace_file import TraceIds, file_spans
from ise.yields import verified_rows

MANIFEST = "export.json"


# --- the export ----------------------------------------------------------------------------------------------


def export(
    traces_path: Path,
    out_dir: Path,
    cfg: ExportConfig,
    *,
    template: ChatTemplate | None = None,
    processes: int | None = None,
) -> ExportSummary:
    """Read, filter, validate, count, check, split and write; see the module docstring for the layout.
    `processes` defaults to the number of cores; 1 runs everything in this process."""
    _check_target(out_dir, traces_path)
    # Millions of small dicts and strings, none in reference cycles: the cyclic GC would rescan them over and
    # over (measured: 3x slower reading and Parquet conversion). Reference counting still frees everything.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _export(traces_path, out_dir, cfg, template, processes or available_cores())
    finally:
        if gc_was_enabled:
            gc.enable()


def _export(
    traces_path: Path, out_dir: Path, cfg: ExportConfig, template: ChatTemplate | None, processes: int
) -> ExportSummary:
    summary = ExportSummary(out_dir=out_dir)
    filtered: list[Row] = []
    rejects: list[Row] = []
    if "parquet" in cfg.formats:
        parquet_schemas()  # imports `datasets` once, before the workers fork
    with summary.timed("read, validate, format"):
        candidates, tables = _select(traces_path, cfg, summary, filtered, rejects, processes)
    with summary.timed("count tokens"):
        summary.token_counter = _count_tokens(candidates, cfg, template)
        if cfg.max_tokens is not None:
            candidates = _drop_long(candidates, cfg.max_tokens, summary, filtered)
    with summary.timed("render check"):
        candidates = _render_check(candidates, cfg, template, summary, rejects)
    summary.rejected = len(rejects)
    with summary.timed("split and stats"):
        intents = (c.metadata["intent_id"] for c in candidates)
        held_out = split_intents(intents, cfg.validation_fraction, cfg.seed)
        splits = {
            "train": [c for c in candidates if c.metadata["intent_id"] not in held_out],
            "validation": [c for c in candidates if c.metadata["intent_id"] in held_out],
        }
        summary.rows = {name: len(rows) for name, rows in splits.items()}
        summary.stats = {name: split_stats(rows) for name, rows in splits.items()}
        summary.yields = summary.attempts.table(exported=verified_rows(c.metadata for c in candidates))
    _write_all(out_dir, splits, tables, filtered, rejects, cfg, summary, traces_path)
    return summary


def _check_target(out_dir: Path, traces_path: Path) -> None:
    """Refuse to replace a folder we did not write (`-o .` must never wipe someone's work), or one holding the
    input; and prove the folder beside it takes the staging folder, before any work."""
    refuse_inputs(out_dir, [traces_path])
    if within(traces_path, out_dir):
        raise InputError(f"output {out_dir} holds the input {traces_path}: replacing it would destroy the input")
    if out_dir.exists() and (not out_dir.is_dir() or (any(out_dir.iterdir()) and not (out_dir / MANIFEST).exists())):
        raise IseError(f"{out_dir} exists and is not an ise export folder (no {MANIFEST}); choose another -o")
    writable_folder(out_dir.parent, out_dir)


def _select(
    traces_path: Path,
    cfg: ExportConfig,
    summary: ExportSummary,
    filtered: list[Row],
    rejects: list[Row],
    processes: int,
) -> tuple[list[Candidate], list[Any]]:
    """Read every trace; keep those the filters pass whose conversation is legal; note the rest with reasons.
    Workers handle a chunk of lines each; results come back in file order. Returns the kept lines and the Arrow
    tables their Parquet rows are in."""
    candidates: list[Candidate] = []
    tables: list[Any] = []
    ids = TraceIds(traces_path)
    provenance = ProvenanceTally()
    jobs = ((span, cfg) for span in file_spans(traces_path))
    for chunk, table in ordered_map(judge_lines, jobs, processes):
        if table is not None:
            tables.append(table)
        for judged in chunk:
            ids.add(judged.id, judged.line)
            summary.read += 1
            provenance.add(*judged.provenance)
            if judged.attempt is not None:
                summary.attempts.add(judged.attempt)
            if judged.filtered is not None:
                summary.filtered[judged.filtered] += 1
                filtered.append({"id": judged.id, "line": judged.line, "reason": judged.filtered})
            for row in ([] if judged.filtered else [judged]) + judged.subagents:
                if row.problems:
                    reject = {"id": row.id, "line": row.line, "stage": "validation", "reasons": row.problems}
                    rejects.append(reject)
                else:
                    row.part = len(tables) - 1 if row.index >= 0 else -1
                    candidates.append(row)
    if not summary.read:
        raise InputError(f"{traces_path}: no traces in the file, nothing to export")
    summary.provenance = provenance.as_dict()
    return candidates, tables


def _count_tokens(candidates: list[Candidate], cfg: ExportConfig, template: ChatTemplate | None) -> str:
    """Real counts when a limit asks for them and a tokenizer is at hand; else the workers' approximations."""
    if template is None or cfg.token_counter == "approx" or cfg.max_tokens is None:
        return APPROX_TOKENS
    for candidate in candidates:
        row = candidate.row()
        candidate.tokens = template.count_tokens(row["messages"], row["tools"])
    return template.name


def _drop_long(candidates: list[Candidate], limit: int, summary: ExportSummary, filtered: list[Row]) -> list[Candidate]:
    kept = []
    for candidate in candidates:
        if candidate.tokens > limit:
            summary.filtered["too_many_tokens"] += 1
            filtered.append({"id": candidate.id, "line": candidate.line, "reason": "too_many_tokens"})
        else:
            kept.append(candidate)
    return kept


def _render_check(
    candidates: list[Candidate],
    cfg: ExportConfig,
    template: ChatTemplate | None,
    summary: ExportSummary,
    rejects: list[Row],
) -> list[Candidate]:
    """Render a seeded sample through the real chat template; rows whose parts are misplaced are rejected."""
    if template is None or cfg.render_samples == 0 or not candidates:
        return candidates
    sample = random.Random(cfg.seed).sample(candidates, min(cfg.render_samples, len(candidates)))
    failed: set[str] = set()
    for candidate in sample:
        row = candidate.row()
        messages, tools = row["messages"], row["tools"]
        try:
            problems = check_rendered(template.render(messages, tools), messages)
        except IseError as exc:
            problems = [f"the template server refused it: {exc}"]
        if problems:
            failed.add(candidate.id)
            rejects.append({"id": candidate.id, "line": candidate.line, "stage": "render", "reasons": problems})
    summary.render_checked, summary.render_failed = len(sample), len(failed)
    return [c for c in candidates if c.id not in failed]


# --- writing -------------------------------------------------------------------------------------------------


def _write_all(
    out_dir: Path,
    splits: dict[str, list[Candidate]],
    tables: list[Any],
    filtered: list[Row],
    rejects: list[Row],
    cfg: ExportConfig,
    summary: ExportSummary,
    traces_path: Path,
) -> None:
    make_folder(out_dir.parent, out_dir)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        staging.chmod(0o777 & ~current_umask())  # mkdtemp makes it 0700; the export is a folder like any other
        for split, candidates in splits.items():
            _write_split(staging, split, candidates, tables, cfg, summary)
        if task_formats := [f for f in cfg.formats if f in get_args(TaskFormat)]:
            with summary.timed("write " + ", ".join(task_formats)):
                exported = {
                    split: [c.id for c in candidates if c.parent is None] for split, candidates in splits.items()
                }
                summary.task_files = write_task_formats(staging, exported, traces_path, cfg)
        with summary.timed("write card"):
            write_jsonl(staging / "filtered.jsonl", filtered)
            write_jsonl(staging / "rejects.jsonl", rejects)
            (staging / MANIFEST).write_text(json.dumps(summary.as_dict(cfg), indent=2) + "\n", encoding="utf-8")
            (staging / "README.md").write_text(render_card(summary, cfg), encoding="utf-8")
        replace_dir(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _write_split(
    staging: Path, split: str, candidates: list[Candidate], tables: list[Any], cfg: ExportConfig, summary: ExportSummary
) -> None:
    for fmt in JSONL_FORMATS:
        if fmt in cfg.formats:
            with summary.timed(f"write {fmt}"):
                write_lines(staging / fmt / f"{split}.jsonl", (c.lines[fmt] for c in candidates))
    if "sharegpt" in cfg.formats:
        summary.sharegpt_dropped_texts += sum(c.dropped_texts for c in candidates)
    if "parquet" in cfg.formats:
        with summary.timed("write parquet"):
            # Candidates are in file order, so each worker table's rows form one run: take them run by run.
            runs = [(part, [c.index for c in group]) for part, group in itertools.groupby(candidates, lambda c: c.part)]
            write_parquet(staging / "parquet" / f"{split}.parquet", [(tables[part], rows) for part, rows in runs])


# --- command -------------------------------------------------------------------------------------------------


def run_export(traces_path: Path, out_dir: Path, config: Config, *, console: Console) -> ExportSummary:
    """`ise export`: start the template server if the settings need one, export, print what happened."""
    cfg = config.export
    agent = config.llm_for("agent")
    backend = agent if isinstance(agent, EmbeddedBackend) else EmbeddedBackend()
    with chat_template_for(cfg, backend) as template:
        summary = export(traces_path, out_dir, cfg, template=template)
    total = sum(summary.rows.values())
    console.print(
        f"exported {total} rows (train {summary.rows['train']}, validation {summary.rows['validation']}) "
        f"from {summary.read} traces to {out_dir}"
    )
    if summary.filtered:
        reasons = ", ".join(f"{reason} {n}" for reason, n in sorted(summary.filtered.items()))
        console.print(f"left out by filters: {reasons} (see {out_dir / 'filtered.jsonl'})")
    if summary.rejected:
        console.print(f"[yellow]rejected {summary.rejected} rows[/] (reasons in {out_dir / 'rejects.jsonl'})")
    if summary.render_checked:
        ok = summary.render_checked - summary.render_failed
        console.print(f"render check: {ok}/{summary.render_checked} rows rendered correctly by {backend.model}")
    elif cfg.render_samples and total:
        console.print("render check skipped: the embedded model is not fetched (`ise llm fetch`)")
    return summary
