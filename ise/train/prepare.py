"""From an export folder to token ids and labels: read, decontaminate, mask, fit to the max length.

Everything that can be wrong with the input is found here, before a model is loaded: a missing or malformed
dataset, an overlong row under `overlong: error`, no row left to train on.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ise.config import Config, TrainConfig
from ise.errors import InputError
from ise.jsonl import read_records
from ise.records import Plan
from ise.train.data import Dataset, TrainRow, read_dataset
from ise.train.decontam import Decontaminator, refuse_overlaps
from ise.train.masking import Encoded, fit


@dataclass
class Prepared:
    """The encoded splits and what happened to the rows on the way."""

    train: list[Encoded]
    validation: list[Encoded]
    rows_read: int
    refused: Counter[str] = field(default_factory=Counter)
    """Rows refused by decontamination, per rule."""
    dropped_overlong: int = 0
    truncated: int = 0
    """Rows cut at a turn boundary to fit."""
    cut_turns: int = 0
    """Assistant turns lost to those cuts."""

    @property
    def tokens(self) -> int:
        return sum(len(e.input_ids) for e in self.train)

    @property
    def learnt_tokens(self) -> int:
        return sum(e.learnt_tokens for e in self.train)


def eval_plans(config: Config) -> list[Plan]:
    """The tasks of every `train.exclude_tasks` source."""
    if not config.train.exclude_tasks:
        return []
    from ise.tasks import load_tasks

    return [plan for source in config.train.exclude_tasks for plan in load_tasks(source, config).plans]


def training_plans(cfg: TrainConfig) -> dict[str, Plan]:
    if cfg.plans is None:
        return {}
    if not cfg.plans.is_file():
        raise InputError(f"train.plans {cfg.plans}: no such file")
    return {plan.id: plan for plan in read_records(cfg.plans, Plan)}


def decontaminate(rows: list[TrainRow], config: Config) -> tuple[list[TrainRow], Counter[str]]:
    plans = eval_plans(config)
    if not plans:
        return rows, Counter()
    return refuse_overlaps(rows, Decontaminator(plans), training_plans(config.train))


def read_training_data(data: Path) -> Dataset:
    """The rows, read and checked before any model is loaded, so bad input costs nothing."""
    dataset = read_dataset(data)
    if not dataset.train:
        raise InputError(f"{data}: no training rows")
    return dataset


def prepare(tokenizer: Any, dataset: Dataset, data: Path, config: Config) -> Prepared:
    train_rows, refused = decontaminate(dataset.train, config)
    validation_rows, refused_validation = decontaminate(dataset.validation, config)
    prepared = Prepared([], [], rows_read=len(dataset.train), refused=refused + refused_validation)
    prepared.train = _encode_all(tokenizer, train_rows, config.train, prepared)
    prepared.validation = [
        e for row in validation_rows if (e := fit(tokenizer, row, config.train.max_length, "drop")) is not None
    ]
    if not prepared.train:
        raise InputError(f"{data}: no training row left ({_why_empty(prepared)})")
    return prepared


def _encode_all(tokenizer: Any, rows: list[TrainRow], cfg: TrainConfig, prepared: Prepared) -> list[Encoded]:
    encoded = []
    for row in rows:
        result = fit(tokenizer, row, cfg.max_length, cfg.overlong)
        if result is None:
            prepared.dropped_overlong += 1
            continue
        if result.cut_turns:
            prepared.truncated += 1
            prepared.cut_turns += result.cut_turns
        encoded.append(result)
    return encoded


def _why_empty(prepared: Prepared) -> str:
    refused = sum(prepared.refused.values())
    return f"{refused} refused as overlapping eval tasks, {prepared.dropped_overlong} longer than train.max_length"
