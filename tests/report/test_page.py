"""The report of a harvested demo run, opened in headless Chromium: offline, drawn, and true.

What a supervisor would see is checked in the browser itself: no console error, no request
but the file itself, every chart an SVG with marks, the header's counts and the plotted
values equal to what the test computes from the JSONL on its own (``expected.py``).
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from qcflow.harvest.state import remember_unfinished
from qcflow.tools.report import DayRange, make_report
from qcflow.store import LocalStore

from tests.report import expected
from tests.report.conftest import Demo, PartWriter, part_keys, read_jsonl, record

ZONE = ZoneInfo("Asia/Shanghai")
CHARTS = ("per_day", "scores", "agents", "skill_groups", "rules", "review", "failures")

#: Per chart section: drawn flag, the SVG's size, and how many marks (bars, slices) have area.
CHART_STATE = """
[...document.querySelectorAll('section.chart')].map(section => {
  const svg = section.querySelector('svg.main-svg');
  const box = svg ? svg.getBoundingClientRect() : {width: 0, height: 0};
  const marks = [...section.querySelectorAll('g.point path, g.slice path')].filter(p => {
    const b = p.getBBox(); return b.width > 0 && b.height > 0; }).length;
  return {id: section.dataset.chart, empty: section.dataset.empty, drawn: section.dataset.drawn || null,
          width: box.width, height: box.height, marks: marks,
          text: section.textContent};
})
"""
HEADER = "Object.fromEntries([...document.querySelectorAll('[data-count]')].map(e => [e.dataset.count, e.textContent]))"


def header_counts(page: Any) -> dict[str, int]:
    return {name: int(text.replace(",", "")) for name, text in page.js(HEADER).items()}


def plotted(page: Any, chart: str, trace: int = 0) -> dict[str, Any]:
    """What Plotly actually drew for one trace (its ``x``/``y`` as the chart holds them)."""
    return page.js(f"(() => {{ const t = document.getElementById('plot-{chart}').data[{trace}]; "
                   "return {x: Array.from(t.x || []), y: Array.from(t.y || []), labels: Array.from(t.labels || []), "
                   "values: Array.from(t.values || [])}; })()")


def test_the_demo_report_opens_offline_draws_every_chart_and_tells_the_truth(demo: Demo, render: Any, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    summary = make_report(demo.store, out, zone=ZONE)
    lines = demo.records
    page = render(out)

    assert page.errors() == [], "no console error, no uncaught exception"
    assert page.requests == [page.url], "no network request: only the file itself"

    counts = expected.counts(lines)
    header = header_counts(page)
    assert header["results"] == len(lines) == summary.counts["results"] == 30
    assert (header["finished"], header["failed"]) == (counts["finished"], counts["failed"])
    assert header["files"] == len(part_keys(demo.store))
    assert header["running"] == header["stuck"] == header["unknown"] == 0
    assert page.js("document.getElementById('summary').dataset.results") == str(len(lines))

    charts = {c["id"]: c for c in page.js(CHART_STATE)}
    assert set(charts) == set(CHARTS)
    for chart in charts.values():
        assert chart["empty"] == "false", f"the demo has data for {chart['id']}"
        assert chart["drawn"] == "true", chart["id"]
        assert chart["width"] > 100 and chart["height"] > 100, chart["id"]
        assert chart["marks"] > 0, f"{chart['id']}: an SVG with no bar or slice drawn"

    data = page.data
    # per agent: the figures behind the page, and the bars Plotly drew
    agents = expected.agents(lines)
    assert {row["agent_key"]: (row["calls"], row["scored"]) for row in data["agents"]} == \
        {key: (v["calls"], v["scored"]) for key, v in agents.items()}
    for row in data["agents"]:
        assert row["average_score"] == pytest.approx(agents[row["agent_key"]]["average_score"])
    averages = [row["average_score"] for row in data["agents"]]
    assert averages == sorted(averages), "worst first"
    bars = plotted(page, "agents")
    assert bars["x"] == pytest.approx(averages)
    assert bars["y"] == [row["agent"] for row in data["agents"]]
    assert plotted(page, "agents", 1)["x"] == [agents[row["agent_key"]]["calls"] for row in data["agents"]]

    # per skill group
    groups = expected.skill_groups(lines)
    assert {row["skill_group"]: row["calls"] for row in data["skill_groups"]} == {k: v["calls"] for k, v in groups.items()}

    # per rule: calls hitting it and its share of finished calls, as computed and as drawn
    rules = expected.rules(lines)
    assert {row["rule_key"]: row["calls"] for row in data["rules"]} == {k: v["calls"] for k, v in rules.items()}
    for row in data["rules"]:
        assert row["share"] == pytest.approx(rules[row["rule_key"]]["share"])
    drawn = plotted(page, "rules")
    assert drawn["x"] == pytest.approx([row["share"] * 100 for row in data["rules"][:len(drawn["x"])]])
    assert [row["calls"] for row in data["rules"]] == sorted((row["calls"] for row in data["rules"]), reverse=True)

    # failures, review status, per day, lowest scores
    assert {row["reason"]: row["calls"] for row in data["failures"]} == expected.failures(lines)
    review = plotted(page, "review")
    assert sum(review["values"]) == counts["finished"]
    assert {row["review_status"]: row["calls"] for row in data["review_status"]} == expected.review_status(lines)
    per_day = _per_day(demo.store)
    assert {row["day"]: (row["finished"], row["failed"]) for row in data["per_day"]} == \
        {day: (c["finished"], c["failed"]) for day, c in per_day.items()}
    assert sum(plotted(page, "per_day", 0)["y"]) == counts["finished"]
    assert [row["score"] for row in data["lowest"]] == [score for score, _ in expected.lowest(lines)]
    rows = page.js("[...document.querySelectorAll('#lowest tbody tr')].map(r => [...r.cells].map(c => c.textContent))")
    assert [r[0] for r in rows] == [row["contact_id"] for row in data["lowest"]]
    by_contact = {line["contact_id"]: line for line in lines}
    for cells in rows:  # ContactId, agent, skill group, score, rules hit
        line = by_contact[cells[0]]
        assert float(cells[3]) == line["score"]
        assert cells[1] == line["agent"]["name"]
        hit_names = list(dict.fromkeys(h["name"] for h in line["hit_result"] or []))
        assert cells[4] == (", ".join(hit_names) or "–")


def _per_day(store: LocalStore) -> dict[str, Counter[str]]:
    """(day → states) from each part's ``dt=`` and its lines."""
    days: dict[str, Counter[str]] = {}
    for info in store.list("results/"):
        day = re.match(r"results/dt=([^/]+)/", info.key).group(1)  # type: ignore[union-attr]
        for line in read_jsonl(store, info.key):
            days.setdefault(day, Counter())[expected.state(line)] += 1
    return days


