"""`ise train`: TRL's SFTTrainer on an export's trl/ rows, with a peft LoRA adapter or full fine-tuning.

The rows are tokenized here (ise/train/masking.py: the tools passed to the chat template, loss on the assistant's
tokens only, overlong rows handled by `train.overlong`) and handed to SFTTrainer pre-tokenized with their labels,
so TRL neither re-renders nor truncates them. Validation rows that do not fit are dropped (they only measure).

Folders: checkpoints go to `.<out>.work/` beside the output and survive a crash or Ctrl-C, so `--resume` continues
from the latest one. The finished adapter (or full model), its tokenizer, `train.json` (counts, losses, cost) and
with `train.merge` a `merged/` model are written to a staging folder beside the output and renamed into place; the
work folder is removed only then. A failure therefore leaves the previous output, or none.
"""

from __future__ import annotations

import os
import resource
import shutil
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from ise.config import Config, TrainConfig
from ise.errors import InputError
from ise.llm.local_model import ModelSource, load_model, load_tokenizer, pick_device, resolve_model
from ise.outputs import writable_folder, write_text_atomic
from ise.records import Record
from ise.stages.sft_files import replace_dir
from ise.train.prepare import Prepared, prepare, read_training_data

SUMMARY = "train.json"


class TrainSummary(Record):
    """What a training run did and cost (written as train.json in the output folder)."""

    base_model: str
    method: str
    device: str
    rows_read: int
    rows_trained: int
    refused: dict[str, int]
    dropped_overlong: int
    truncated: int
    cut_turns: int
    validation_rows: int
    tokens: int
    learnt_tokens: int
    steps: int
    losses: list[float]
    """Training loss at each logged step."""
    validation_loss: float | None
    seconds: float
    seconds_per_step: float
    peak_memory_mb: float
    """Peak GPU memory allocated on a GPU, else the process's peak resident memory."""
    resumed_from: str | None
    merged: bool


def work_folder(output: Path) -> Path:
    return output.with_name(f".{output.name}.work")


def check_output(output: Path) -> None:
    """Refuse to replace anything but an earlier `ise train` output; the folder above must take files."""
    if output.exists() and not (output.is_dir() and (output / SUMMARY).is_file()):
        raise InputError(f"output {output} exists and is not an `ise train` output folder; choose another -o")
    writable_folder(output.parent, output)


def latest_checkpoint(output: Path) -> Path | None:
    folder = work_folder(output) / "checkpoints"
    found = [p for p in folder.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()] if folder.is_dir() else []
    return max(found, key=lambda p: int(p.name.split("-")[-1]), default=None)


def run_train(data: Path, output: Path, config: Config, *, resume: bool = False, console: Console) -> TrainSummary:
    cfg = config.train
    source = resolve_model(cfg.model)
    check_output(output)
    checkpoint = latest_checkpoint(output) if resume else None
    if resume and checkpoint is None:
        raise InputError(f"--resume: no checkpoint of {output} to resume from (in {work_folder(output)})")
    dataset = read_training_data(data)
    console.print(f"loading the tokenizer of {source.label}")
    tokenizer = load_tokenizer(source)
    prepared = prepare(tokenizer, dataset, data, config)
    _say_prepared(prepared, console)
    if checkpoint is None:
        shutil.rmtree(work_folder(output), ignore_errors=True)  # a fresh start must not mix in an old run's steps
    console.print(f"loading {source.label} ({cfg.method})")
    model = load_model(source, dtype=cfg.dtype, device=cfg.device)
    started = time.monotonic()
    checkpoints = work_folder(output) / "checkpoints"
    trainer = build_trainer(model, tokenizer, prepared, cfg, seed=config.seed, checkpoints=checkpoints, console=console)
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    validation_loss = trainer.evaluate()["eval_loss"] if prepared.validation else None
    seconds = time.monotonic() - started
    summary = _summary(source, prepared, trainer, cfg, seconds, validation_loss, checkpoint)
    _save(trainer, tokenizer, summary, output, cfg)
    shutil.rmtree(work_folder(output), ignore_errors=True)
    console.print(
        f"trained {summary.steps} steps in {seconds:.0f} s ({summary.seconds_per_step:.1f} s/step), "
        f"loss {_first_last(summary.losses)}; wrote {output}"
    )
    return summary


