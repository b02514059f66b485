"""`ise intents` on the real embedded model (Qwen2.5-Coder-0.5B via llama.cpp): schema-valid intents come out."""

from __future__ import annotations

from pathlib import Path

import pytest

from ise.config import load_config
from ise.embeddings import MiniLMEmbedder
from ise.jsonl import read_records
from ise.llm.config import EmbeddedBackend
from ise.records import Intent, IntentDraft
from ise.runner import errors_path
from ise.stages.intents import IntentsPaths, run_intents

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.model
def test_embedded_model_realises_schema_valid_intents(tmp_path: Path) -> None:
    cfg = load_config([str(ROOT / "configs" / "demo.yaml"), f"intents.taxonomy={ROOT / 'configs' / 'taxonomy'}"])
    llm = EmbeddedBackend().build()
    try:
        output = tmp_path / "intents.jsonl"
        stats = run_intents(cfg, output, count=3, llm=llm, embedder=MiniLMEmbedder())
    finally:
        llm.close()
    paths = IntentsPaths.for_output(output)
    raw = list(read_records(paths.raw, Intent))
    # A draft the small model leaves cut off three times is refused (ise/completeness.py) and goes to the errors
    # file with its reason: every sampled cell is realised or accounted for, never dropped.
    assert stats.realised == len(raw) >= 2
    errors = errors_path(paths.raw)
    refused = errors.read_text().splitlines() if errors.exists() else []
    assert stats.realised + len(refused) == stats.sampled == 3
    assert all("cut off" in line or "IntentDraft" in line for line in refused)
    for intent in raw:
        IntentDraft(request=intent.request, deliverable=intent.deliverable, workspace=intent.workspace)
        assert intent.model
    assert len({intent.request for intent in raw}) == len(raw)
    assert stats.kept >= 1
    assert output.exists()
