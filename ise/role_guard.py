"""The user simulator's role guard: cleans a draft and tells whether it is something the user would say.

A draft has drifted when it answers as the assistant: it offers help, takes the task over ("I'll take care of it"),
reports work as if it had done it, explains or solves the task, emits code, JSON or tool calls, speaks as an AI, or
talks about the role-play. A user may still paste what they were given: a log, an error or someone's script in a
code fence is in role when the words around it present it as such. Each pattern is measured against the labelled
drafts in tests/data/user_turns.yaml (bench/role_guard_bench.py); they are narrow on purpose, because a real user
says "Sure, go ahead", "Absolutely not" and "run it as the user www-data", and a guard that rejects those turns
throws away good data.
"""

from __future__ import annotations

import json
import re
from typing import Literal

Verdict = Literal["done", "give_up"]
VERDICT_TOKENS: dict[str, Verdict] = {"[[DONE]]": "done", "[[GIVE_UP]]": "give_up"}

_OWN_TRY = (
    r"myself|already|still|but|tried|twice|again|yesterday|before|earlier|later|tomorrow|with (?:my|our|the team)"
)
"""Words with which a user tells of their own attempt or plan ("I've updated the config myself, but it still fails",
"let me check with my manager"), so that the first-person rules below leave those turns alone."""
_STEMS = (
    r"do|delet|renam|creat|sav|updat|remov|configur|compress|generat|schedul|prepar|analy[sz]|restor|mov|writ|"
    r"finish|complet|count|check|fix|add|install|restart|edit|clean|sort|list|search|review|investigat|implement|"
    r"proceed|modif|help|assist|handl|take care|set up|run|look|take a look|have a look|start|begin|get start|work on"
)
"""The task's work, as verb stems."""
_AGENT_DOES = (
    r"(?:\b(?:I(?:'ll| will| shall|'ve| have|'m going to| am going to| can)|let me)\s+"
    rf"(?:(?:now|just|then|first|also|quickly|right away|gone ahead and|go ahead and|went ahead and)\s+)*"
    rf"(?:{_STEMS})\w*|\bI (?:{_STEMS})ed\b)(?![^.!?\n]*\b(?:{_OWN_TRY})\b)"
)
"""The speaker doing the task's work: "I'll take a look", "I've gone ahead and deleted", "let me check", "I counted"."""
_DONE = (
    r"created|updated|deleted|removed|renamed|fixed|saved|written|added|scheduled|configured|installed|moved|restored"
)
_SHELL = (
    r"(?:ls|cd|cat|grep|egrep|awk|sed|wc|du|df|chmod|chown|rm|mv|cp|mkdir|tar|gzip|systemctl|crontab|echo|printf|"
    r"python3?|pip|git|apt(?:-get)?|curl|wget|tail|head|kill|pkill|ps|journalctl|docker|rsync|sqlite3|touch|ln)"
)

