"""Reading a shell command as bash does at its top level, for lints (ise/plan_lint.py): lists (`;`, `&&`, `||`),
pipelines, simple commands with their redirections and assignments set apart. Anything inside quotes, `$(...)`,
subshells or `{ }` groups stays one opaque word; syntax not read here (here-documents, `if`, `case`, `set`) raises
Opaque, so a lint can leave such a command alone.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

_OPERATORS = (";", "&&", "||", "&", "|")
_OPENERS = {"'": "'", '"': '"', "`": "`", "(": ")", "{": "}"}


class Opaque(Exception):
    """Syntax the lint does not read; the check is left to the dry run."""


def _lex(script: str) -> list[str]:
    """Top-level words (raw, quotes kept) and operators; a newline reads as `;`."""
    tokens: list[str] = []
    word = ""
    stack: list[str] = []
    i = 0
    while i < len(script):
        c, ahead = script[i], script[i + 1 : i + 2]
        if stack:
            consumed = _nested(script, i, stack)
            word += script[i : i + consumed]
            i += consumed
            continue
        if c in " \t\n;&|" and not _redirection_part(word, c, ahead):
            if word:
                tokens.append(word)
                word = ""
            operator = _operator(c, ahead)
            continued = operator == ";" and c == "\n" and tokens[-1:] in (["&&"], ["||"], ["|"])
            if operator and not continued:
                tokens.append(operator)
            i += 1 if operator in ("", ";", "&", "|") else 2
            if operator == "|" and ahead == "&":
                i += 1
            continue
        if c == "#" and not word:
            end = script.find("\n", i)
            i = len(script) if end < 0 else end
            continue
        if c == "\\":
            word += script[i : i + 2] if ahead != "\n" else ""
            i += 2
            continue
        if c in ")}":
            raise Opaque(f"unbalanced {c}")
        if c in _OPENERS:
            stack.append(_OPENERS[c])
        word += c
        i += 1
    if stack:
        raise Opaque("unbalanced quotes or brackets")
    if word:
        tokens.append(word)
    return tokens


def _operator(c: str, ahead: str) -> str:
    if c in " \t":
        return ""
    if c == "\n":
        return ";"
    if c == ";" and ahead == ";":
        raise Opaque("case arm")
    if c in "&|" and ahead == c:
        return c * 2
    return c


def _redirection_part(word: str, c: str, ahead: str) -> bool:
    """`2>&1`, `&>f`, `>|f`: an & or | that belongs to a redirection, not a list or a pipe."""
    return (c == "&" and (word.endswith((">", "<")) or ahead == ">")) or (c == "|" and word.endswith(">"))


def _nested(script: str, i: int, stack: list[str]) -> int:
    """Consume one character (two for an escape or `$(`) inside quotes or brackets; returns how many."""
    c, closer = script[i], stack[-1]
    if closer == "'":
        if c == "'":
            stack.pop()
        return 1
    if c == "\\":
        return 2
    if closer in '"`':
        if c == closer:
            stack.pop()
        elif closer == '"' and script.startswith("$(", i):
            stack.append(")")
            return 2
        return 1
    if c == closer:
        stack.pop()
    elif c in _OPENERS:
        stack.append(_OPENERS[c])
    elif c in ")}":
        raise Opaque(f"unbalanced {c}")
    return 1


@dataclass
class Command:
    words: list[str]
    """Raw words, redirections and leading assignments removed."""
    assignments: list[str]
    reads_file: bool
    """Has an input redirection from a file (`< f`)."""

    @property
    def name(self) -> str:
        return unquote(self.words[0]) if self.words else ""

    @property
    def args(self) -> list[str]:
        return [unquote(w) for w in self.words[1:]]


@dataclass
class Pipeline:
    op: str
    """The list operator before it ("" for the first)."""
    negated: bool
    commands: list[Command]
    text: str


_REDIRECT = re.compile(r"^\d*(?:>>?|<<<|<>|<|&>>?|>&|<&)")
_ASSIGNMENT = re.compile(r"^[A-Za-z_]\w*(?:\[[^]]*\])?\+?=")
_KEYWORDS = {"if", "then", "elif", "else", "fi", "for", "while", "until", "do", "done", "case", "esac", "function"}
_UNREAD = {"set", "trap", "source", ".", "eval", "exec", "shopt", "return"}
"""Builtins that change how the rest of the script runs or what it is."""


def read_pipelines(script: str) -> list[Pipeline]:
    tokens = _lex(script)
    pipelines: list[Pipeline] = []
    op, current = "", []
    for token in [*tokens, ";"]:
        if token not in (";", "&&", "||", "&"):
            current.append(token)
            continue
        if current:
            pipelines.append(_pipeline(op, current))
        elif token == ";":
            continue  # a blank line or a trailing ;
        else:
            raise Opaque("empty command")
        op, current = token, []
    if any(p.op == "&" for p in pipelines):
        raise Opaque("background job")
    return pipelines


def _pipeline(op: str, tokens: list[str]) -> Pipeline:
    negated = tokens[0] == "!"
    parts: list[list[str]] = [[]]
    for token in tokens[1:] if negated else tokens:
        if token == "|":
            parts.append([])
        else:
            parts[-1].append(token)
    if any(not part for part in parts):
        raise Opaque("empty pipeline stage")
    return Pipeline(op, negated, [_command(part) for part in parts], " ".join(tokens))


def _command(words: list[str]) -> Command:
    kept: list[str] = []
    assignments: list[str] = []
    reads_file = skip_next = False
    for word in words:
        if skip_next:
            skip_next = False
            continue
        if "<<" in word and not word.startswith("<<<"):
            raise Opaque("here-document")
        if match := _REDIRECT.match(word):
            reads_file = reads_file or ("<" in match.group(0) and "&" not in match.group(0))
            skip_next = match.end() == len(word)
            continue
        if not kept and _ASSIGNMENT.match(word):
            assignments.append(word)
            continue
        kept.append(word)
    if kept and unquote(kept[0]) in _KEYWORDS | _UNREAD:
        raise Opaque("compound command")
    # A subshell or a { } group stays one opaque word: it can depend on anything, and its status is unknown.
    return Command(kept, assignments, reads_file)


def unquote(word: str) -> str:
    try:
        return "".join(shlex.split(word))
    except ValueError:
        return word


def expands(word: str) -> bool:
    """Does the word depend on anything at run time ($var, $(...), `...`, a glob)?"""
    unquoted = re.sub(r"'[^']*'", "", word)
    return bool(re.search(r"[$`]", unquoted)) or bool(re.search(r"[*?]", re.sub(r'"[^"]*"', "", unquoted)))