def test_an_empty_range_gives_a_clear_page_not_a_crash(demo: Demo, render: Any, tmp_path: Path) -> None:
    out = tmp_path / "empty.html"
    summary = make_report(demo.store, out, days=DayRange.parse("2001-01-01", "2001-01-31"), zone=ZONE)
    assert summary.counts["results"] == 0
    page = render(out)
    assert page.errors() == [] and page.requests == [page.url]
    assert page.js("document.body.dataset.rendered") == "true"
    banner = page.js("document.getElementById('empty-range').textContent")
    assert "No results in this range (2001-01-01 to 2001-01-31)" in banner
    counts = header_counts(page)
    reviews = [key for key in part_keys(demo.store) if key.startswith("reviews/")]
    assert counts.pop("files") == len(reviews), "reviews of any range may be saved later: their parts are all read"
    assert set(counts.values()) == {0}
    for chart in page.js(CHART_STATE):
        assert chart["empty"] == "true" and chart["marks"] == 0
        assert "No " in chart["text"], chart
    assert page.js("document.querySelector('#lowest .empty').textContent") == "No scored inspection in this range."


def test_missing_and_odd_fields_give_a_clear_page(parts: PartWriter, render: Any, tmp_path: Path) -> None:
    parts.part("2026-11-20", "10", [
        record("a", agent={"id": "7", "name": "王芳", "skill_group": "售后"}, score=80,
               rules=[("1101", "开场白检测"), ("1101", "开场白检测")]),  # listed twice: still one call
        record("b", agent="not an object", score="abc", rules="not a list"),  # odd types
        record("c", agent={"name": "李强"}, score=None, rules=[("1101", "开场白检测"), "junk", {"rid": "", "name": ""}]),
        {"task_id": "d", "status": 6},  # no state, no agent, no message: failed by its status
        {"task_id": "e"},  # nothing but an id: unknown
        {},
        record("f", state="failed", error="audio file download failed"),
        {"task_id": "g", "state": "finished", "score": 55, "review_status": "x"},
    ])
    remember_unfinished(parts.store, "RUN-1|job-r1", first_seen=1.0, upload_time=1_763_604_000.0, owner="t")  # 2025-11-20
    out = tmp_path / "odd.html"
    summary = make_report(parts.store, out, zone=ZONE)
    page = render(out)
    assert page.errors() == [] and page.requests == [page.url]
    assert summary.counts == {"results": 8, "finished": 4, "failed": 2, "unknown": 2, "running": 1, "stuck": 0, "files": 1}
    assert header_counts(page)["unknown"] == 2
    data = page.data
    assert {row["agent_key"]: (row["calls"], row["scored"]) for row in data["agents"]} == \
        {"7": (1, 1), None: (2, 1), "李强": (1, 0)}
    assert [row["agent"] for row in data["agents"]][:2] == ["(no agent)", "王芳"], "worst first: 55 < 80, no score last"
    assert {row["rule_key"]: row["calls"] for row in data["rules"]} == {"1101": 2}
    assert {row["reason"]: row["calls"] for row in data["failures"]} == \
        {"(no message)": 1, "audio file download failed": 1}
    assert {row["label"]: row["calls"] for row in data["review_status"]} == \
        {"0 · not reviewed": 3, "not a number": 1}
    notes = page.js("[...document.querySelectorAll('#notes li')].map(li => li.textContent)")
    assert "2 finished result(s) without a score: left out of averages and the score chart" in notes
    assert "2 finished result(s) without an agent: counted as (no agent)" in notes
    assert any("neither a known state nor a status" in note for note in notes)
    running_days = {row["day"]: row["running"] for row in data["per_day"] if row["running"]}
    assert running_days == {"2025-11-20": 1}
    for chart in page.js(CHART_STATE):
        assert chart["empty"] == "false" and chart["drawn"] == "true" and chart["marks"] > 0, chart["id"]


