"""The verdict rules of shell and answer checks, in the standard library only.

ise/checks.py decides every verdict with these functions, and a Harbor task that ise exports carries this very file
in its tests/ folder (ise/tasks/harbor_export.py copies it verbatim), where `python3 check_rules.py checks.json
reward.txt` runs the plan's checks inside the task's container and writes the reward: one rule, in ise and out of it.
So: no imports from ise or any third-party package here, and nothing that differs between the two uses. The rules
themselves are documented at the top of ise/checks.py.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

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
    """The answer as compared (see ise/checks.py)."""
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


def answer_rule(
    match: str,
    answer: str,
    expected: str,
    *,
    options: Sequence[str] = (),
    tolerance: float = 0.0,
    case_sensitive: bool = False,
) -> tuple[bool, str | None]:
    """Does `answer` match `expected` (or, for one_of, one of its lines / the options)? With the reason if not."""
    got = normalise(answer, case_sensitive=case_sensitive)
    if not got:
        return False, "the answer is empty"
    if match == "number":
        value, want = last_number(got), last_number(expected)
        if want is None:
            return False, f"the expected value {expected!r} holds no number"
        if value is None:
            return False, "the answer holds no number"
        ok = abs(value - want) <= tolerance
        return ok, None if ok else f"{value:g} is not {want:g} (tolerance {tolerance:g})"
    if match == "regex":
        flags = 0 if case_sensitive else re.IGNORECASE
        ok = re.search(expected, normalise(answer, case_sensitive=True), flags) is not None
        return ok, None if ok else f"the answer does not match /{expected}/"
    if match == "one_of":
        accepted = list(options) or [line for line in expected.splitlines() if line.strip()]
        ok = got in {normalise(o, case_sensitive=case_sensitive) for o in accepted}
        return ok, None if ok else "the answer is none of the accepted ones"
    want_text = normalise(expected, case_sensitive=case_sensitive)
    if not want_text:
        return False, "the expected value is empty"
    if match == "contains":
        ok = re.search(_bounded(want_text), got) is not None
        return ok, None if ok else f"the answer does not contain {want_text!r}"
    ok = got == want_text
    return ok, None if ok else f"the answer is not {want_text!r}"


def _bounded(text: str) -> str:
    """`text` as a pattern that does not match inside a longer word or number."""
    left = r"(?<!\w)" if re.match(r"\w", text) else ""
    right = r"(?!\w)" if re.search(r"\w$", text) else ""
    return left + re.escape(text) + right


def shell_rule(exit_code: int, stdout: str, *, timed_out: bool, expect_exit: int, expect_stdout: str | None) -> bool:
    """A shell check passes when its command exits `expect_exit` in time and prints `expect_stdout` if set."""
    if timed_out or exit_code != expect_exit:
        return False
    return expect_stdout is None or expect_stdout in stdout


def with_answer(command: str, answer: str) -> str:
    """`command` with the answer in $ISE_ANSWER and on its stdin."""
    quoted = "'" + answer[:ANSWER_LIMIT].replace("'", "'\"'\"'") + "'"
    return f"export ISE_ANSWER={quoted}\nprintf '%s' \"$ISE_ANSWER\" | {{\n{command}\n}}"


# --- the verifier of exported Harbor tasks (run as a script; ise itself runs checks through its sandbox) ----------


def _bash(command: str, timeout_s: float, cwd: str) -> tuple[int, str, bool]:
    """Exit code, stdout and whether it timed out, as a check command run as ise's sandbox runs it."""
    try:
        done = subprocess.run(
            ["bash", "-c", command], cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout_s
        )
    except subprocess.TimeoutExpired:
        return 124, "", True
    return done.returncode, done.stdout.decode("utf-8", "replace"), False


def _answer_check(check: dict[str, Any], answer: str, timeout_s: float, cwd: str) -> tuple[bool, str | None]:
    expected = check.get("expected") or ""
    if check.get("command") is not None:
        code, stdout, timed_out = _bash(with_answer(check["command"], answer), timeout_s, cwd)
        if timed_out or code != 0:
            return False, "the check's command timed out" if timed_out else "the check's command failed"
        expected = stdout.strip()
    if check["match"] == "script":
        if not normalise(answer):
            return False, "the answer is empty"
        script = "export ISE_EXPECTED='" + expected.replace("'", "'\"'\"'") + "'\n" + check["verify"]
        code, _, timed_out = _bash(with_answer(script, answer), timeout_s, cwd)
        return (not timed_out and code == 0), None if code == 0 else "the check's script rejected the answer"
    return answer_rule(
        check["match"],
        answer,
        expected,
        options=check.get("options") or (),
        tolerance=float(check.get("tolerance", 0.0)),
        case_sensitive=bool(check.get("case_sensitive", False)),
    )


def _verdict(check: dict[str, Any], timeout_s: float, cwd: str) -> tuple[bool, str | None]:
    if check["kind"] == "shell":
        code, stdout, timed_out = _bash(check["command"], timeout_s, cwd)
        ok = shell_rule(
            code,
            stdout,
            timed_out=timed_out,
            expect_exit=int(check.get("expect_exit", 0)),
            expect_stdout=check.get("expect_stdout"),
        )
        return ok, None if ok else f"exit {code}" + (" (timed out)" if timed_out else "")
    try:
        answer = Path(check["answer_file"]).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False, f"no answer in {check['answer_file']}"
    return _answer_check(check, answer, timeout_s, cwd)


def main(argv: Sequence[str]) -> int:
    """checks.json reward.txt: run every check, print each verdict, write reward 1 when all pass, else 0."""
    if len(argv) != 2:
        print("usage: check_rules.py CHECKS_JSON REWARD_TXT", file=sys.stderr)
        return 2
    spec = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    passed = True
    for check in spec["checks"]:
        ok, reason = _verdict(check, float(spec["timeout_s"]), spec["workdir"])
        passed = passed and ok
        print(f"{'PASS' if ok else 'FAIL'} {check['id']}" + ("" if ok else f": {reason}"))
    reward = Path(argv[1])
    reward.parent.mkdir(parents=True, exist_ok=True)
    reward.write_text("1\n" if passed else "0\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
