"""`ise view RUN_DIR`: a static, self-contained HTML trace viewer (inline CSS and JS, traces embedded as JSON).

The page lists every trajectory with filters (verdict, domain, complexity, text) and shows one at a time: the
dialogue, each tool call with what really ran (arguments, exit code, duration, stdout/stderr, workspace diff),
perturbation events where they fired, failure->recovery spans, mid-episode probes and the final checks. Its
state lives in the URL hash (#id=...&verdict=...), so a view can be linked to, and tested headlessly.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console

from ise.errors import InputError
from ise.outputs import check_page_output, write_text_atomic
from ise.records import Trace
from ise.trace_file import load_traces

CLIP_CHARS = 20_000
"""Longest text shown per field (stdout, stderr, results, messages); the rest is noted, not embedded."""


def trace_payload(trace: Trace) -> dict[str, Any]:
    """The trace as the page needs it: the record itself, long texts clipped, and a few derived fields."""
    data = _clipped(trace.model_dump(mode="json"))
    data["verdict"] = trace.verdict
    data["tokens"] = sum(u.prompt_tokens + u.completion_tokens for u in trace.usage)
    return dict(data)


def _clipped(value: Any) -> Any:
    if isinstance(value, str) and len(value) > CLIP_CHARS:
        return value[:CLIP_CHARS] + f"\n… [{len(value) - CLIP_CHARS} more characters not shown]"
    if isinstance(value, list):
        return [_clipped(item) for item in value]
    if isinstance(value, dict):
        return {key: _clipped(item) for key, item in value.items()}
    return value


def script_json(data: Any) -> str:
    """JSON that is safe inside <script type="application/json">: no '<', '>' or '&' can end the element or
    start markup, and the line separators JavaScript treats as newlines are escaped too."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    for raw, escaped in (
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("&", "\\u0026"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        text = text.replace(raw, escaped)
    return text


def render_viewer(traces: list[Trace], title: str, *, total: int | None = None) -> str:
    """The page for `traces`; `total` (when larger) says how many the file held, shown in a banner."""
    from jinja2 import Environment, PackageLoader, StrictUndefined

    env = Environment(loader=PackageLoader("ise", "templates"), undefined=StrictUndefined, autoescape=True)
    payload = script_json([trace_payload(trace) for trace in traces])
    return env.get_template("viewer.html.jinja").render(
        title=title, payload=payload, shown=len(traces), total=max(total or 0, len(traces))
    )


def traces_file(run_dir: Path) -> Path:
    path = run_dir if run_dir.exists() and not run_dir.is_dir() else run_dir / "traces.jsonl"
    if not path.exists():
        raise InputError(f"no traces to view: {path} does not exist")
    return path


DEFAULT_LIMIT = 2000
"""Trajectories embedded by default: a browser handles a page of this size (tens of MB) comfortably."""


def run_viewer(
    run_dir: Path, output: Path | None = None, *, console: Console, limit: int | None = DEFAULT_LIMIT
) -> Path:
    """Write the viewer (default RUN_DIR/viewer.html, atomically) for the first `limit` trajectories (None: all);
    every line is still read and checked."""
    path = traces_file(run_dir)
    output = output or path.with_name("viewer.html")
    check_page_output(output, inputs=[path])
    traces = load_traces(path, allow_empty=True)
    if not traces:
        raise InputError(f"no traces to view: {path} holds none")
    shown = traces if limit is None else traces[:limit]
    write_text_atomic(output, render_viewer(shown, title=str(path), total=len(traces)))
    note = f"the first {len(shown)} of {len(traces)}" if len(shown) < len(traces) else f"{len(traces)}"
    console.print(f"viewer: {output} ({note} trajectories)")
    return output