def test_names_from_the_data_cannot_break_out_of_the_page(parts: PartWriter, render: Any, tmp_path: Path) -> None:
    """Agent, rule and error texts are data: shown as written, never run, never markup (no
    script, no image, no link in a chart label — Plotly reads <a href> in labels)."""
    evil = ("</script><script>console.error('pwned')</script><img src=x onerror=console.error('img')>"
            "<a href='http://example.com/'>link</a> & <b>bold</b>")
    parts.part("2026-11-20", "10", [
        record("a", agent={"id": evil, "name": evil, "skill_group": evil}, score=10, rules=[(evil, evil)]),
        record("b", state="failed", error=evil),
    ])
    out = tmp_path / "evil.html"
    make_report(parts.store, out, zone=ZONE)
    page = render(out)
    assert page.errors() == [] and page.requests == [page.url]
    assert page.data["agents"][0]["agent"] == evil, "the text is kept, as text"
    assert page.js("document.querySelectorAll('img, a, svg b').length") == 0
    assert page.js("document.querySelector('#lowest tbody td:nth-child(2)').textContent") == evil
    assert page.js("[...document.querySelectorAll('#plot-agents .ytick text')].map(t => t.textContent)") == [evil]
    assert page.js("[...document.querySelectorAll('#plot-rules .ytick text')].map(t => t.textContent)") == [evil]


def test_the_page_has_no_way_to_fetch_anything(demo: Demo, tmp_path: Path) -> None:
    """Self-contained by construction: no src/href to load, and a CSP that forbids fetches."""
    out = tmp_path / "report.html"
    make_report(demo.store, out, zone=ZONE)
    html = out.read_text(encoding="utf-8")
    assert re.search(r"<(script|link|img|iframe)[^>]+(src|href)=", html) is None
    assert "default-src 'none'" in html and "connect-src" not in html
    assert html.count("* plotly.js v") == 1, "plotly.js is inlined, once"