def build_trainer(
    model: Any,
    tokenizer: Any,
    prepared: Prepared,
    cfg: TrainConfig,
    *,
    seed: int,
    checkpoints: Path,
    console: Console,
) -> Any:
    from datasets import Dataset
    from transformers import PrinterCallback
    from trl.trainer.sft_config import SFTConfig
    from trl.trainer.sft_trainer import SFTTrainer

    def columns(rows: list[Any]) -> Any:
        return Dataset.from_dict({"input_ids": [r.input_ids for r in rows], "labels": [r.labels for r in rows]})

    device = pick_device(cfg.device)
    dtype = str(next(model.parameters()).dtype)
    args = SFTConfig(
        output_dir=str(checkpoints),
        max_length=cfg.max_length,  # every row already fits: TRL's own truncation never cuts
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps or -1,
        learning_rate=cfg.learning_rate,
        warmup_steps=cfg.warmup_ratio,
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        gradient_checkpointing=cfg.gradient_checkpointing,
        bf16=dtype == "torch.bfloat16",
        fp16=dtype == "torch.float16",
        use_cpu=device == "cpu",
        save_steps=cfg.save_steps,
        logging_steps=cfg.logging_steps,
        report_to="none",
        disable_tqdm=True,  # one line per logged step instead (ProgressLines)
        seed=seed,
        data_seed=seed,
        dataloader_num_workers=0,
    )
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=columns(prepared.train),
        eval_dataset=columns(prepared.validation) if prepared.validation else None,
        processing_class=tokenizer,
        peft_config=lora_config(cfg) if cfg.method == "lora" else None,
        callbacks=[progress_lines(console)],
    )
    trainer.remove_callback(PrinterCallback)  # it prints raw log dicts; ProgressLines says the same in one line
    return trainer


def lora_config(cfg: TrainConfig) -> Any:
    from peft import LoraConfig

    return LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=cfg.lora_targets,
        task_type="CAUSAL_LM",
    )


def progress_lines(console: Console) -> Any:
    from transformers import TrainerCallback

    class ProgressLines(TrainerCallback):
        """step n/N, loss, learning rate and seconds per step, each time the trainer logs."""

        def __init__(self) -> None:
            self.started = time.monotonic()

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
            if not logs or "loss" not in logs:
                return
            per_step = (time.monotonic() - self.started) / max(1, state.global_step)
            console.print(
                f"step {state.global_step}/{state.max_steps}  loss {logs['loss']:.4f}  "
                f"lr {logs.get('learning_rate', 0):.2e}  {per_step:.1f} s/step"
            )

    return ProgressLines()


def peak_memory_mb(device: str) -> float:
    import torch

    if device == "cuda":
        return float(torch.cuda.max_memory_allocated()) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _summary(
    source: ModelSource,
    prepared: Prepared,
    trainer: Any,
    cfg: TrainConfig,
    seconds: float,
    validation_loss: float | None,
    checkpoint: Path | None,
) -> TrainSummary:
    steps = int(trainer.state.global_step)
    losses = [float(entry["loss"]) for entry in trainer.state.log_history if "loss" in entry]
    return TrainSummary(
        base_model=source.label,
        method=cfg.method,
        device=pick_device(cfg.device),
        rows_read=prepared.rows_read,
        rows_trained=len(prepared.train),
        refused=dict(prepared.refused),
        dropped_overlong=prepared.dropped_overlong,
        truncated=prepared.truncated,
        cut_turns=prepared.cut_turns,
        validation_rows=len(prepared.validation),
        tokens=prepared.tokens,
        learnt_tokens=prepared.learnt_tokens,
        steps=steps,
        losses=losses,
        validation_loss=validation_loss,
        seconds=round(seconds, 2),
        seconds_per_step=round(seconds / max(1, steps), 3),
        peak_memory_mb=round(peak_memory_mb(pick_device(cfg.device)), 1),
        resumed_from=str(checkpoint) if checkpoint else None,
        merged=cfg.merge,
    )


def _save(trainer: Any, tokenizer: Any, summary: TrainSummary, output: Path, cfg: TrainConfig) -> None:
    staging = output.with_name(f".{output.name}.staging-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        trainer.save_model(str(staging))  # the adapter alone under LoRA, the whole model under full
        tokenizer.save_pretrained(str(staging))
        if cfg.merge and cfg.method == "lora":
            merged = trainer.model.merge_and_unload()
            merged.save_pretrained(str(staging / "merged"))
            tokenizer.save_pretrained(str(staging / "merged"))
        write_text_atomic(staging / SUMMARY, summary.model_dump_json(indent=2) + "\n")
        replace_dir(staging, output)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _say_prepared(prepared: Prepared, console: Console) -> None:
    refused = ", ".join(f"{n} {rule}" for rule, n in sorted(prepared.refused.items())) or "none"
    console.print(
        f"{prepared.rows_read} rows read, {len(prepared.train)} to train on ({prepared.tokens} tokens, "
        f"{prepared.learnt_tokens} learnt); refused as eval overlaps: {refused}; longer than max_length: "
        f"{prepared.dropped_overlong} dropped, {prepared.truncated} cut at a turn boundary; "
        f"{len(prepared.validation)} validation rows"
    )


def _first_last(losses: list[float]) -> str:
    return f"{losses[0]:.3f} -> {losses[-1]:.3f}" if losses else "not logged"
