"""`ise intents` on the real embedded model (Qwen2.5-Coder-0.5B via llama.cpp): schema-valid intents come out."""

from __future__ import annotations

from pathlib import Path

import pytest

from ise.config import load_config
from ise.embeddings import MiniLMEmbedder
from ise.jsonl import read_records
from ise.llm.config import EmbeddedBackend
from ise.records import Intent, IntentDraft
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
    raw = list(read_records(IntentsPaths.for_output(output).raw, Intent))
    assert stats.realised == len(raw) >= 3
    for intent in raw:
        IntentDraft(request=intent.request, deliverable=intent.deliverable, workspace=intent.workspace)
        assert intent.model
    assert len({intent.request for intent in raw}) == len(raw)
    assert stats.kept >= 1
    assert output.exists()
