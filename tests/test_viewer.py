"""`ise view`: the static trace viewer, checked in headless Chromium (Debian's package, set up by `make browser`).

Chromium's --dump-dom gives the page after its script ran; a small parser turns it into elements the tests query.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import pytest
from rich.console import Console
from trace_factory import make_trace, write_traces

from ise.errors import InputError
from ise.records import Message
from ise.viewer import run_viewer, script_json

HOSTILE = '</script><script>document.title="pwned"</script><img src=x onerror="document.title=1"> & \u2028 done'
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    children: list[Element | str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text for c in self.children)

    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())

    def find_all(self, tag: str | None = None, cls: str | None = None, **attrs: str) -> list[Element]:
        found = []
        for child in self.children:
            if isinstance(child, str):
                continue
            if (
                (tag is None or child.tag == tag)
                and (cls is None or cls in child.classes())
                and all(child.attrs.get(k.replace("_", "-")) == v for k, v in attrs.items())
            ):
                found.append(child)
            found += child.find_all(tag, cls, **attrs)
        return found

    def one(self, tag: str | None = None, cls: str | None = None, **attrs: str) -> Element:
        found = self.find_all(tag, cls, **attrs)
        assert len(found) == 1, (tag, cls, attrs, len(found))
        return found[0]


VOID_TAGS = frozenset({"meta", "link", "br", "img", "input", "hr", "source", "wbr", "area", "base", "col", "embed"})


class _TreeBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Element("#root", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(element)
        if tag not in VOID_TAGS:
            self.stack.append(element)

    def handle_endtag(self, tag: str) -> None:
        for depth in range(len(self.stack) - 1, 0, -1):
            if self.stack[depth].tag == tag:
                del self.stack[depth:]
                return

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(data)


def dump_dom(page: Path, fragment: str = "") -> Element:
    profile = tempfile.mkdtemp(prefix="ise-chromium-")
    try:
        done = subprocess.run(
            ["chromium", *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom", f"{page.as_uri()}#{fragment}"],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    builder = _TreeBuilder()
    builder.feed(done.stdout)
    return builder.root


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("run")
    evil = make_trace("evil", turns=1)
    evil.messages[1] = Message(role="user", content=HOSTILE)
    traces = [
        make_trace("known"),
        make_trace("failed-web", domain="web", passed=False, recovered=False),
        make_trace("simple-web", domain="web", complexity="simple", turns=1),
        make_trace("broken", infra_error=True, passed=False),
        evil,
    ]
    write_traces(run / "traces.jsonl", traces)
    return run_viewer(run, console=Console(record=True))


def test_viewer_shows_a_known_trace(page: Path) -> None:
    dom = dump_dom(page, "id=known")
    detail = dom.one("main", id="detail")
    assert detail.attrs["data-id"] == "known"
    assert detail.one(id="trace-id").text == "known passed"
    messages = detail.find_all(cls="msg")
    assert [m.attrs["data-index"] for m in messages] == [str(i) for i in range(12)]
    roles = [next(c for c in m.classes() if c.startswith("role-")) for m in messages]
    assert roles[:5] == ["role-system", "role-user", "role-assistant", "role-tool", "role-assistant"]

    failed = detail.one(cls="step", data_step="1")
    assert "status-failed" in failed.classes()
    assert failed.one(cls="exit-code").text == " exit 1"
    assert failed.one(cls="duration").text == " · 0.03 s"
    assert failed.one("pre", cls="command").text == "cat /workspace/app.ini"
    assert failed.one("pre", cls="stderr").text == "cat: /workspace/app.ini: No such file"
    assert failed.one(cls="failure-note").text == "✗ failure → recovered by step 2"

    fix = detail.one(cls="step", data_step="2")
    assert fix.one("li", cls="change").text == "created /workspace/app.ini (17 B, 0644)"
    assert fix.one(cls="recovers-note").text == "✓ recovers step 1"
    assert '"content": "[app]\\nport=8080\\n"' in fix.one("pre", cls="arguments").text
    assert detail.one(cls="step", data_step="0").one("pre", cls="stdout").text == "main.py\nrequirements.txt\n"

    dialogue = [c for c in detail.one(id="dialogue").children if isinstance(c, Element)]
    event = detail.one(cls="event", data_event="disk-noise")
    position = dialogue.index(event)
    assert dialogue[position + 1].attrs["data-index"] == "8", "the perturbation shows where it fired"
    assert event.text.startswith("⚡ perturbation disk-noise fired (condition, turn 2, after step 1): exit 0")

    checks = {row.attrs["data-check"]: row.attrs["data-passed"] for row in detail.find_all("tr", cls="check")}
    assert checks == {"config-exists": "true", "listed": "true"}
    assert detail.one("li", cls="recovery").text == "step 1 failed → recovered by step 2 (same_target)"
    answer = detail.one(cls="msg", data_index="4")
    assert answer.one("pre", cls="content").text == "The app has main.py and requirements.txt <b>&amp; no tests</b>."
    assert answer.find_all("b") == [], "message text is shown as text, never as markup"


def test_viewer_filters_the_list(page: Path) -> None:
    dom = dump_dom(page, "verdict=failed")
    items = dom.find_all("li", cls="trace-item")
    assert [i.attrs["data-id"] for i in items] == ["failed-web"]
    assert dom.one(id="count").text == "1 of 5 trajectories"
    assert dom.one(id="detail").attrs["data-id"] == "failed-web", "the first match opens"
    web_simple = dump_dom(page, "domain=web&complexity=simple")
    assert [i.attrs["data-id"] for i in web_simple.find_all("li", cls="trace-item")] == ["simple-web"]
    infra = dump_dom(page, "verdict=infra_error")
    assert [i.attrs["data-id"] for i in infra.find_all("li", cls="trace-item")] == ["broken"]
    assert "infra error: sandbox: container died" in infra.one(id="detail").text
    nothing = dump_dom(page, "q=no-such-trace")
    assert nothing.one(id="detail").text == "No trajectory matches the filters."


def test_viewer_shows_hostile_text_inertly(page: Path) -> None:
    dom = dump_dom(page, "id=evil")
    assert dom.one("title").text.startswith("ise traces")
    user = dom.one(id="detail").one(cls="msg", data_index="1")
    assert user.one("pre", cls="content").text == HOSTILE
    assert dom.one(id="detail").find_all("img") == []
    assert len(dom.find_all("script")) == 2


def test_viewer_screenshot(page: Path, tmp_path: Path) -> None:
    shot = tmp_path / "viewer.png"
    profile = tmp_path / "profile"
    subprocess.run(
        [
            "chromium",
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            "--window-size=1400,1800",
            f"--screenshot={shot}",
            f"{page.as_uri()}#id=known",
        ],
        capture_output=True,
        timeout=120,
        check=True,
    )
    data = shot.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(data) > 50_000, "a rendered page, not a blank one"


def test_script_json_cannot_close_the_script_element() -> None:
    text = script_json({"a": "</script><!-- & \u2028"})
    assert "<" not in text
    assert ">" not in text
    assert "&" not in text
    assert "\u2028" not in text


def test_view_needs_traces(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no traces to view"):
        run_viewer(tmp_path, console=Console(record=True))


def test_view_limit_embeds_the_first_trajectories_and_says_so(tmp_path: Path) -> None:
    write_traces(tmp_path / "traces.jsonl", [make_trace(f"t{i}") for i in range(5)])
    console = Console(record=True, width=300)
    page = run_viewer(tmp_path, console=console, limit=2).read_text()
    assert "Showing the first 2 of 5 trajectories" in page
    payload = page.split('<script type="application/json" id="traces">', 1)[1].split("</script>", 1)[0]
    assert [t["id"] for t in json.loads(payload)] == ["t0", "t1"]
    assert "the first 2 of 5 trajectories" in console.export_text()
    assert "Showing the first" not in run_viewer(tmp_path, console=console, limit=None).read_text()
