"""Requests are whole: the cut-off rule (ise/completeness.py) on labelled examples, and through the intents stage,
where a cut-off draft is re-drafted within the stage's attempts and then sent to the errors file with the reason."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from ise.completeness import cut_off_reason
from ise.config import load_config
from ise.embeddings import HashingEmbedder
from ise.jsonl import read_dicts, read_records
from ise.llm.scripted import ScriptedLLM
from ise.records import Intent, Message, ToolSpec
from ise.sampling import sample_cells
from ise.stages.intents import IntentsPaths, run_intents
from ise.taxonomy import load_taxonomy

WHOLE = [
    "Can you help me with that? The PDF is named invoice_march.pdf and it is in ~/Downloads.",
    "Please find every file over 500 MB under /srv/media and list them by size, biggest first.",
    "Need the failed SSH logins from /var/log/auth.log since March 3, top 10 first.",
    "Rename the folder called old-site to archive-2023, please!",
    "Is the cron job at the path /etc/cron.d/backup still running?",
    'The report must say "report ready".',
    "Could you merge the two CSVs (orders_north.csv and orders_south.csv)?",
    "~/exports/weight_by_depot.csv with columns depot,total_weight_kg.",
    "A new commit on main reverts a0c93f1; the test run result is reported.",
    "Keep the files named after clients, delete the rest.",
    "Save it as summary.txt in the same folder.",
    "Find which file mentions the setting and tell me where it is.",
    "Say which address the host name resolves to, and where that comes from.",
    "The test run result is reported, with any failure in tests/test_discounts.py named.",
    "The table is named sales and lives in data/sales.db.",
]
CUT_OFF = [
    "Hi! I have a PDF I need to split into chapters. Can you help me with that? The PDF is named",
    "Hi! I have a PDF I need to split into chapters. Can you help me with that? The PDF is named.",
    "Move the old logs to the folder called",
    "Please check the script at the path and tell me why it fails.",
    "Please compress every log older than a week and put them into the",
    "Count the rows of sales.csv and write the total to",
    "I need the monthly totals for each region, and then",
    "Please tidy up my Downloads folder...",
    "Sort the photos by date, then move them into the.",
    "The deliverable is a report that lists each user and their last login",
    "Create a backup of /etc/nginx, saved as, in /backups.",
    "Could you set up a cron job that runs my cleanup script every night at",
]


@pytest.mark.parametrize("text", WHOLE)
def test_a_whole_request_passes(text: str) -> None:
    assert cut_off_reason(text) is None


@pytest.mark.parametrize("text", CUT_OFF)
def test_a_cut_off_request_is_caught(text: str) -> None:
    assert cut_off_reason(text) is not None


def test_the_reason_says_what_is_missing() -> None:
    assert "('The PDF is named' with nothing after it)" in (cut_off_reason(CUT_OFF[0]) or "")
    assert cut_off_reason("Count the rows of sales.csv") == "it ends without closing punctuation"
    assert cut_off_reason("Please tidy up my Downloads folder...") == "it trails off"


# --- through the stage --------------------------------------------------------------------------------------------

TAXONOMY = Path(__file__).resolve().parents[1] / "configs" / "taxonomy"
WHOLE_DRAFT = {
    "request": "Hi! Can you split ~/Downloads/thesis.pdf into one PDF per chapter? The PDF is named thesis.pdf.",
    "deliverable": "~/Downloads/chapters/ holds one PDF per chapter of thesis.pdf.",
    "workspace": ["~/Downloads/thesis.pdf with 5 chapters"],
}
CUT_DRAFT = {**WHOLE_DRAFT, "request": "Hi! I need my thesis split. Can you help me with that? The PDF is named"}


class Drafts:
    """Answers every prompt of a one-cell run with the next of `drafts` (the last one repeats)."""

    def __init__(self, *drafts: dict[str, Any]) -> None:
        self.drafts = list(drafts)
        self.prompts: list[list[Message]] = []

    def __call__(self, messages: Sequence[Message], tools: Sequence[ToolSpec], schema: dict[str, Any] | None) -> Any:
        self.prompts.append(list(messages))
        return {"json": self.drafts[min(len(self.prompts), len(self.drafts)) - 1]}


def run_one(tmp_path: Path, responder: Drafts) -> Path:
    config = load_config([f"intents.taxonomy={TAXONOMY}", "seed=5", "intents.max_attempts=3"])
    assert len(sample_cells(load_taxonomy(TAXONOMY), 1, config.intents.complexity_priors, config.seed)) == 1
    output = tmp_path / "intents.jsonl"
    run_intents(config, output, count=1, llm=ScriptedLLM(responder=responder), embedder=HashingEmbedder())
    return output


def test_a_cut_off_draft_is_redrafted_with_the_reason_and_the_whole_one_kept(tmp_path: Path) -> None:
    responder = Drafts(CUT_DRAFT, WHOLE_DRAFT)
    output = run_one(tmp_path, responder)

    [intent] = list(read_records(output, Intent))
    assert intent.request == WHOLE_DRAFT["request"]
    assert len(responder.prompts) == 2
    repair = responder.prompts[1][-1].content or ""
    assert (
        "request: Value error, cut off: it names something it never gives ('The PDF is named' with nothing after it)"
        in repair
    )


def test_a_draft_cut_off_on_every_attempt_goes_to_the_errors_file_with_the_reason(tmp_path: Path) -> None:
    responder = Drafts({**WHOLE_DRAFT, "deliverable": "A folder of chapter PDFs in ~/Downloads/chapters and"})
    output = run_one(tmp_path, responder)

    assert list(read_records(output, Intent)) == []
    assert len(responder.prompts) == 3  # intents.max_attempts
    [error] = list(read_dicts(IntentsPaths.for_output(output).errors))
    assert error["error"] == "StructuredOutputError"
    assert "deliverable: Value error, cut off: it ends mid-sentence ('and')" in error["message"]


@pytest.mark.parametrize(
    "deliverable",
    ["report/errors.csv and an incidents row per failing endpoint", "~/backups/site-2024-05-01.tar.gz"],
)
def test_a_deliverable_may_be_a_noun_phrase_but_a_request_is_a_sentence(deliverable: str) -> None:
    assert cut_off_reason(deliverable, sentence=False) is None
    assert cut_off_reason(deliverable) == "it ends without closing punctuation"