# ------------------------------------------------------------------ Content-Security-Policy

#: Markup the page must neutralise should escaping ever fail: an inline script (with an inline
#: handler), a <base> that would re-root relative URLs, a form posting elsewhere.
PLANTED = (
    "<script>window.__planted = true; document.body.setAttribute('data-planted', 'yes')</script>"
    "<img id='planted-img' src='data:,not-an-image' onerror='window.__handler = true'>"
    "<base href='http://example.com/'>"
    "<form id='planted-form' action='http://example.com/steal' method='post'><input name='q' value='x'></form>"
)


def _csp(html: str) -> str:
    match = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]+)">', html)
    assert match, "the page has a CSP meta tag"
    return match.group(1)


def _plant(html: str, out: Path, *, keep_csp: bool = True) -> Path:
    """The rendered page with ``PLANTED`` put in after rendering, as if escaping had failed."""
    if not keep_csp:
        html = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", html)
    out.write_text(html.replace("<main>", "<main>" + PLANTED, 1), encoding="utf-8")
    return out


def test_the_csp_allows_the_pages_own_scripts_by_hash_only(demo: Demo, tmp_path: Path) -> None:
    import base64
    import hashlib

    from qcflow.tools.report.page import script_hashes, with_csp

    out = tmp_path / "report.html"
    make_report(demo.store, out, zone=ZONE)
    html = out.read_text(encoding="utf-8")
    csp = _csp(html)
    directives = {d.split()[0]: d.split()[1:] for d in (p.strip() for p in csp.split(";")) if d}
    assert directives["default-src"] == ["'none'"]
    assert directives["base-uri"] == ["'none'"] and directives["form-action"] == ["'none'"]
    assert "'unsafe-inline'" not in directives["script-src"] and "'unsafe-eval'" not in directives["script-src"]
    # one hash per executable inline block (plotly.js, the drawing code), none for the JSON data blocks
    bodies = re.findall(r"<script>(.*?)</script>", html, re.DOTALL)
    assert len(bodies) == 2
    hashes = [f"'sha256-{base64.b64encode(hashlib.sha256(b.encode()).digest()).decode()}'" for b in bodies]
    assert directives["script-src"] == hashes == script_hashes(html)
    # generic: whatever inline scripts a page holds (a later section's own) are hashed alike
    head = '<head><meta http-equiv="Content-Security-Policy" content="@@qcflow-csp@@"></head>'
    scripts = "<script>a()</script><script type='module'>b()</script><script type=application/json>{}</script>"
    page = with_csp(head + scripts)
    assert page.count("'sha256-") == 2 and "script-src 'sha256-" in page


def test_an_injected_inline_script_does_not_run_and_the_charts_still_draw(
    demo: Demo, render: Any, tmp_path: Path
) -> None:
    out = tmp_path / "report.html"
    make_report(demo.store, out, zone=ZONE)
    html = out.read_text(encoding="utf-8")

    # control: without the CSP the planted script runs (so the check below is not vacuous)
    bare = render(_plant(html, tmp_path / "bare.html", keep_csp=False))
    assert bare.js("[window.__planted, window.__handler]") == [True, True]

    page = render(_plant(html, tmp_path / "planted.html"))
    assert page.js("window.__planted === undefined && window.__handler === undefined") is True
    assert page.js("document.body.dataset.planted") is None
    assert page.js("document.body.dataset.rendered") == "true", "the page's own scripts ran"
    for chart in page.js(CHART_STATE):
        assert chart["empty"] == "false" and chart["drawn"] == "true" and chart["marks"] > 0, chart["id"]
    refused = [text for kind, text in page.console if kind == "error"]
    assert refused and all("Content Security Policy" in text for text in refused), refused
    assert any("inline script" in text or "inline event handler" in text for text in refused), refused
    # the planted <base> did not take: the page's address is still its own file
    assert page.js("document.baseURI") == page.url
    # nor can a planted form send the reader (or the page's data) elsewhere
    page.js("document.getElementById('planted-form').submit()")
    page.page.wait_for_timeout(300)
    assert page.requests == [page.url], page.requests
    assert page.page.url == page.url
