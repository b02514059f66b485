"""Does the seeded workspace hold the kinds of things the intent says it holds, not just something at each path?

A plan whose fixtures write a regular file where the intent's workspace says "~/data holds broken symlinks" passes
every existence test, yet the episode built on it teaches nothing: the agent has no broken links to find. So the
dry run, after the setup, reads each workspace item for a kind of thing named right next to a path it mentions
("a git repository at ~/proj", "~/data holds two broken symlinks", "shop.db (an SQLite database)",
"backup.tar.gz", "~/app/worker.py running in the background", "a cron job for ~/bin/backup.sh") and tests it:

    symlink          test -L (the path, or one inside it)
    broken symlink   test -L && ! test -e (or find -xtype l inside it)
    directory        test -d
    sqlite database  the SQLite header, and sqlite3 FILE .tables
    git repository   git -C DIR log -1
    tar archive      tar -tf (also named by .tar, .tar.gz, .tgz)
    PDF              the %PDF magic bytes (also named by .pdf)
    running process  pgrep -f NAME
    cron entry       crontab -l -u agent / root's crontab / /etc/cron.d naming it

The reading is conservative, since a false alarm costs a plan: a kind counts only when nothing but a few filler
words ("at", "in", "is a", "holds two", a comma or a bracket) stands between it and the path. Paths that do not
exist are left to the existence test (ise/plan_validation.py reports those).
"""

from __future__ import annotations

import posixpath
import re
import shlex
from dataclasses import dataclass, field
from typing import Literal

from ise.plan_static import Problem, paths_in
from ise.records import Intent
from ise.sandbox.base import Sandbox
from ise.scope import AGENT_HOME, WORKSPACE

Kind = Literal["symlink", "broken_symlink", "directory", "sqlite", "git", "tar", "pdf", "process", "cron"]

_PHRASES: list[tuple[Kind, str]] = [
    ("broken_symlink", r"(?:broken|dangling)\s+(?:sym(?:bolic\s+)?|soft\s*)links?"),
    ("symlink", r"(?:sym(?:bolic\s+)?|soft\s*)links?"),
    ("directory", r"director(?:y|ies)|folders?"),
    ("sqlite", r"sqlite3?(?:\s+(?:database|db|file)s?)?"),
    ("git", r"git\s+(?:repo(?:sitory|sitories|s)?|checkouts?|clones?|working\s+(?:tree|copy))"),
    ("tar", r"tar\s*(?:archive|ball|file)s?|tarballs?"),
    ("pdf", r"pdfs?(?:\s+(?:file|document|report)s?)?"),
    (
        "process",
        r"(?:running|background)(?:\s+(?:python|bash|shell|node|web|http))?"
        r"(?:\s+(?:service|process|daemon|worker|server|job)s?)?",
    ),
]
_EXTENSIONS: list[tuple[Kind, re.Pattern[str]]] = [
    ("tar", re.compile(r"\.(?:tar|tar\.gz|tgz)$", re.IGNORECASE)),
    ("pdf", re.compile(r"\.pdf$", re.IGNORECASE)),
    ("sqlite", re.compile(r"\.sqlite3?$", re.IGNORECASE)),
]
_CRON = re.compile(r"\bcron(?:tab)?\b", re.IGNORECASE)
_CRON_ENTRY = re.compile(
    r"\bcron(?:tab)? (?:jobs?|entr(?:y|ies)|lines?|schedules?)\b|\b(?:in|from|by|via|with|under) (?:the |a )?"
    r"(?:agent's |root's |user's |system )?cron(?:tab)?\b",
    re.IGNORECASE,
)
"""Words that say an entry is installed (not merely that a file mentions cron: "a copy of the crontab, x.txt")."""
_SCRIPT = re.compile(r"[\w.-]+\.(?:sh|py|pl|rb|js)$")

_PUNCT = r"[\s,:()`'\"-]*"
_COUNT = r"(?:(?:a|an|the|one|two|three|four|five|six|some|several|\d+)\s+)?"
_KIND_THEN_PATH = re.compile(rf"^{_PUNCT}(?:(?:at|in|under|inside|named|called)\b{_PUNCT})?$", re.IGNORECASE)
"""`a git repository at ~/proj`, `directory ~/logs`, `broken symlinks in ~/data`."""
_PATH_THEN_KIND = re.compile(rf"^{_PUNCT}(?:(?:is|are)\s+)?{_COUNT}$", re.IGNORECASE)
"""`~/proj (a git repository)`, `shop.db, an SQLite database`, `~/logs directory`, `worker.py is running`."""
_PATH_HOLDS_KIND = re.compile(
    rf"^{_PUNCT}(?:(?:that|which)\s+)?(?:holds|holding|has|having|with|containing|contains)\s+{_COUNT}$",
    re.IGNORECASE,
)
"""`~/data holds two broken symlinks`, `~/projects with three git repos` (only for a folder)."""


