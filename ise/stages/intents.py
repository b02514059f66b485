"""Stage 1, `ise intents`: sample the matrix, have the LLM realise each cell, dedup the pool, measure diversity.

Files, for an output `intents.jsonl`:
  intents.raw.jsonl          every realised intent, appended as it is made (the runner's resumable output)
  intents.raw.errors.jsonl   cells the LLM could not realise, with the reason
  intents.jsonl              the deduplicated pool, rewritten atomically from the raw file at the end of each run
  intents.duplicates.jsonl   removed intents, each with the kept intent it duplicates and the score
  intents.stats.json         Vendi score, distinct-n, coverage per cell and per persona facet
A rerun of the same command skips cells already in the raw file and rebuilds the rest, so an interrupted run
loses nothing and never duplicates an intent.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache, partial
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel
from rich.console import Console
from rich.table import Table

from ise.config import Config
from ise.dedup import deduplicate
from ise.diversity import (
    CellCoverage,
    FacetCoverage,
    cell_coverage,
    coverage_table,
    distinct_n,
    facet_coverage,
    vendi_score,
)
from ise.embeddings import Embedder, build_embedder
from ise.errors import InputError
from ise.jsonl import read_records, write_atomic
from ise.llm.base import LLM
from ise.llm.structured import chat_json
from ise.outputs import write_text_atomic
from ise.prompts import PROMPTS_DIR, render
from ise.records import Intent, IntentDraft, Message, Persona, Record
from ise.runner import errors_path, preflight, run_stage
from ise.sampling import LEVELS, IntentCell, check_priors, sample_cells
from ise.taxonomy import FILES as TAXONOMY_FILES
from ise.taxonomy import Task, Taxonomy, load_taxonomy

# --- realisation: one cell -> one Intent ----------------------------------------------------------------------


class _ExampleTask(Record):
    summary: str
    mention: str


class IntentExample(Record):
    """A demonstration turn (prompts/intent_examples.yaml): small models follow a shown answer far better than
    instructions, and a whole earlier turn is not copied the way an inline example is."""

    domain: str
    persona: Persona
    role_hint: str
    experience_hint: str
    style_hint: str
    tasks: list[_ExampleTask]
    answer: IntentDraft


@cache
def intent_examples() -> tuple[IntentExample, ...]:
    path = PROMPTS_DIR / "intent_examples.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return tuple(IntentExample.model_validate(item) for item in data)


def intent_prompt(cell: IntentCell, taxonomy: Taxonomy) -> str:
    return render(
        "intent.jinja",
        persona=cell.persona,
        role_hint=taxonomy.facet("role", cell.persona.role).hint,
        experience_hint=taxonomy.facet("experience", cell.persona.experience).hint,
        style_hint=taxonomy.facet("style", cell.persona.style).hint,
        tasks=[
            {"summary": task.summary, "mention": _mention_hint(task)}
            for task in (taxonomy.task(task_id) for task_id in cell.tasks)
        ],
    )


def intent_messages(cell: IntentCell, taxonomy: Taxonomy) -> list[Message]:
    """One demonstration and then the cell's own prompt. The demonstration is from another domain, and which one
    varies with the cell, so what a small model borrows from it is spread over several examples."""
    candidates = [example for example in intent_examples() if example.domain != cell.domain]
    example = candidates[_call_seed(cell.id) % len(candidates)]
    shown = render(
        "intent.jinja",
        persona=example.persona,
        role_hint=example.role_hint,
        experience_hint=example.experience_hint,
        style_hint=example.style_hint,
        tasks=[task.model_dump() for task in example.tasks],
    )
    return [
        Message(role="user", content=shown),
        Message(role="assistant", content=example.answer.model_dump_json()),
        Message(role="user", content=intent_prompt(cell, taxonomy)),
    ]


def realise(cell: IntentCell, *, taxonomy: Taxonomy, llm: LLM, max_attempts: int) -> Intent:
    """Ask the LLM for a schema-valid draft (repairing with the validation error), then flag what it left out."""
    messages = intent_messages(cell, taxonomy)
    draft, completions = chat_json(llm, messages, IntentDraft, max_attempts=max_attempts, seed=_call_seed(cell.id))
    tasks = [taxonomy.task(task_id) for task_id in cell.tasks]
    request = draft.request.strip()
    return Intent(
        id=cell.id,
        persona=cell.persona,
        domain=cell.domain,
        tasks=cell.tasks,
        tools=list(dict.fromkeys(tool for task in tasks for tool in task.tools)),
        complexity=cell.complexity,
        expected_turns=cell.expected_turns,
        request=request,
        deliverable=draft.deliverable.strip(),
        workspace=[item.strip() for item in draft.workspace if item.strip()],
        missing=missing_requirements(request, tasks),
        model=completions[-1].model or llm.model,
        seed=cell.seed,
    )


_WORD = re.compile(r"[a-z0-9]+")


def mentions(text: str, requirement: str) -> bool:
    """Whether `text` mentions `requirement` ("a|b": either). A multi-word alternative needs all its words; a word
    counts when some word of the text starts with its stem, so "compress" finds "compressed" and "rotation"
    finds "rotate"."""
    words = set(_WORD.findall(text.lower()))
    for alternative in requirement.split("|"):
        terms = _WORD.findall(alternative.lower())
        if terms and all(any(word.startswith(_stem(term)) for word in words) for term in terms):
            return True
    return False


def missing_requirements(request: str, tasks: Sequence[Task]) -> list[str]:
    needed = dict.fromkeys(requirement for task in tasks for requirement in task.requires)
    return [requirement for requirement in needed if not mentions(request, requirement)]


def _stem(term: str) -> str:
    return term[: max(4, len(term) - 3)]


def _mention_hint(task: Task) -> str:
    return ", ".join(f'"{requirement.split("|")[0]}"' for requirement in task.requires)


def _call_seed(cell_id: str) -> int:
    """A per-cell sampling seed, so a rerun of one cell asks the model the same way."""
    return int(cell_id.removeprefix("int-")[:8], 16)


# --- the whole stage ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IntentsPaths:
    output: Path
    raw: Path
    duplicates: Path
    stats: Path

    @property
    def errors(self) -> Path:
        return errors_path(self.raw)

    @classmethod
    def for_output(cls, output: Path) -> IntentsPaths:
        stem = output.name.removesuffix(".jsonl")
        return cls(
            output=output,
            raw=output.with_name(f"{stem}.raw.jsonl"),
            duplicates=output.with_name(f"{stem}.duplicates.jsonl"),
            stats=output.with_name(f"{stem}.stats.json"),
        )


class IntentsStats(Record):
    sampled: int
    realised: int
    failed: int
    """Cells with no realised intent (see the errors file); a rerun retries them."""
    kept: int
    duplicates: dict[str, int]
    """Removed per dedup pass: exact, near, semantic."""
    embedding_model: str
    dedup_threshold: float
    vendi: float
    """Effective number of distinct intents (cosine over the embeddings, q=1)."""
    distinct: dict[str, float]
    """distinct-1, -2, -3 over the requests."""
    flagged_missing: int
    """Kept intents whose request does not mention every requirement of its tasks."""
    cells: list[CellCoverage]
    facets: dict[str, FacetCoverage]


def run_intents(
    config: Config,
    output: Path,
    *,
    count: int | None = None,
    llm: LLM | None = None,
    embedder: Embedder | None = None,
    console: Console | None = None,
) -> IntentsStats:
    """Sample, realise (resumable), dedup and measure. Inputs are all checked before anything is written."""
    console = console or Console(stderr=True)
    settings = config.intents
    paths = IntentsPaths.for_output(output)
    if output.is_dir():
        raise InputError(f"output {output} is a directory; give a .jsonl file path")
    taxonomy_files = [settings.taxonomy / name for name in TAXONOMY_FILES]
    preflight(paths.raw, inputs=taxonomy_files, sidecars=[paths.output, paths.duplicates, paths.stats])
    check_priors(settings.complexity_priors)
    taxonomy = load_taxonomy(settings.taxonomy).restricted(settings.domains)
    cells = sample_cells(taxonomy, count or settings.count, settings.complexity_priors, config.seed)
    embedder = embedder or build_embedder(settings.embedding_model)
    own_llm = llm is None
    llm = llm or config.llm_for("intents").build()
    try:
        run_stage(
            cells,
            partial(realise, taxonomy=taxonomy, llm=llm, max_attempts=settings.max_attempts),
            paths.raw,
            workers=config.workers,
            description="intents",
            label=lambda intent: "flagged" if intent.missing else "complete",
            console=console,
        )
    finally:
        if own_llm:
            llm.close()
    stats = finish_pool(cells, taxonomy, paths, embedder, threshold=settings.dedup_threshold, config=config)
    print_stats(stats, console)
    return stats


def finish_pool(
    cells: Sequence[IntentCell],
    taxonomy: Taxonomy,
    paths: IntentsPaths,
    embedder: Embedder,
    *,
    threshold: float | None,
    config: Config,
) -> IntentsStats:
    """Rebuild the final pool from the raw file: this run's cells only, in sampling order, deduplicated."""
    order = {cell.id: position for position, cell in enumerate(cells)}
    realised: dict[str, Intent] = {}
    if paths.raw.exists():
        for intent in read_records(paths.raw, Intent):
            if intent.id in order:
                realised.setdefault(intent.id, intent)
    pool = sorted(realised.values(), key=lambda intent: order[intent.id])
    cutoff = embedder.default_threshold if threshold is None else threshold
    result = deduplicate(
        [intent.id for intent in pool],
        [intent.request for intent in pool],
        embedder.embed,
        threshold=cutoff,
        near_threshold=config.intents.near_dup_threshold,
    )
    kept = [pool[i] for i in result.kept]
    stats = IntentsStats(
        sampled=len(cells),
        realised=len(pool),
        failed=len(cells) - len(pool),
        kept=len(kept),
        duplicates=result.removed,
        embedding_model=embedder.name,
        dedup_threshold=cutoff,
        vendi=round(vendi_score(result.embeddings), 3),
        distinct={str(n): round(distinct_n((i.request for i in kept), n), 4) for n in (1, 2, 3)},
        flagged_missing=sum(bool(intent.missing) for intent in kept),
        cells=cell_coverage(
            [domain.id for domain in taxonomy.domains],
            LEVELS,
            ((cell.domain, cell.complexity) for cell in cells),
            ((intent.domain, intent.complexity) for intent in kept),
        ),
        facets=_facets(taxonomy, kept),
    )
    duplicates: list[BaseModel] = list(result.duplicates)
    final: list[BaseModel] = list(kept)
    write_atomic(paths.duplicates, duplicates)
    _write_json_atomic(paths.stats, stats.model_dump(mode="json"))
    write_atomic(paths.output, final)
    return stats


