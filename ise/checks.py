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

A reward check (Harbor's verifiers) is ise/reward.py's. The rules themselves (normalising, comparing, a shell
check's exit and output) live in ise/check_rules.py, standard library only, which exported Harbor tasks carry.
"""

from __future__ import annotations

import shlex

from ise.check_rules import ANSWER_LIMIT, answer_rule, last_number, normalise, shell_rule, with_answer
from ise.records import AnswerCheck, Check, CheckResult, Milestone, RewardCheck, ShellCheck
from ise.reward import run_reward
from ise.sandbox.base import ExecResult, Sandbox

OUTPUT_CLIP = 4000
"""Characters of a check's stdout/stderr kept in its result."""

__all__ = [
    "ANSWER_LIMIT",
    "answer_for",
    "answer_verdict",
    "describe",
    "last_number",
    "normalise",
    "run_check",
    "shell_verdict",
]


def answer_verdict(check: AnswerCheck, answer: str, expected: str) -> tuple[bool, str | None]:
    """Does `answer` match `expected` (or, for one_of, one of its lines / the options)? With the reason if not."""
    return answer_rule(
        check.match,
        answer,
        expected,
        options=check.options,
        tolerance=check.tolerance,
        case_sensitive=check.case_sensitive,
    )


def shell_verdict(check: ShellCheck, result: ExecResult) -> bool:
    return shell_rule(
        result.exit_code,
        result.stdout,
        timed_out=result.timed_out,
        expect_exit=check.expect_exit,
        expect_stdout=check.expect_stdout,
    )


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
    result, failure = _compute_expected(check.command, sandbox, answer=answer, timeout_s=timeout_s)
    expected = result.stdout.strip()
    passed, reason = (False, failure) if failure else answer_verdict(check, answer, expected)
    return _from_exec(
        check.id, result, passed=passed, kind="answer", answer=_clip(answer), expected=_clip(expected), reason=reason
    )


def _run_script(check: AnswerCheck, sandbox: Sandbox, *, answer: str, timeout_s: float) -> CheckResult:
    """match script: the expected value (literal or computed), then the check's own `verify` decides."""
    expected: str = check.expected or ""
    if check.command is not None:
        computed, failure = _compute_expected(check.command, sandbox, answer=answer, timeout_s=timeout_s)
        if failure:
            return _from_exec(check.id, computed, passed=False, kind="answer", answer=_clip(answer), reason=failure)
        expected = computed.stdout.strip()
    if not normalise(answer):
        empty = "the answer is empty"
        return CheckResult(id=check.id, passed=False, exit_code=0, kind="answer", answer="", reason=empty)
    script = f"export ISE_EXPECTED={shlex.quote(expected)}\n{check.verify}"
    result = sandbox.exec(with_answer(script, answer), timeout_s=timeout_s, user="root")
    passed = not result.timed_out and result.exit_code == 0
    rejected = None if passed else "the check's script rejected the answer"
    return _from_exec(
        check.id, result, passed=passed, kind="answer", answer=_clip(answer), expected=_clip(expected), reason=rejected
    )


def _compute_expected(
    command: str, sandbox: Sandbox, *, answer: str, timeout_s: float
) -> tuple[ExecResult, str | None]:
    """Run an answer check's command, which prints the expected value; the second item says why it failed, if it
    did (a check whose command fails or times out never passes)."""
    result = sandbox.exec(with_answer(command, answer), timeout_s=timeout_s, user="root")
    if result.timed_out:
        return result, "the check's command timed out"
    if result.exit_code != 0:
        return result, "the check's command failed"
    return result, None


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