@dataclass(frozen=True)
class Claim:
    """The intent says `token` is (or, for a folder, holds) a thing of `kind`."""

    token: str
    kind: Kind
    phrase: str = field(compare=False)
    """How the intent named the kind (a claim named twice is one claim)."""


def claims(intent: Intent) -> list[Claim]:
    found: list[Claim] = []
    for item in intent.workspace:
        found += _item_claims(item)
    return list(dict.fromkeys(found))


def _item_claims(item: str) -> list[Claim]:
    paths = sorted(paths_in(item), key=lambda p: p[1])
    found = [Claim(token, kind, token) for token, _ in paths for kind, ext in _EXTENSIONS if ext.search(token)]
    taken: list[tuple[int, int]] = []
    for kind, phrase in _PHRASES:
        for match in re.finditer(rf"\b(?:{phrase})\b", item, re.IGNORECASE):
            overlaps = any(a < match.end() and match.start() < b for a, b in taken)
            inside_a_path = any(start <= match.start() < start + len(token) for token, start in paths)
            if overlaps or inside_a_path or (kind == "process" and _CRON.search(item)):
                continue
            taken.append(match.span())
            if token := _adjacent(item, match, paths, kind):
                found.append(Claim(token, kind, match.group(0)))
    scripts = [token for token, _ in paths if _SCRIPT.search(token)]
    if _CRON_ENTRY.search(item) and len(scripts) == len(paths):  # a non-script path: the item is about a file
        found.append(Claim(scripts[0] if len(scripts) == 1 else "", "cron", "a cron entry"))
    return found


def _adjacent(item: str, match: re.Match[str], paths: list[tuple[str, int]], kind: Kind) -> str | None:
    """The path the kind is said of: the one right after or right before it with only filler words between."""
    after = [(token, start) for token, start in paths if start >= match.end()]
    before = [(token, start) for token, start in paths if start + len(token) <= match.start()]
    if after and _KIND_THEN_PATH.match(item[match.end() : after[0][1]]):
        return after[0][0]
    if before:
        token, start = before[-1]
        gap = item[start + len(token) : match.start()]
        if _PATH_THEN_KIND.match(gap):
            return token
        holds = kind not in ("process", "directory") and _folder_like(token)
        if holds and _PATH_HOLDS_KIND.match(gap):
            return token
    return None


def _folder_like(token: str) -> bool:
    last = token.rstrip("/").rsplit("/", 1)[-1]
    return token.endswith("/") or "." not in last


# --- testing them in the sandbox ----------------------------------------------------------------------------------

_TESTS: dict[Kind, str] = {
    "symlink": 'test -L "$1" || find "$1"/ -maxdepth 3 -type l -print -quit 2>/dev/null | grep -q .',
    "broken_symlink": '{ test -L "$1" && ! test -e "$1"; } || find "$1"/ -maxdepth 3 -xtype l -print -quit '
    "2>/dev/null | grep -q .",
    "directory": 'test -d "$1"',
    "sqlite": '_ise_any _ise_sqlite "$1"',
    "git": 'git -C "$1" log -1 >/dev/null 2>&1 || _ise_any _ise_git "$1"',
    "tar": '_ise_any _ise_tar "$1"',
    "pdf": '_ise_any _ise_pdf "$1"',
}
_HELPERS = """
_ise_sqlite() {
  [ -f "$1" ] && [ "$(head -c 15 "$1")" = "SQLite format 3" ] && sqlite3 -readonly "$1" .tables >/dev/null 2>&1
}
_ise_tar() { [ -f "$1" ] && tar -tf "$1" >/dev/null 2>&1; }
_ise_pdf() { [ -f "$1" ] && [ "$(head -c 4 "$1")" = "%PDF" ]; }
_ise_git() { [ "${1##*/}" = .git ] && git -C "${1%/*}" log -1 >/dev/null 2>&1; }
_ise_any() {
  "$1" "$2" && return 0
  [ -d "$2" ] || return 1
  local f
  while IFS= read -r -d '' f; do "$1" "$f" && return 0
  done < <(find "$2"/ -maxdepth 3 \\( -type f -o -name .git \\) -print0 2>/dev/null)
  return 1
}
"""
_IMAGE_CRON = ("/etc/cron.d/e2scrub_all", "/etc/cron.d/.placeholder")
"""Shipped with the image: they say nothing about what a plan set up."""

