"""`ise train` on a tiny model with the embedded model's real tokenizer and chat template: the loss mask is the
assistant's spans token by token, the length policies, real training steps that lower the loss on a repeated
batch, a crash that leaves no output and a resume that continues it, the adapter reloaded (and merged) and driven
through the `transformers` backend, and bad input as one line with nothing written."""

from __future__ import annotations

import copy
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from execute_support import docker_engine  # noqa: F401  (a fixture, requested by name)
from train_support import (  # noqa: F401  (fixtures, requested by name)
    BASH,
    KNOWN_ROW,
    KNOWN_SPANS,
    qwen_tokenizer_dir,
    tiny_model_dir,
    write_rows,
)
from typer.testing import CliRunner

from ise.cli import app
from ise.config import Config, load_config
from ise.errors import InputError
from ise.llm.config import TransformersBackend
from ise.llm.transformers_chat import _interpret
from ise.records import Message, ToolSpec
from ise.seeds import load_seed_tasks
from ise.stages.evaluate import run_eval
from ise.tasks import TaskSet
from ise.trace_file import load_traces
from ise.train import trainer as trainer_module
from ise.train.data import parse_row
from ise.train.masking import IGNORE, encode, fit
from ise.train.trainer import TrainSummary, run_train, work_folder

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def tokenizer(qwen_tokenizer_dir: Path) -> Any:  # noqa: F811
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(qwen_tokenizer_dir)


def _row(value: dict[str, Any]) -> Any:
    return parse_row(json.dumps(value), "rows.jsonl:1")


def _learnt_runs(tokenizer: Any, ids: list[int], labels: list[int]) -> list[str]:
    """The decoded text of each run of consecutive learnt tokens."""
    runs: list[list[int]] = []
    previous = IGNORE
    for token, label in zip(ids, labels, strict=True):
        if label != IGNORE:
            if previous == IGNORE:
                runs.append([])
            runs[-1].append(token)
        previous = label
    return [tokenizer.decode(run) for run in runs]


# --- the loss mask -------------------------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_the_loss_mask_is_exactly_the_assistant_turns_with_their_calls_and_end_token(tokenizer: Any) -> None:
    ids, labels, ends = encode(tokenizer, _row(KNOWN_ROW))
    assert _learnt_runs(tokenizer, ids, labels) == KNOWN_SPANS
    assert all(label in (IGNORE, token) for token, label in zip(ids, labels, strict=True))
    prompt = tokenizer.decode([t for t, label in zip(ids, labels, strict=True) if label == IGNORE])
    for hidden in ("careful terminal agent", "How many files", "a.txt", "# Tools", "<|im_start|>assistant"):
        assert hidden in prompt  # system, user, tool results, the tool preamble and turn headers are context only
    assert len(ends) == 3
    assert ids[ends[-1] - 1] == tokenizer.convert_tokens_to_ids("<|im_end|>")
    rendered = tokenizer.apply_chat_template(KNOWN_ROW["messages"], tools=KNOWN_ROW["tools"], tokenize=False)
    assert tokenizer.decode(ids) == rendered  # the tools reached the template and nothing was lost


@pytest.mark.timeout(120)
def test_string_arguments_are_decoded_so_the_template_gets_objects(tokenizer: Any) -> None:
    openai_shape = copy.deepcopy(KNOWN_ROW)
    for message in openai_shape["messages"]:
        for tool_call in message.get("tool_calls") or []:
            tool_call["function"]["arguments"] = json.dumps(tool_call["function"]["arguments"])
    ids, labels, _ = encode(tokenizer, _row(openai_shape))
    assert _learnt_runs(tokenizer, ids, labels) == KNOWN_SPANS


@pytest.mark.timeout(120)
def test_overlong_rows_are_cut_at_a_turn_boundary_dropped_or_refused(tokenizer: Any) -> None:
    row = _row(KNOWN_ROW)
    ids, _, ends = encode(tokenizer, row)
    limit = ends[1] + 2  # the second assistant turn fits whole, the third does not
    cut = fit(tokenizer, row, limit, "truncate_turns")
    assert cut is not None
    assert (cut.turns, cut.cut_turns) == (2, 1)
    assert len(cut.input_ids) == ends[1]
    assert cut.input_ids == ids[: ends[1]]
    assert _learnt_runs(tokenizer, cut.input_ids, cut.labels) == KNOWN_SPANS[:2]
    assert fit(tokenizer, row, limit, "drop") is None
    assert fit(tokenizer, row, ends[0] - 1, "truncate_turns") is None  # not even the first turn fits: dropped
    with pytest.raises(InputError, match=r"rows\.jsonl:1: \d+ tokens, more than train\.max_length"):
        fit(tokenizer, row, limit, "error")
    whole = fit(tokenizer, row, len(ids), "error")
    assert whole is not None
    assert whole.turns == 3
    assert whole.cut_turns == 0


# --- training ------------------------------------------------------------------------------------------------


