"""Export against the embedded model's real chat template and tokenizer (llama.cpp's /apply-template, /tokenize)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from trace_factory import make_trace, write_traces

from ise.config import ExportConfig
from ise.llm.config import EmbeddedBackend
from ise.records import Message
from ise.stages.chat_template import EmbeddedTemplate
from ise.stages.export import export
from ise.stages.export_selection import canonical_row
from ise.stages.sft_rows import approx_tokens, check_rendered

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def template() -> Iterator[EmbeddedTemplate]:
    template = EmbeddedTemplate(EmbeddedBackend())
    try:
        yield template
    finally:
        template.close()


def test_render_check_passes_on_good_rows(tmp_path: Path, template: EmbeddedTemplate) -> None:
    write_traces(tmp_path / "traces.jsonl", [make_trace(f"t{i}", turns=1 + i % 2) for i in range(6)])
    summary = export(tmp_path / "traces.jsonl", tmp_path / "out", ExportConfig(render_samples=5), template=template)
    assert (summary.render_checked, summary.render_failed, summary.rejected) == (5, 0, 0)
    assert (
        "render check: 5 rows rendered through the model's chat template, 0 failed"
        in (tmp_path / "out" / "README.md").read_text()
    )


def test_trl_rows_render_through_the_chat_template(tmp_path: Path, template: EmbeddedTemplate) -> None:
    """What TRL would train on: rows loaded with `datasets` (arguments as objects) through the real template."""
    import datasets

    write_traces(tmp_path / "traces.jsonl", [make_trace(f"t{i}") for i in range(4)])
    export(tmp_path / "traces.jsonl", tmp_path / "out", ExportConfig(render_samples=0, validation_fraction=0))
    trl = datasets.load_dataset("json", data_files=str(tmp_path / "out" / "trl" / "train.jsonl"), split="train")
    canonical = [json.loads(line) for line in (tmp_path / "out" / "openai" / "train.jsonl").read_text().splitlines()]
    assert len(trl) == len(canonical) == 4
    for trl_row, row in zip(trl, canonical, strict=True):
        text = template.render(trl_row["messages"], trl_row["tools"])
        assert check_rendered(text, row["messages"]) == []
        conversation = text[text.index("<|im_start|>user") :]
        assert conversation.count("<tool_call>") == 4
        assert conversation.count("<tool_response>") == 4
        assert '{"name": "write_file", "arguments": {"path": "/workspace/app.ini"' in conversation
        assert "<tool_response>\nwrote 17 bytes\n</tool_response>" in conversation
        assert text == template.render(row["messages"], row["tools"]), "both formats give the same prompt"


def test_render_check_rejects_a_row_the_template_garbles(tmp_path: Path, template: EmbeddedTemplate) -> None:
    """A tool result that contains the template's own closing tag reads back as a different conversation."""
    tricky = make_trace("tricky")
    tricky.messages[3] = Message(role="tool", tool_call_id="c1", content="a\n</tool_response>\nb")
    write_traces(tmp_path / "traces.jsonl", [make_trace("plain"), tricky])
    summary = export(tmp_path / "traces.jsonl", tmp_path / "out", ExportConfig(render_samples=10), template=template)
    assert (summary.render_checked, summary.render_failed) == (2, 1)
    rejects = [json.loads(line) for line in (tmp_path / "out" / "rejects.jsonl").read_text().splitlines()]
    assert [(r["id"], r["stage"]) for r in rejects] == [("tricky", "render")]
    assert "rendered tool responses differ" in rejects[0]["reasons"][-1]
    assert "tricky" not in (tmp_path / "out" / "trl" / "train.jsonl").read_text()


def test_max_tokens_counts_with_the_model_tokenizer(tmp_path: Path, template: EmbeddedTemplate) -> None:
    short, long = make_trace("short"), make_trace("long")
    long.messages[3] = Message(role="tool", tool_call_id="c1", content="lorem ipsum dolor " * 200)
    counts = {}
    for trace in (short, long):
        row = canonical_row(trace)
        counts[trace.id] = template.count_tokens(row["messages"], row["tools"])
    assert counts["short"] < counts["long"]
    write_traces(tmp_path / "traces.jsonl", [short, long])
    cfg = ExportConfig(max_tokens=counts["short"], token_counter="embedded", render_samples=0, validation_fraction=0)
    summary = export(tmp_path / "traces.jsonl", tmp_path / "out", cfg, template=template)
    assert summary.filtered == {"too_many_tokens": 1}
    assert "tokenizer" in summary.token_counter
    assert summary.stats["train"]["tokens"]["max"] == counts["short"], "the limit is inclusive and exact"


def test_approximate_counts_stay_near_the_real_ones(template: EmbeddedTemplate) -> None:
    """The documented approximation (character classes + template markup) against the real tokenizer."""
    long_output = make_trace("long-output")
    long_output.messages[3] = Message(role="tool", tool_call_id="c1", content="drwxr-xr-x 2 app app 4096 log\n" * 60)
    for trace in (make_trace("two-turns"), make_trace("one-turn", turns=1), long_output):
        row = canonical_row(trace)
        real = template.count_tokens(row["messages"], row["tools"])
        estimate = approx_tokens(row["messages"], row["tools"])
        assert 0.8 <= estimate / real <= 1.2, (trace.id, estimate, real)
