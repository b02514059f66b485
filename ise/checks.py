"""Success checks: the one place that runs a check and decides its verdict, for plan validation, mid-episode
probes, final checks and eval alike.

A shell check passes when its command (run as root) exits with `expect_exit` in time and, if `expect_stdout` is
set, prints that text. An answer check compares the agent's answer with its expected value after normalising both:
- surrounding whitespace, code fences and pairs of quotes or markdown marks (`x`, **x**, "x", 'x', “x”) are
  removed, and so is a trailing `.`, `!` or `;`, repeatedly; runs of whitespace become one space; case is folded
  unless `case_sensitive`.
- exact: the two are equal. contains: the expected text occurs in the answer, not inside a longer word or number
  ("4" is not in "42"). one_of: the answer equals one of the options. regex: the pattern is searched in the
  answer (case-insensitively unless case_sensitive).
- number: the value of a text is its last number. Digits that belong to a date, a time, a path or a name (2024-01-03,
  12:30, app2.log) are not numbers; `1,234` is 1234; a unit may follow (12MB, 5s). It passes when the two values
  differ by at most `tolerance`.
- script: the check's `verify` script, run as root with $ISE_ANSWER and $ISE_EXPECTED, accepts by exiting 0.
With a `command`, the expected value is what it prints (stripped; for one_of, one option per line), run as root at
check time with the answer on stdin and in $ISE_ANSWER; a command that fails or times out fails the check.

A reward check (Harbor's verifiers) is ise/reward.py's.
"""

from __future__ import annotations

import re
import shlex

from ise.records import AnswerCheck, Check, CheckResult, Milestone, RewardCheck, ShellCheck
from ise.reward import run_reward
from ise.sandbox.base import ExecResult, Sandbox

OUTPUT_CLIP = 4000
"""Characters of a check's stdout/stderr kept in its result."""
ANSWER_LIMIT = 32_000
"""Characters of the answer handed to a check's command (it travels on a command line)."""

_FENCE = re.compile(r"^```[\w+-]*\n(.*?)\n?```$", re.S)
_PAIRS: tuple[tuple[str, str], ...] = (
    ("**", "**"),
    ("__", "__"),
    ("`", "`"),
    ("*", "*"),
    ("_", "_"),
    ('"', '"'),
    ("'", "'"),
)
_PAIRS += (("\u201c", "\u201d"), ("\u2018", "\u2019"))  # curly double and single quotes
_NUMBER = re.compile(r"(?<![\w/:.,-])[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?![\d/:-]|[.,]\d)")


def normalise(text: str, *, case_sensitive: bool = False) -> str:
    """The answer as compared (see the module docstring)."""
    text = text.strip()
    while True:
        before = text
        if fence := _FENCE.match(text):
            text = fence.group(1).strip()
        if text[-1:] in (".", "!", ";"):
            text = text[:-1].rstrip()
        for left, right in _PAIRS:
            if len(text) > len(left) + len(right) and text.startswith(left) and text.endswith(right):
                text = text[len(left) : -len(right)].strip()
        if text == before:
            break
    text = " ".join(text.split())
    return text if case_sensitive else text.casefold()


def last_number(text: str) -> float | None:
    """The value of a text for `number` checks: its last number, or None."""
    found = _NUMBER.findall(text)
    return float(found[-1].replace(",", "")) if found else None


def answer_verdict(check: AnswerCheck, answer: str, expected: str) -> tuple[bool, str | None]:
    """Does `answer` match `expected` (or, for one_of, one of its lines / the options)? With the reason if not."""
    case = check.case_sensitive
    got = normalise(answer, case_sensitive=case)
    if not got:
        return False, "the answer is empty"
    if check.match == "number":
        value, want = last_number(got), last_number(expected)
        if want is None:
            return False, f"the expected value {expected!r} holds no number"
        if value is None:
            return False, "the answer holds no number"
        ok = abs(value - want) <= check.tolerance
        return ok, None if ok else f"{value:g} is not {want:g} (tolerance {check.tolerance:g})"
    if check.match == "regex":
        flags = 0 if case else re.IGNORECASE
        ok = re.search(expected, normalise(answer, case_sensitive=True), flags) is not None
        return ok, None if ok else f"the answer does not match /{expected}/"
    if check.match == "one_of":
        options = check.options or [line for line in expected.splitlines() if line.strip()]
        ok = got in {normalise(o, case_sensitive=case) for o in options}
        return ok, None if ok else "the answer is none of the accepted ones"
    want_text = normalise(expected, case_sensitive=case)
    if not want_text:
        return False, "the expected value is empty"
    if check.match == "contains":
        ok = re.search(_bounded(want_text), got) is not None
        return ok, None if ok else f"the answer does not contain {want_text!r}"
    ok = got == want_text
    return ok, None if ok else f"the answer is not {want_text!r}"


