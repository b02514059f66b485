"""The LLM prompts, kept as templates in the top-level prompts/ folder so they can be read and tuned as text.

One jinja environment for every stage: StrictUndefined turns a missing value into an error instead of a silent
blank in a prompt, and trimmed blocks keep `{% if %}` lines from leaving empty lines behind."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import jinja2

PROMPTS_DIR = Path(__file__).resolve().parent.parent / "prompts"


@cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(PROMPTS_DIR),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )


def render(name: str, **values: Any) -> str:
    """prompts/`name` filled in with `values`, stripped of surrounding blank lines."""
    return _environment().get_template(name).render(**values).strip()
