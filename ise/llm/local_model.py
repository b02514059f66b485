"""Local Hugging Face models for `ise train` and the `transformers` backend: a model folder, a GGUF file, or an
embedded Qwen2.5-Coder model by name (its GGUF read through transformers' gguf support, dequantised).

Loading never touches the network: HF_HUB_OFFLINE is set before transformers is imported and every
from_pretrained call is local_files_only. A reference that names nothing on disk is one InputError.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ise.errors import InputError, IseError

DType = Literal["auto", "float32", "bfloat16", "float16"]
Device = Literal["auto", "cpu", "cuda"]


@dataclass(frozen=True)
class ModelSource:
    """Where a model's files are: a folder, and the GGUF file in it when the weights are one."""

    folder: Path
    gguf_file: str | None = None

    @property
    def label(self) -> str:
        return str(self.folder / self.gguf_file) if self.gguf_file else str(self.folder)


def resolve_model(reference: str) -> ModelSource:
    """A model folder (config.json inside), a .gguf file, or an embedded model name (qwen2.5-coder-0.5b, -1.5b)."""
    from ise.llm.weights import MODELS, fetch_model

    if reference in MODELS:
        path = fetch_model(reference)
        return ModelSource(path.parent, path.name)
    path = Path(reference).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return ModelSource(path.parent, path.name)
    if not path.exists():
        raise InputError(
            f"model {reference}: no such folder or file (give a Hugging Face model folder, a .gguf file, "
            f"or one of {', '.join(MODELS)})"
        )
    if not path.is_dir() or not (path / "config.json").is_file():
        raise InputError(f"model {reference}: not a Hugging Face model folder (no config.json in it)")
    return ModelSource(path)


def offline() -> None:
    """No hub access from here on (must run before transformers/huggingface_hub are first imported)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def load_tokenizer(source: ModelSource) -> Any:
    offline()
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source.folder, gguf_file=source.gguf_file, local_files_only=True)
    if tokenizer.chat_template is None:
        raise InputError(f"model {source.label}: the tokenizer has no chat template")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def pick_device(device: Device) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def pick_dtype(dtype: DType, device: str) -> Any:
    """auto: bfloat16 on a GPU that has it, else float32 (CPU half precision is slow and lossy)."""
    import torch

    if dtype == "auto":
        bf16 = device == "cuda" and torch.cuda.is_bf16_supported()
        return torch.bfloat16 if bf16 else torch.float32
    return getattr(torch, dtype)


def load_model(source: ModelSource, *, dtype: DType = "auto", device: Device = "auto") -> Any:
    """The causal LM on `device`, in `dtype`."""
    offline()
    from transformers import AutoModelForCausalLM

    where = pick_device(device)
    model: Any = AutoModelForCausalLM.from_pretrained(
        source.folder, gguf_file=source.gguf_file, dtype=pick_dtype(dtype, where), local_files_only=True
    )
    if source.gguf_file:
        as_dense(model, source)
    return model.to(where)


def as_dense(model: Any, source: ModelSource) -> None:
    """A GGUF read through transformers is dequantised into ordinary tensors, but the model keeps the GGUF
    quantizer's marks, and with them the Trainer refuses to train it and save_pretrained to save it. The marks are
    removed once no module holds packed GGUF blocks (which only a GPU kernel package would leave)."""
    packed = [name for name, module in model.named_modules() if "gguf" in type(module).__name__.lower()]
    if packed:
        raise IseError(f"model {source.label}: {len(packed)} layers stayed in packed GGUF blocks and cannot be trained")
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:
        quantizer.remove_quantization_config(model)


def attach_adapter(model: Any, adapter: Path) -> Any:
    """A saved LoRA adapter on top of `model` (a folder with adapter_config.json); a full fine-tune is a model
    folder instead and is given as the model itself."""
    if not (adapter / "adapter_config.json").is_file():
        raise InputError(f"adapter {adapter}: not a LoRA adapter folder (no adapter_config.json in it)")
    from peft import PeftModel

    return PeftModel.from_pretrained(model, adapter, local_files_only=True)