_WHAT: dict[Kind, tuple[str, str]] = {
    "symlink": ("a symlink", "make it with ln -s TARGET PATH in the setup"),
    "broken_symlink": ("a broken symlink", "make it with ln -s /a/target/that/does/not/exist PATH in the setup"),
    "directory": ("a directory", "make it a directory (mkdir -p) and put its files inside"),
    "sqlite": ("an SQLite database", "create it in the setup with sqlite3 PATH 'CREATE TABLE ...; INSERT ...'"),
    "git": ("a git repository", "create it in the setup with git init, git add and git commit"),
    "tar": (
        "a tar archive",
        "build it in the setup with tar -czf PATH FILES (a text file with that name is no archive)",
    ),
    "pdf": ("a PDF", "write a real PDF in the setup (a file that starts with %PDF, e.g. from python3)"),
    "process": ("running", "start it in the background at the end of the setup (nohup CMD >/dev/null 2>&1 &)"),
    "cron": ("a cron entry", "install it in the setup (echo 'SCHEDULE COMMAND' | crontab -u agent -)"),
}


def kind_problems(intent: Intent, sandbox: Sandbox, timeout_s: float) -> list[Problem]:
    """What the intent says is there but, after the setup, is there as something else (or not running)."""
    found = claims(intent)
    if not found:
        return []
    probes = [_probe(index, claim) for index, claim in enumerate(found)]
    result = sandbox.exec(_HELPERS + "\n".join(probes), timeout_s=timeout_s, user="root")
    problems = []
    for line in result.stdout.splitlines():
        index, _, actual = line.partition("\t")
        if index.isdigit() and int(index) < len(found):
            problems.append(_mismatch(found[int(index)], actual))
    return problems


def _probe(index: int, claim: Claim) -> str:
    """Shell that prints `index<TAB>what is there instead` when the claim does not hold."""
    if claim.kind == "process":
        name = posixpath.basename(claim.token.rstrip("/"))
        pattern = shlex.quote(f"[{name[0]}]{re.escape(name[1:])}")  # [w]orker\.py: never this probe itself
        return f"pgrep -f {pattern} >/dev/null || printf '%s\\t\\n' {index}"
    if claim.kind == "cron":
        return _cron_probe(index, claim)
    return (
        f'first=; while IFS= read -r p; do [ -n "$first" ] || first=$p\n'
        f'  if ( set -- "$p"; {_TESTS[claim.kind]} ); then first=ok; break; fi\n'
        f"done < <({_candidates(claim.token)})\n"
        f'if [ -n "$first" ] && [ "$first" != ok ]; then printf \'%s\\t%s %s\\n\' {index} "$first" '
        f'"$(stat -c %F "$first" 2>/dev/null)"; fi'
    )


def _candidates(token: str) -> str:
    """Shell listing the paths `token` (absolute, ~/..., relative or a bare name, globs allowed) may mean."""
    if token.startswith("~"):
        token = AGENT_HOME + token[1:]
    if token.startswith("/"):
        return f"compgen -G {shlex.quote(token.rstrip('/') or '/')}"
    name = token.removeprefix("./").rstrip("/")
    option, pattern = ("-path", f"*/{name}") if "/" in name else ("-name", name)
    return f"find {WORKSPACE} {AGENT_HOME} {option} {shlex.quote(pattern)} 2>/dev/null"


def _cron_probe(index: int, claim: Claim) -> str:
    skip = " ".join(f"! -path {shlex.quote(p)}" for p in _IMAGE_CRON)
    tables = (
        "{ crontab -l -u agent; crontab -l; "
        f"find /etc/cron.d -type f {skip} -exec cat {{}} +; }} 2>/dev/null | grep -v '^[[:space:]]*#'"
    )
    wanted = f"grep -qF {shlex.quote(posixpath.basename(claim.token))}" if claim.token else "grep -q '[^[:space:]]'"
    return f"{tables} | {wanted} || printf '%s\\t\\n' {index}"


def _mismatch(claim: Claim, actual: str) -> Problem:
    what, how = _WHAT[claim.kind]
    if claim.kind == "process":
        name = posixpath.basename(claim.token.rstrip("/"))
        message = f"the workspace says {claim.token} is {what}, but after setup no process matches {name}; {how}"
    elif claim.kind == "cron":
        named = f" for {posixpath.basename(claim.token)}" if claim.token else ""
        message = (
            f"the workspace says there is {what}{named}, but after setup neither crontab -l -u agent, root's "
            f"crontab nor /etc/cron.d has one; {how}"
        )
    else:
        path, _, file_type = actual.partition(" ")
        inside = _folder_like(claim.token) and claim.kind != "directory"
        found = f"a {file_type}" if file_type else "gone"
        if inside and file_type == "directory":
            found += " with none inside"
        says = "is or holds" if inside else "is"
        message = f"the workspace says {claim.token} {says} {what}, but after setup {path} is {found}; {how}"
    return Problem("consistency", message)