def _bounded(text: str) -> str:
    """`text` as a pattern that does not match inside a longer word or number."""
    left = r"(?<!\w)" if re.match(r"\w", text) else ""
    right = r"(?!\w)" if re.search(r"\w$", text) else ""
    return left + re.escape(text) + right


def shell_verdict(check: ShellCheck, result: ExecResult) -> bool:
    if result.timed_out or result.exit_code != check.expect_exit:
        return False
    return check.expect_stdout is None or check.expect_stdout in result.stdout


def run_check(check: Check, sandbox: Sandbox, *, answer: str, timeout_s: float) -> CheckResult:
    """Run one check against the sandbox's current state (as root) and the agent's `answer`."""
    if isinstance(check, ShellCheck):
        result = sandbox.exec(check.command, timeout_s=timeout_s, user="root")
        return _from_exec(check.id, result, passed=shell_verdict(check, result))
    if isinstance(check, RewardCheck):
        return run_reward(check, sandbox, timeout_s=check.timeout_s or timeout_s)
    if check.match == "script":
        return _run_script(check, sandbox, answer=answer, timeout_s=timeout_s)
    if check.command is None:
        passed, reason = answer_verdict(check, answer, check.expected or "")
        return CheckResult(
            id=check.id,
            passed=passed,
            exit_code=0,
            kind="answer",
            answer=_clip(answer),
            expected=check.expected if check.match != "one_of" else "\n".join(check.options),
            reason=reason,
        )
    result = sandbox.exec(_with_answer(check.command, answer), timeout_s=timeout_s, user="root")
    expected = result.stdout.strip()
    if result.timed_out or result.exit_code != 0:
        passed, reason = False, "the check's command timed out" if result.timed_out else "the check's command failed"
    else:
        passed, reason = answer_verdict(check, answer, expected)
    return _from_exec(
        check.id, result, passed=passed, kind="answer", answer=_clip(answer), expected=_clip(expected), reason=reason
    )


def _run_script(check: AnswerCheck, sandbox: Sandbox, *, answer: str, timeout_s: float) -> CheckResult:
    """match script: the expected value (literal or computed), then the check's own `verify` decides."""
    expected: str = check.expected or ""
    if check.command is not None:
        computed = sandbox.exec(_with_answer(check.command, answer), timeout_s=timeout_s, user="root")
        if computed.timed_out or computed.exit_code != 0:
            reason = "the check's command timed out" if computed.timed_out else "the check's command failed"
            return _from_exec(check.id, computed, passed=False, kind="answer", answer=_clip(answer), reason=reason)
        expected = computed.stdout.strip()
    if not normalise(answer):
        empty = "the answer is empty"
        return CheckResult(id=check.id, passed=False, exit_code=0, kind="answer", answer="", reason=empty)
    script = f"export ISE_EXPECTED={shlex.quote(expected)}\n{check.verify}"
    result = sandbox.exec(_with_answer(script, answer), timeout_s=timeout_s, user="root")
    passed = not result.timed_out and result.exit_code == 0
    rejected = None if passed else "the check's script rejected the answer"
    return _from_exec(
        check.id, result, passed=passed, kind="answer", answer=_clip(answer), expected=_clip(expected), reason=rejected
    )


def _with_answer(command: str, answer: str) -> str:
    quoted = shlex.quote(answer[:ANSWER_LIMIT])
    return f"export ISE_ANSWER={quoted}\nprintf '%s' \"$ISE_ANSWER\" | {{\n{command}\n}}"


def _from_exec(check_id: str, result: ExecResult, *, passed: bool, **fields: object) -> CheckResult:
    return CheckResult.model_validate(
        {
            "id": check_id,
            "passed": passed,
            "exit_code": result.exit_code,
            "stdout": _clip(result.stdout),
            "stderr": _clip(result.stderr),
            "duration_s": round(result.duration_s, 4),
            "timed_out": result.timed_out,
            **fields,
        }
    )


def _clip(text: str, limit: int = OUTPUT_CLIP) -> str:
    return text if len(text) <= limit else text[:limit] + f"... [{len(text) - limit} more chars]"


def describe(check: Check) -> str:
    """One line saying what a check looks at, for prompts and the user simulator's digest."""
    if isinstance(check, AnswerCheck):
        return f"{check.description} (the agent's answer)"
    return check.description


def answer_for(check_id: str, milestones: list[Milestone], answers: dict[str, str], final: str) -> str:
    """The answer a check is compared with: the last one given while its milestone was current (`answers`, by
    milestone id), or the episode's final answer for a check no milestone names."""
    for milestone in milestones:
        if check_id in milestone.checks:
            return answers.get(milestone.id, "")
    return final