_PATTERNS: dict[str, tuple[str, ...]] = {
    "speaks as the assistant": (r"^\s*(?:assistant|agent|ai)\s*:",),
    "speaks as an AI": (
        r"\bas (?:an? (?:helpful|ai|virtual|digital) assistant|your (?:ai |virtual )?assistant|an ai)\b",
        r"\blanguage model\b|\bI(?:'m| am) (?:your (?:ai )?assistant|an ai)\b",
    ),
    # offers help, or interviews the user about their task the way an assistant opens a chat
    "offers help": (
        r"\bhow (?:can|may|could) i (?:help|assist)",
        r"\b(?:happy|glad|here|ready|love|delighted) to (?:help|assist)\b",
        r"\b(?:help|assist) you (?:with|today)\b|\bglad i could help\b|\bme to (?:help|assist)\b",
        r"\bwhat can i do for you\b|\banything else (?:i can|you'?d like me to)\b|\banything else\s*\?",
        r"\bwhat (?:would you like|do you want|do you need) me to (?:do|help with|work on)\b[^?]{0,20}\?",
        r"\bwhat task (?:should|shall|would you like) i\b|\byou'?d like me to\b",
        r"\bwhat else (?:would you like|do you need|can i|shall i)\b",
        r"\blet me know if you (?:need|have) any|\blet me know if (?:there's|there is) anything else\b",
        r"\bthe (?:problem|issue) you(?:'re| are) (?:facing|having|experiencing)\b",
        r"\bwhat you(?:'re| are) trying to (?:do|achieve|accomplish)\b",
        r"\btell me (?:more )?about what you (?:need|want)\b",
        r"\b(?:provide|share) (?:me with )?(?:more |some )?(?:details|information) (?:about|on) (?:the|your)\b",
        r"\bI'm glad (?:the|your) (?:issue|problem)\b|\bhave a (?:great|nice|good|wonderful) day\b",
    ),
    "takes the task over": (
        _AGENT_DOES,
        r"\b(?:I'll|I will|let me|I can|I'm going to)\b[^.!?\n]{0,40}\bfor you\b|\bI'?m on it\b",
        r"(?:^|[.!]\s+)(?:running|checking|creating|fixing|looking into|working on|updating|deleting|renaming) "
        r"(?:it|that|this|the \w+) now\b",
    ),
    "answers like an assistant": (
        r"^\W*(?:certainly|absolutely)\b(?!,? (?:not|go ahead|do it|yes|please)\b)|^\W*great question\b",
        r"\bI(?:'m| am) sorry,? but I (?:can(?:'|no)?t|am unable|'m unable) (?:do|help|assist|access)\b",
        r"\bI understand your (?:frustration|concern)|\bI apologi[sz]e for (?:the|any)\b",
        r"\bthanks? (?:you )?for (?:the details|the information|reaching out|your patience)\b",
    ),
    "reports its own work": (
        r"\bI(?:'ve| have) (?:now |just )?successfully\b|\b(?:been|was) (?:completed|done) successfully\b",
        rf"\b(?:has|have) been (?:{_DONE})\b(?![^.!?\n]*(?:\?|\b(?:{_OWN_TRY}|by|not|never)\b))",
        r"\b(?:summary of |here(?:'s| is) )what I(?:'ve| have)? (?:did|done|changed)\b",
        r"^\W*your (?:\w+ )?(?:is|has been) (?:now )?(?:ready|done|complete|created|fixed)\b",
    ),
    # explains or solves the task: instructions, commands, fixes
    "solves the task": (
        r"\bhere(?:'s| is) how (?:you can|to)\b",
        r"\bhere(?:'s| is) (?:a|an|the|your) (?:updated|fixed|corrected|revised)\b",
        r"\bhere(?:'s| is) (?:a|an) (?:\w+ )?(?:script|one-liner|command|snippet|solution)\b",
        r"\bhere(?:'s| is| are) (?:the|a|an|some) (?:\w+ )?(?:commands?|scripts?|code|fix|solution|steps|instructions)"
        r"\b(?! (?:i|we|my|our|that (?:fails|failed|breaks))\b)",
        r"\b(?:you can|you could|I'd recommend|I recommend|I'd suggest|I suggest|simply|just) "
        r"(?:use|using|run|running|try|trying|type|execute)\b[^.!?\n]{0,20}`",
        rf"(?<!you )\b(?:by|with|try|run|use|using|running|execute|type)\s+`(?:sudo\s+)?{_SHELL}\b",
        r"\bI(?:'d| would)? (?:suggest|recommend|advise) (?:\w+ing|that you|you to)\b",
        r"\byou can (?:run|use|try) (?:the following|this)\b|\bstep (?:1|one)\s*[:.)]",
        r"\bto fix (?:it|this|that)\b,? (?:you (?:can|should)|run|use|simply)\b",
        r"\bopen (?:a|the|your) terminal\b|\btype:|\bthe (?:error|issue|problem) (?:occurs|is caused|arises)\b",
    ),
    "emits a command": (rf"^\s*(?:\$\s+)?(?:sudo\s+)?{_SHELL}\b[^\n]*(?:\s[|>]{{1,2}}\s|&&|\$\()",),
    # talks about the role-play or the simulator's own instructions
    "talks about the role-play": (
        r"\brole-?play|\bmy (?:next |first )?(?:message|reply|response) as the user\b|\bas the user, I\b",
        r"\bmilestones? (?:#?\d|one|two|three)\b|\bin (?:my|your) own (?:words|voice)\b|\bhidden facts?\b",
        r"^\s*\([^()]*\)\s*$",
    ),
}
_RULES = [(reason, re.compile("|".join(f"(?:{p})" for p in group), re.I | re.M)) for reason, group in _PATTERNS.items()]
"""One pattern per reason, tried in this order; the first that matches names the drift."""