def _config(model: Path, **train: Any) -> Any:
    settings = {
        "model": str(model),
        "max_length": 512,
        "grad_accum": 1,
        "learning_rate": 0.01,
        "warmup_ratio": 0.0,
        "gradient_checkpointing": False,
        "device": "cpu",
        "lora_r": 8,
        "lora_dropout": 0.0,
        **train,
    }
    return load_config([f"train.{key}={json.dumps(value)}" for key, value in settings.items()])


def _rows(count: int) -> list[dict[str, Any]]:
    return [KNOWN_ROW] * count  # one batch, repeated: the loss must fall on it


@dataclass(frozen=True)
class Trained:
    folder: Path
    adapter: Path
    summary: TrainSummary


@pytest.fixture(scope="module")
def trained(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Trained:  # noqa: F811
    """Six LoRA steps (and a merge) on two copies of the known row, with one validation row."""
    from rich.console import Console

    folder = tmp_path_factory.mktemp("trained")
    data = write_rows(folder / "sft" / "trl", _rows(2))
    write_rows(data, _rows(1), split="validation")
    out = folder / "adapter"
    summary = run_train(data, out, _config(tiny_model_dir, max_steps=6, merge=True), console=Console(quiet=True))
    return Trained(folder, out, summary)


@pytest.mark.timeout(300)
def test_training_lowers_the_loss_and_writes_the_adapter_in_one_piece(trained: Trained) -> None:
    summary, out = trained.summary, trained.adapter
    assert summary.steps == 6
    assert len(summary.losses) == 6
    # a random model starts at ln(vocab) = 11.93; the same batch six times must take the loss clearly below it
    assert summary.losses[-1] < summary.losses[0] - 0.05, summary.losses
    assert summary.rows_trained == 2
    assert summary.validation_rows == 1
    assert summary.validation_loss is not None
    assert {"adapter_config.json", "adapter_model.safetensors", "train.json", "tokenizer.json"} <= {
        p.name for p in out.iterdir()
    }
    assert json.loads((out / "train.json").read_text())["steps"] == 6
    assert sorted(p.name for p in trained.folder.iterdir()) == ["adapter", "sft"]  # no work or staging folder left


@pytest.mark.timeout(300)
def test_the_reloaded_adapter_equals_the_merged_model(tiny_model_dir: Path, trained: Trained) -> None:  # noqa: F811
    _reloaded_adapter_equals_the_merged_model(tiny_model_dir, trained.adapter)


def _backend(model: Path, adapter: Path) -> Any:
    return TransformersBackend(model=str(model), adapter=adapter, device="cpu", temperature=0.0, max_tokens=6)


@pytest.mark.timeout(300)
def test_the_trained_model_chats_with_tools_through_the_llm_protocol(
    tiny_model_dir: Path,  # noqa: F811
    trained: Trained,
) -> None:
    llm = _backend(tiny_model_dir, trained.adapter).build()
    spec = ToolSpec(name="bash", description="Run a shell command.", parameters=BASH["function"]["parameters"])
    completion = llm.chat([Message(role="user", content="List /data.")], tools=[spec], seed=1)
    llm.close()
    assert completion.message.role == "assistant"
    assert completion.mode in ("text", "parsed")
    assert completion.model == f"{tiny_model_dir}+{trained.adapter}"
    assert completion.usage.prompt_tokens > 50  # the tool preamble was rendered into the prompt
    assert 0 < completion.usage.completion_tokens <= 6


@pytest.mark.docker
@pytest.mark.timeout(300)
@pytest.mark.usefixtures("docker_engine")
def test_ise_eval_runs_the_trained_model_on_a_real_sandbox_episode(
    tiny_model_dir: Path,  # noqa: F811
    trained: Trained,
    tmp_path: Path,
) -> None:
    from rich.console import Console

    task = next(plan for plan in load_seed_tasks([]).plans if plan.id == "seed/count-large-raw-files")
    backend = _backend(tiny_model_dir, trained.adapter)
    config = Config(run_dir=tmp_path, llm=backend)
    llm = backend.build()
    try:
        summary = run_eval(
            TaskSet(suite="one", plans=[task]), tmp_path / "eval.jsonl", config, llm=llm, console=Console(quiet=True)
        )
    finally:
        llm.close()
    (trace,) = load_traces(tmp_path / "eval.jsonl")
    assert trace.id == task.id
    assert trace.messages[1].content == task.intent.request  # the task reached the model through the agent loop
    assert trace.usage
    assert trace.usage[0].model == f"{tiny_model_dir}+{trained.adapter}"
    assert trace.outcome.passed is False  # a ten-megabyte random model solves nothing; the plumbing is the point
    assert [t.attempts for t in summary.tasks] == [1]
    assert summary.model == f"{tiny_model_dir}+{trained.adapter}"  # the summary names the adapter too


def _reloaded_adapter_equals_the_merged_model(base: Path, adapter: Path) -> None:
    import torch

    from ise.llm.local_model import ModelSource, attach_adapter, load_model

    with_adapter = attach_adapter(load_model(ModelSource(base), device="cpu"), adapter).eval()
    merged = load_model(ModelSource(adapter / "merged"), device="cpu").eval()
    plain = load_model(ModelSource(base), device="cpu").eval()
    tokens = torch.tensor([[151644, 872, 198, 1140, 608, 691, 13, 151645]])
    with torch.no_grad():
        adapted, fused, untouched = (m(tokens).logits for m in (with_adapter, merged, plain))
    assert torch.allclose(adapted, fused, atol=1e-4)
    assert not torch.allclose(adapted, untouched, atol=1e-4)  # the adapter changed the model


@pytest.mark.timeout(300)
def test_a_crash_writes_nothing_and_resume_continues_from_the_last_checkpoint(
    tiny_model_dir: Path,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from rich.console import Console

    data = write_rows(tmp_path / "trl", _rows(2))
    out = tmp_path / "adapter"

    def crash(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt  # killed after the last step, before the output was written

    with monkeypatch.context() as patch:
        patch.setattr(trainer_module, "_save", crash)
        with pytest.raises(KeyboardInterrupt):
            run_train(data, out, _config(tiny_model_dir, max_steps=2, save_steps=1), console=Console(quiet=True))
    assert not out.exists()
    assert sorted(p.name for p in (work_folder(out) / "checkpoints").glob("checkpoint-*")) == [
        "checkpoint-1",
        "checkpoint-2",
    ]

    cfg = _config(tiny_model_dir, max_steps=3, save_steps=1)
    said = io.StringIO()
    summary = run_train(data, out, cfg, resume=True, console=Console(file=said, width=200))
    assert summary.resumed_from is not None
    assert summary.resumed_from.endswith("checkpoint-2")
    assert summary.steps == 3
    assert len(summary.losses) == 3  # the history of steps 1 and 2 comes back with the checkpoint...
    assert re.findall(r"^step (\d+)/3", said.getvalue(), re.MULTILINE) == ["3"]  # ...but only step 3 was run
    assert (out / "adapter_model.safetensors").is_file()
    assert not work_folder(out).exists()


# --- the backend's reading of answers ------------------------------------------------------------------------


def test_qwen_style_tool_calls_are_parsed_and_plain_answers_stay_text() -> None:
    spec = [ToolSpec(name="bash", description="", parameters={"type": "object"})]
    text = 'Checking.\n<tool_call>\n{"name": "bash", "arguments": {"command": "ls /data"}}\n</tool_call>'
    message, mode = _interpret(text, spec)
    assert mode == "parsed"
    assert message.content == "Checking."
    assert [(c.name, c.arguments) for c in message.tool_calls] == [("bash", {"command": "ls /data"})]
    message, mode = _interpret("There are 3 files.", spec)
    assert mode == "text"
    assert message.content == "There are 3 files."
    assert not message.tool_calls


# --- bad input -----------------------------------------------------------------------------------------------


def _cli(tmp_path: Path, model: Path | str, data: Path, *extra: str) -> Any:
    out = tmp_path / "adapter"
    args = ["train", "--data", str(data), "-o", str(out), "-c", f"train.model={model}", "-c", "train.device=cpu"]
    result = CliRunner().invoke(app, [*args, *extra])
    return result, out


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("rows", "extra", "message"),
    [
        ([{"conversation": []}], [], r"train\.jsonl:1: no 'messages' list"),
        (_rows(1), ["-c", "train.max_length=64", "-c", "train.overlong=error"], r"train\.jsonl:1: \d+ tokens"),
        ([{"messages": [{"role": "user", "content": "hi"}]}], [], r"train\.jsonl:1: no assistant message"),
    ],
)
def test_bad_rows_are_one_line_and_write_nothing(
    tiny_model_dir: Path,  # noqa: F811
    tmp_path: Path,
    rows: list[Any],
    extra: list[str],
    message: str,
) -> None:
    data = write_rows(tmp_path / "trl", rows)
    result, out = _cli(tmp_path, tiny_model_dir, data, *extra)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert lines[-1].startswith("error:"), result.output
    assert re.search(message, lines[-1]), result.output
    assert not out.exists()
    assert not work_folder(out).exists()


def test_a_model_folder_that_does_not_exist_is_one_line(tmp_path: Path) -> None:
    data = write_rows(tmp_path / "trl", _rows(1))
    result, out = _cli(tmp_path, tmp_path / "no-such-model", data)
    assert result.exit_code == 2
    assert "no-such-model: no such folder or file" in result.output
    assert not out.exists()


def test_an_output_that_is_not_ours_is_refused(tiny_model_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    data = write_rows(tmp_path / "trl", _rows(1))
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "notes.txt").write_text("mine")
    result, _ = _cli(tmp_path, tiny_model_dir, data)
    assert result.exit_code == 2
    assert "is not an `ise train` output folder" in result.output
    assert (tmp_path / "adapter" / "notes.txt").read_text() == "mine"


def test_a_dataset_that_does_not_exist_is_one_line_before_any_model_loads(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")  # never read: the data is checked first
    result, out = _cli(tmp_path, model, tmp_path / "sft" / "trl")
    assert result.exit_code == 2
    assert "trl: no such file or folder" in result.output
    assert not out.exists()