def _facets(taxonomy: Taxonomy, kept: Sequence[Intent]) -> dict[str, FacetCoverage]:
    facets = taxonomy.personas
    return {
        "role": facet_coverage([f.name for f in facets.roles], (i.persona.role for i in kept)),
        "industry": facet_coverage(facets.industries, (i.persona.industry for i in kept)),
        "experience": facet_coverage([f.name for f in facets.experience], (i.persona.experience for i in kept)),
        "style": facet_coverage([f.name for f in facets.styles], (i.persona.style for i in kept)),
        "task": facet_coverage([t.id for t in taxonomy.tasks], (task for i in kept for task in i.tasks)),
    }


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def print_stats(stats: IntentsStats, console: Console) -> None:
    console.print(coverage_table(stats.cells, LEVELS))
    summary = Table(title="intent pool", show_header=False)
    summary.add_column("metric")
    summary.add_column("value", justify="right")
    removed = ", ".join(f"{method} {count}" for method, count in stats.duplicates.items())
    rows = [
        ("sampled / realised / failed", f"{stats.sampled} / {stats.realised} / {stats.failed}"),
        ("kept after dedup", str(stats.kept)),
        (f"duplicates removed ({stats.embedding_model} >= {stats.dedup_threshold})", removed),
        ("Vendi score (cosine, q=1)", f"{stats.vendi:.2f}"),
        ("distinct-1 / -2 / -3", " / ".join(f"{stats.distinct[n]:.3f}" for n in ("1", "2", "3"))),
        ("flagged: request misses a task requirement", str(stats.flagged_missing)),
    ]
    rows += [(f"{name} values covered", f"{f.covered}/{f.values}") for name, f in stats.facets.items()]
    for row in rows:
        summary.add_row(*row)
    console.print(summary)
