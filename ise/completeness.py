"""Whether a drafted request or deliverable is whole: the one rule the intents stage judges drafts by.

A model that runs out of tokens, or stops early, leaves text such as "... Can you help me with that? The PDF is
named" -- an intent the simulate stage cannot plan (which PDF?). Such a draft is cut off when it ends without
closing punctuation, trails off ("...", "…"), ends on a word that needs a continuation ("into the."), or names
something it never gives ("is named", "called", "at the path" followed by nothing or by punctuation).
"""

from __future__ import annotations

import re

_CLOSERS = "\"'\u201d\u2019)]}`*"
"""Marks that may follow the final punctuation ('... "report ready".', '(see ~/notes).')."""
_NAMING = re.compile(
    r"(?:\b(?:is|are|was|were)|\b(?:a|an|the|my|our|your|their)(?:\s+[\w.-]+){1,2})\s+(?:named|called|titled)"
    r"\s*(?=$|[.!?,;:]|\s+(?:and|or|but|which|that)\b)"
    r"|\b(?:at the path|located at|saved as)\s*(?=$|[.!?,;:]|\s+(?:and|or|but|which|that)\b)",
    re.IGNORECASE,
)
"""A name announced and not given: "is named", "the folder called", "at the path", with nothing (or a full stop, or a
conjunction) after it. "... with any failure in tests/x.py named." names its object first, and is whole."""
_DANGLING = re.compile(r"\b(?:the|a|an|and|or|my|your|our|their|its|e\.g)\s*[.!?]?$", re.IGNORECASE)
"""Words that cannot end a sentence (articles, conjunctions, possessives). Prepositions and verbs can: "tell me where
it is.", "where that comes from."."""
_ELLIPSIS = re.compile(r"(?:\.\.\.|…)$")


def cut_off_reason(text: str, *, sentence: bool = True) -> str | None:
    """Why `text` reads as cut off, or None when it is whole. `sentence`: it must end with closing punctuation (a
    request is written to someone; a deliverable may be a noun phrase: "report/errors.csv and an incidents row")."""
    stripped = text.strip()
    if not stripped:
        return "it is empty"
    if naming := _NAMING.search(stripped):
        return f"it names something it never gives ({naming.group(0).strip()!r} with nothing after it)"
    core = stripped.rstrip(_CLOSERS).rstrip()
    if _ELLIPSIS.search(core):
        return "it trails off"
    if dangling := _DANGLING.search(core):
        return f"it ends mid-sentence ({dangling.group(0)!r})"
    if sentence and (not core or core[-1] not in ".!?"):
        return "it ends without closing punctuation"
    return None
