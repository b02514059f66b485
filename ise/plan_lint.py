"""Shell checks whose outcome cannot depend on the workspace, found without running them.

A dry run proves a check fails on the initial state and passes once solved, but a check like
`find ... | grep -q x || true` with expect_exit 1 fails both times and costs the plan writer an attempt that a
plain sentence could have saved; `echo ok` passes both times. The lint reads the command as bash would at its top
level (lists, pipelines, simple commands; anything inside quotes, subshells, braces or `$(...)` stays opaque) and
reports, in words the writer can act on:

- constant: every command only prints or compares literals (`echo ok`, `test 1 -eq 1`, `[ -n "x" ]`, `exit 0`);
- forced: a trailing `|| true`, `|| :`, `; true`, `; exit 0`, `|| echo ...` fixes the exit code while the exit
  code alone decides (with expect_stdout set, `grep -c x f || true` is fine: the count decides);
- never: expect_exit is a code the command cannot produce (test and `!` exit 0 or 1; exit codes stop at 255);
- always_prints: the expected text is printed by an unconditional trailing `echo`;
- grep_files: grep given names after its pattern reads them as files (and ignores piped input).

Unknown syntax (here-documents, `case`, `if`, unbalanced quotes) is left alone: a false alarm costs a plan.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from ise.records import ShellCheck
from ise.shell_words import Command, Opaque, Pipeline, expands, read_pipelines

LintRule = Literal["constant", "forced", "never", "always_prints", "grep_files"]


@dataclass(frozen=True)
class Finding:
    rule: LintRule
    message: str
    """Says why the outcome cannot depend on the workspace, and what to write instead."""


# --- what a command can depend on ---------------------------------------------------------------------------------

_LITERAL_COMMANDS = {
    *("true", "false", ":", "echo", "printf", "exit", "test", "[", "[[", "expr", "seq", "sleep"),
    *("whoami", "hostname", "uname", "date", "pwd"),
}
"""Commands that read nothing the agent can change (given literal arguments)."""
_FILTERS = {"grep", "egrep", "fgrep", "sed", "awk", "tr", "cut", "wc", "sort", "uniq", "head", "tail", "cat", "rev"}
_FILE_TESTS = {
    *("-e", "-f", "-d", "-L", "-h", "-s", "-r", "-w", "-x", "-p", "-S", "-b", "-c", "-g", "-u", "-k", "-O", "-G"),
    *("-N", "-a", "-nt", "-ot", "-ef", "-v"),
}
"""test operators whose operand is a path or a variable name: the test looks at the world."""


def _literal(command: Command, fed_by_literal: bool) -> bool:
    """Does the command only print or compare literals (given literal input when `fed_by_literal`)?"""
    if command.reads_file or any(expands(w) for w in [*command.words, *command.assignments]):
        return False
    if not command.words:
        return True
    name, args = command.name, command.args
    if name in ("test", "[", "[["):
        return not any(arg in _FILE_TESTS for arg in args)
    if name in _LITERAL_COMMANDS:
        return True
    # A filter reads its input when no file is named: literal in, literal out.
    return fed_by_literal and name in _FILTERS and not any("/" in arg or "." in arg for arg in args)


def _literal_script(pipelines: list[Pipeline]) -> bool:
    for pipeline in pipelines:
        fed = False
        for command in pipeline.commands:
            if not _literal(command, fed):
                return False
            fed = True
    return True


# --- what exit code it can end with -------------------------------------------------------------------------------

_TWO_VALUED = {"test", "[", "[["}


def _fixed_status(pipeline: Pipeline) -> int | None:
    """The exit code the pipeline always ends with, when its last command fixes it."""
    last = pipeline.commands[-1]
    status: int | None = None
    if last.name in ("true", ":") or (last.name in ("echo", "printf") and not last.reads_file):
        status = 0
    elif last.name == "false":
        status = 1
    elif last.name == "exit" and len(last.words) == 2 and re.fullmatch(r"\d+", last.args[0]):
        status = int(last.args[0]) % 256
    if status is None or not pipeline.negated:
        return status
    return 1 if status == 0 else 0


def _forced_status(pipelines: list[Pipeline]) -> int | None:
    """The exit code the whole list always ends with, or None when it depends on what its commands find."""
    if any(len(p.commands) == 1 and p.commands[0].name == "exit" for p in pipelines[:-1]):
        return None  # an earlier `exit` may end the script with its own code
    status = _fixed_status(pipelines[0])
    for pipeline in pipelines[1:]:
        fixed = _fixed_status(pipeline)
        if pipeline.op == ";":
            status = fixed
        elif pipeline.op == "&&":
            status = fixed if status == 0 else status
        elif status is None:  # ||: a fixed 0 after an unknown one always wins
            status = 0 if fixed == 0 else None
        elif status != 0:
            status = fixed
    return status


def _possible(pipelines: list[Pipeline], expect_exit: int) -> bool:
    if not 0 <= expect_exit <= 255:
        return False
    if len(pipelines) != 1 or expect_exit < 2:
        return True
    only = pipelines[0]
    return not (only.negated or only.commands[-1].name in _TWO_VALUED)


# --- grep given names as files ------------------------------------------------------------------------------------

_GREP_VALUED = set("efmABCdD")
_GREP_LONG_VALUED = {
    *("--regexp", "--file", "--max-count", "--context", "--after-context", "--before-context"),
    *("--include", "--exclude", "--exclude-dir", "--label"),
}
_BARE_NAME = re.compile(r"[\w@+-][\w.@+-]*\.(\w+)")


def _grep_operands(args: list[str]) -> tuple[str | None, list[str]]:
    """(the pattern when given as an operand, the files) of a grep command line."""
    operands: list[str] = []
    pattern_given = options_done = False
    skip = False
    for arg in args:
        if skip:
            skip = False
            continue
        if options_done or not arg.startswith("-") or arg == "-":
            operands.append(arg)
        elif arg == "--":
            options_done = True
        elif arg.startswith("--"):
            name = arg.split("=", 1)[0]
            pattern_given = pattern_given or name in ("--regexp", "--file")
            skip = name in _GREP_LONG_VALUED and "=" not in arg
        else:
            for position, flag in enumerate(arg[1:], start=1):
                if flag in _GREP_VALUED:
                    pattern_given = pattern_given or flag in "ef"
                    skip = position == len(arg) - 1
                    break
    if pattern_given:
        return None, operands
    return (operands[0] if operands else None), operands[1:]


def _grep_finding(pipelines: list[Pipeline]) -> Finding | None:
    for pipeline in pipelines:
        for position, command in enumerate(pipeline.commands):
            if command.name not in ("grep", "egrep", "fgrep") or any(expands(w) for w in command.words):
                continue
            pattern, files = _grep_operands(command.args)
            files = [f for f in files if f != "-"]
            if position > 0 and files:
                return Finding(
                    "grep_files",
                    f"grep reads {' '.join(files)} as files to search, so it ignores the piped input; give grep "
                    "one pattern (or -e per pattern) and test each name separately",
                )
            if pattern is not None and _names_list(pattern, files):
                return Finding(
                    "grep_files",
                    f"grep takes one pattern: {' '.join(files)} are read as files to search, not as more names "
                    f"to look for; test each name on its own (test -e NAME, or grep -q NAME FILE && ...)",
                )
    return None


def _names_list(pattern: str, files: list[str]) -> bool:
    """page1.txt page2.txt page3.txt: a pattern and operands that are names of one kind, a list the writer meant."""
    first = _BARE_NAME.fullmatch(pattern)
    if first is None or len(files) < 2:
        return False
    return all((m := _BARE_NAME.fullmatch(f)) is not None and m.group(1) == first.group(1) for f in files)


# --- the lint -----------------------------------------------------------------------------------------------------


def lint_check(check: ShellCheck) -> Finding | None:
    """Why `check` cannot tell undone work from done work, or None when the lint sees no reason."""
    try:
        pipelines = read_pipelines(check.command)
    except Opaque:
        return None
    if not pipelines:
        return None
    if _literal_script(pipelines):
        return Finding(
            "constant",
            "touches no file, process or output of the task (it only prints or compares literals), so it ends "
            "the same way whatever the agent did; test the result itself (test -f FILE, grep -q TEXT FILE, ...)",
        )
    if not _possible(pipelines, check.expect_exit):
        return Finding(
            "never",
            f"expects exit {check.expect_exit}, which this command never produces (test, [ ] and ! exit 0 or 1; "
            "exit codes go up to 255); expect 0 for true and 1 for false",
        )
    if finding := _grep_finding(pipelines):
        return finding
    return _outcome_finding(pipelines, check)


def _outcome_finding(pipelines: list[Pipeline], check: ShellCheck) -> Finding | None:
    forced = _forced_status(pipelines)
    if forced is None:
        return None
    tail, fix = _tail(pipelines)
    if forced != check.expect_exit:
        return Finding(
            "forced",
            f"always exits {forced} ({tail} decides), so it can never exit {check.expect_exit} as expected; {fix} "
            "and let the test's own exit code decide",
        )
    if check.expect_stdout is None:
        return Finding(
            "forced",
            f"always exits {forced} whatever the workspace holds ({tail} decides); {fix} so the test's own exit "
            "code decides",
        )
    last = pipelines[-1]
    echoed = " ".join(last.commands[-1].args)
    if last.op == ";" and last.commands[-1].name == "echo" and check.expect_stdout.strip() in echoed:
        return Finding(
            "always_prints",
            f"always prints {check.expect_stdout.strip()!r} ({tail} runs whatever happened before); print the "
            "text only when the test passes (TEST && echo ...) or expect output that comes from the workspace",
        )
    return None


def _tail(pipelines: list[Pipeline]) -> tuple[str, str]:
    """What fixes the exit code, quoted, and how to undo it."""
    last = pipelines[-1]
    if last.op:
        tail = f"`{last.op} {last.text}`"
        return tail, f"drop {tail}"
    command = " ".join(last.commands[-1].words)
    return f"`{command}` at the end", "make the test itself the last command"