_TOOL_CALL = re.compile(r"</?tool_call>|\"arguments\"\s*:", re.I)
_FENCE = re.compile(r"```[^\n`]*\n?(.*?)(?:```|\Z)", re.S)
_PASTED = re.compile(
    r"\b(?:errors?|logs?|output|traceback|says|said|shows|showed|prints|printed|(?:i|we) (?:get|got|see|saw|use|ran)|"
    r"i'?m (?:getting|seeing)|(?:was|were) given|gave me|sent me|colleague|coworker|someone|fails?|failed|failing|"
    r"crash(?:es|ed)?|broken|this is what|what's wrong|not working|doesn'?t work|my|our|from (?:the|my|our|a|an)|"
    r"old|current|existing)\b",
    re.I,
)
_OUTPUT_LINE = re.compile(
    r"^\s*(?:\[?\d{4}-\d\d-\d\d|\[?\d\d:\d\d:\d\d|Traceback\b)|\b(?:ERROR|WARN(?:ING)?|FATAL|Exception|"
    r"Permission denied|No such file)\b",
    re.M,
)
_SPEAKER_PREFIX = re.compile(r"^\s*(?:user|me|you)\s*:\s*", re.I)
_QUOTES = {'"': '"', "'": "'", "\u201c": "\u201d", "\u2018": "\u2019", "`": "`"}


def drift_reason(text: str) -> str | None:
    """Why this (cleaned) draft is not something the user would say, or None when it is in role."""
    stripped = text.strip()
    if not stripped:
        return "empty message"
    if _is_json(stripped):
        return "emits JSON"
    if _TOOL_CALL.search(stripped):
        return "emits a tool call"
    prose = _FENCE.sub(" ", stripped)  # what a pasted block holds is judged apart, by _code_reason
    for reason, pattern in _RULES:
        if pattern.search(prose):
            return reason
    return _code_reason(stripped, prose)


def _is_json(text: str) -> bool:
    if text[0] not in "{[":
        return False
    try:
        json.loads(text)
    except json.JSONDecodeError:
        return False
    return True


def _code_reason(text: str, prose: str) -> str | None:
    """A code block is drift unless it is pasted: the words around it say it was given, printed or failing, or
    every block reads like program output (timestamps, tracebacks, error lines)."""
    blocks = _FENCE.findall(text)
    if not blocks:
        return None
    if _PASTED.search(prose) or all(_OUTPUT_LINE.search(block) for block in blocks):
        return None
    return "emits a code block"


def judge_draft(draft: str) -> tuple[str, Verdict | None, str | None]:
    """A draft's message, its verdict and why it drifted (None when in role). A bare verdict is in role."""
    text, verdict = split_verdict(draft)
    return text, verdict, None if verdict and not text else drift_reason(text)


def split_verdict(text: str) -> tuple[str, Verdict | None]:
    """The message a draft says and its verdict token (the last one wins): tokens, a leading speaker label ("User:",
    "YOU:", the transcript's own) and literal quote marks around the whole message are removed."""
    verdict: Verdict | None = None
    best = -1
    for token, value in VERDICT_TOKENS.items():
        at = text.rfind(token)
        if at > best:
            best, verdict = at, value
    for token in VERDICT_TOKENS:
        text = text.replace(token, "")
    return _unquote(_SPEAKER_PREFIX.sub("", text.strip()).strip()), verdict


def _unquote(text: str) -> str:
    """`"Can you also count the errors?"` -> `Can you also count the errors?`; a message that merely starts and
    ends with quoted words (`"latest" is the tag, not "stable"`) is left alone."""
    if len(text) < 2 or text[0] not in _QUOTES:
        return text
    opening, closing = text[0], _QUOTES[text[0]]
    inner = text[1:-1]
    if text[-1] != closing or opening in inner or closing in inner:
        return text
    return inner.strip()
