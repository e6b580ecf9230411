"""One self-contained HTML page: plotly.js, styles, figures and data inlined; nothing fetched.

Why Plotly: it is well kept, draws every chart the page needs as SVG, and ships its whole
library as one script (``plotly.offline.get_plotlyjs``) that can be inlined, so the page
opens offline from a mail attachment or a shared drive. A Content-Security-Policy
(``default-src 'none'``) makes the browser refuse any fetch the page might still attempt, and
runs only the page's own scripts: each inline ``<script>`` the page renders is allowed by its
SHA-256 (computed over the finished page, whatever scripts it holds), so a script that found
its way in through the data would not run even if escaping failed; ``base-uri`` and
``form-action`` ``'none'`` keep a planted ``<base>`` or ``<form>`` from sending the reader
elsewhere.

Why the figures are built here and not by ``plotly.io.to_html``: every string on the page
comes from the data (agent names, rule names, error messages), so the page embeds JSON with
``<`` ``>`` ``&`` escaped (no ``</script>`` can close a block early) and HTML-escaped text,
and the page's own script draws the charts and marks ``data-drawn`` on each one when done.
The aggregates are embedded as ``<script type="application/json" id="qcflow-report-data">``
so that a test — or a curious analyst — can read the figures behind the pictures.

Why ~500 lines: the page is one HTML document (template, CSS and the chart specs); splitting
the template from the specs that fill it would scatter one page over several files.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from html import escape
from typing import Any

from qcflow.tools.report.query import LOWEST, TOP_FAILURES, TOP_RULES, ReportData

TOP_AGENTS = 25
COLORS = {"finished": "#2a9d8f", "failed": "#e76f51", "running": "#e9c46a", "stuck": "#8d99ae", "unknown": "#adb5bd"}
FONT = (
    '-apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, "Noto Sans CJK SC", "Noto Sans SC", '
    '"PingFang SC", "Microsoft YaHei", sans-serif'
)
#: No fetch of any kind; the page's own inline scripts (``{scripts}``: their hashes) and inline
#: styles (plotly.js adds <style> at run time); no <base>, no form submission.
CSP = (
    "default-src 'none'; script-src {scripts}; style-src 'unsafe-inline'; img-src data:; font-src data:; "
    "base-uri 'none'; form-action 'none'"
)
_CSP_SLOT = "@@qcflow-csp@@"
#: An executable script block: no ``type``, or a JavaScript one (JSON data blocks never run).
_SCRIPT = re.compile(r"<script(?P<attrs>[^>]*)>(?P<body>.*?)</script>", re.DOTALL | re.IGNORECASE)
_TYPE = re.compile(r"""\btype\s*=\s*["']?([^"'\s>]*)""", re.IGNORECASE)
_JS_TYPES = {"", "text/javascript", "application/javascript", "module"}
_CONFIG = {"displaylogo": False, "displayModeBar": False, "responsive": True}
#: Score → colour stops (0 red … 100 teal); colours are computed here, not by plotly.js, so that
#: text drawn inside a bar picks its contrast colour from a real colour.
_SCORE_STOPS = ((0.0, (214, 40, 40)), (60.0, (244, 162, 97)), (80.0, (233, 196, 106)), (100.0, (42, 157, 143)))


def script_json(value: Any) -> str:
    """JSON safe inside ``<script>``: ``<``, ``>`` and ``&`` as ``\\u`` escapes."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=str)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _layout(height: int, **extra: Any) -> dict[str, Any]:
    layout: dict[str, Any] = {
        "height": height,
        "margin": {"l": 10, "r": 20, "t": 10, "b": 10},
        "font": {"family": FONT, "size": 12},
        "paper_bgcolor": "#ffffff",
        "plot_bgcolor": "#ffffff",
        "hovermode": "closest",
        "showlegend": False,
        "xaxis": {"gridcolor": "#eceff1", "zeroline": False, "automargin": True},
        "yaxis": {"gridcolor": "#eceff1", "zeroline": False, "automargin": True},
    }
    for key, value in extra.items():
        if key.startswith(("xaxis", "yaxis")) and isinstance(value, dict):
            layout[key] = {"gridcolor": "#eceff1", "zeroline": False, "automargin": True, **value}
        else:
            layout[key] = value
    return layout


def score_color(score: float | None) -> str:
    if score is None:
        return "#cfd8dc"
    value = max(0.0, min(100.0, float(score)))
    for (low, a), (high, b) in zip(_SCORE_STOPS, _SCORE_STOPS[1:], strict=False):
        if value <= high:
            t = (value - low) / (high - low)
            return "#" + "".join(f"{round(x + (y - x) * t):02x}" for x, y in zip(a, b, strict=False))
    return "#2a9d8f"


def plot_text(value: Any) -> str:
    """Text for a Plotly label. Plotly reads ``<b>``, ``<a href>``… in labels as markup; data
    (an agent's name, an error message) must show as written, never as a link, so ``&``,
    ``<`` and ``>`` become entities (which Plotly turns back into the characters)."""
    return str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _unique(labels: list[str], keys: list[Any]) -> list[str]:
    """Category labels must be unique, or Plotly merges two agents (or reasons) into one bar."""
    seen: dict[str, int] = {}
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
    return [
        plot_text(f"{label} · {key}" if seen[label] > 1 else label) for label, key in zip(labels, keys, strict=False)
    ]


def _short(text: str, width: int = 60) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def per_day_figure(data: ReportData) -> dict[str, Any] | None:
    if not data.per_day:
        return None
    days = [plot_text(row["day"]) for row in data.per_day]
    traces = []
    for state in ("finished", "failed", "running", "stuck", "unknown"):
        values = [row[state] for row in data.per_day]
        if state in ("finished", "failed", "running") or any(values):
            traces.append(
                {
                    "type": "bar",
                    "name": state,
                    "x": days,
                    "y": values,
                    "marker": {"color": COLORS[state]},
                    "hovertemplate": f"%{{x}}<br>{state}: %{{y:,}}<extra></extra>",
                }
            )
    return {
        "data": traces,
        "layout": _layout(
            320,
            barmode="stack",
            showlegend=True,
            legend={"orientation": "h", "y": 1.12, "x": 0},
            xaxis={"type": "category", "automargin": True, "title": {"text": "upload day (SCA time zone)"}},
            yaxis={"title": {"text": "inspections"}, "gridcolor": "#eceff1", "rangemode": "tozero"},
        ),
    }


def score_figure(data: ReportData) -> dict[str, Any] | None:
    if not data.score_summary.get("scored"):
        return None
    bins = data.score_bins
    lows = [row["low"] if row["low"] is not None else -10.0 for row in bins]
    return {
        "data": [
            {
                "type": "bar",
                "x": [row["bin"] for row in bins],
                "y": [row["calls"] for row in bins],
                "marker": {"color": [score_color(low + 5) for low in lows]},
                "hovertemplate": "score %{x}<br>%{y:,} calls<extra></extra>",
            }
        ],
        "layout": _layout(
            300,
            xaxis={"type": "category", "title": {"text": "score"}},
            yaxis={"title": {"text": "finished inspections"}, "gridcolor": "#eceff1"},
        ),
    }


def _by_group_figure(rows: list[dict[str, Any]], label_key: str, key_key: str) -> dict[str, Any] | None:
    rows = rows[:TOP_AGENTS]
    if not rows:
        return None
    labels = _unique([str(row[label_key]) for row in rows], [row.get(key_key) for row in rows])
    averages = [row["average_score"] for row in rows]
    height = 90 + 30 * len(rows)
    return {
        "data": [
            {
                "type": "bar",
                "orientation": "h",
                "y": labels,
                "x": averages,
                "xaxis": "x",
                "yaxis": "y",
                "text": [f"{a:.1f}" if a is not None else "no score" for a in averages],
                "textposition": "auto",
                "marker": {"color": [score_color(a) for a in averages]},
                "hovertemplate": "%{y}<br>average score %{x:.1f}<extra></extra>",
            },
            {
                "type": "bar",
                "orientation": "h",
                "y": labels,
                "x": [row["calls"] for row in rows],
                "xaxis": "x2",
                "yaxis": "y",
                "text": [f"{row['calls']:,}" for row in rows],
                "textposition": "auto",
                "marker": {"color": "#90a4ae"},
                "hovertemplate": "%{y}<br>%{x:,} finished inspections<extra></extra>",
            },
        ],
        "layout": _layout(
            height,
            xaxis={"domain": [0, 0.62], "range": [0, 100], "title": {"text": "average score"}, "gridcolor": "#eceff1"},
            xaxis2={
                "domain": [0.68, 1],
                "title": {"text": "volume (finished)"},
                "gridcolor": "#eceff1",
                "rangemode": "tozero",
            },
            yaxis={"autorange": "reversed", "automargin": True, "type": "category"},
        ),
    }


def rules_figure(data: ReportData) -> dict[str, Any] | None:
    rows = data.rules[:TOP_RULES]
    if not rows:
        return None
    labels = _unique([str(row["rule"]) for row in rows], [row["rule_key"] for row in rows])
    return {
        "data": [
            {
                "type": "bar",
                "orientation": "h",
                "y": labels,
                "x": [row["share"] * 100 for row in rows],
                "text": [f"{row['share']:.1%} · {row['calls']:,} calls" for row in rows],
                "textposition": "auto",
                "customdata": [[plot_text(row.get("rule_id") or ""), plot_text(row.get("type") or "")] for row in rows],
                "marker": {"color": "#e76f51"},
                "hovertemplate": "%{y} (rule %{customdata[0]}, %{customdata[1]})<br>"
                "%{x:.1f}% of finished calls<extra></extra>",
            }
        ],
        "layout": _layout(
            90 + 30 * len(rows),
            xaxis={"title": {"text": "share of finished calls (%)"}, "rangemode": "tozero", "gridcolor": "#eceff1"},
            yaxis={"autorange": "reversed", "automargin": True, "type": "category"},
        ),
    }


def review_figure(data: ReportData) -> dict[str, Any] | None:
    rows = data.review_status
    if not rows:
        return None
    return {
        "data": [
            {
                "type": "pie",
                "hole": 0.55,
                "labels": [plot_text(row["label"]) for row in rows],
                "values": [row["calls"] for row in rows],
                "sort": False,
                "textinfo": "label+percent",
                "marker": {"colors": ["#90a4ae", "#2a9d8f", "#e9c46a", "#e76f51", "#8d99ae", "#adb5bd"][: len(rows)]},
                "hovertemplate": "%{label}<br>%{value:,} calls<extra></extra>",
            }
        ],
        "layout": _layout(300, showlegend=True, margin={"l": 10, "r": 10, "t": 10, "b": 10}),
    }


def failures_figure(data: ReportData) -> dict[str, Any] | None:
    rows = data.failures[:TOP_FAILURES]
    if not rows:
        return None
    labels = _unique([_short(str(row["reason"])) for row in rows], list(range(1, len(rows) + 1)))
    return {
        "data": [
            {
                "type": "bar",
                "orientation": "h",
                "y": labels,
                "x": [row["calls"] for row in rows],
                "customdata": [plot_text(row["reason"]) for row in rows],
                "text": [f"{row['calls']:,}" for row in rows],
                "textposition": "auto",
                "marker": {"color": COLORS["failed"]},
                "hovertemplate": "%{customdata}<br>%{x:,} failed<extra></extra>",
            }
        ],
        "layout": _layout(
            90 + 30 * len(rows),
            xaxis={"title": {"text": "failed inspections"}, "rangemode": "tozero", "gridcolor": "#eceff1"},
            yaxis={"autorange": "reversed", "automargin": True, "type": "category"},
        ),
    }


def _number(value: float | int | None, digits: int = 1) -> str:
    if value is None:
        return "–"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.{digits}f}"
    return f"{int(value):,}"


def _section(
    chart_id: str, title: str, figure: dict[str, Any] | None, empty_text: str, caption: str = ""
) -> tuple[str, str, dict[str, Any] | None]:
    empty = figure is None
    body = (
        f'<p class="empty">{escape(empty_text)}</p>'
        if empty
        else f'<div class="plot" id="plot-{chart_id}" role="img" aria-label="{escape(title)}"></div>'
    )
    note = f'<p class="caption">{escape(caption)}</p>' if caption and not empty else ""
    html = (
        f'<section class="chart" id="{chart_id}" data-chart="{chart_id}" data-empty="{str(empty).lower()}">'
        f"<h2>{escape(title)}</h2>{note}{body}</section>"
    )
    return chart_id, html, figure


def _lowest_table(data: ReportData) -> str:
    if not data.lowest:
        return (
            '<section class="table" id="lowest" data-empty="true"><h2>Lowest-scoring calls</h2>'
            '<p class="empty">No scored inspection in this range.</p></section>'
        )
    rows = []
    for row in data.lowest:
        rules = ", ".join(row["rules"]) or "–"
        rows.append(
            f'<tr><td class="mono">{escape(row["contact_id"] or "–")}</td><td>{escape(str(row["agent"]))}</td>'
            f'<td>{escape(row["skill_group"] or "–")}</td><td class="num">{_number(row["score"])}</td>'
            f'<td>{escape(rules)}</td><td class="mono">{escape(row["upload_time"] or row["day"] or "–")}</td>'
            f'<td class="mono small">{escape(row["task_id"] or "–")}</td></tr>'
        )
    return (
        '<section class="table" id="lowest" data-empty="false">'
        f'<h2>Lowest-scoring calls</h2><p class="caption">The {len(data.lowest)} lowest of '
        f"{_number(data.score_summary.get('scored'))} scored inspections (at most {LOWEST}).</p>"
        "<table><thead><tr><th>ContactId</th><th>agent</th><th>skill group</th><th>score</th><th>rules hit</th>"
        "<th>uploaded</th><th>task</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table></section>"
    )


def _header(data: ReportData) -> str:
    counts = data.counts
    shown = [
        ("results", "results"),
        ("finished", "finished"),
        ("failed", "failed"),
        ("running", "still running"),
        ("stuck", "stuck"),
        ("unknown", "unknown state"),
        ("files", "files read"),
    ]
    cells = "".join(
        f'<div class="count {name}"><dd data-count="{name}">{counts[name]:,}</dd><dt>{escape(label)}</dt></div>'
        for name, label in shown
    )
    attributes = " ".join(f'data-{name}="{counts[name]}"' for name, _ in shown)
    since, until = data.range.get("since"), data.range.get("until")
    span = data.range.get("label") or "all results"
    return (
        f'<header id="summary" {attributes} data-since="{escape(since or "")}" data-until="{escape(until or "")}">'
        f'<h1>Quality inspection results</h1><p class="range">Range: <strong>{escape(span)}</strong> '
        f'(upload days in SCA\'s time zone)</p><dl class="counts">{cells}</dl>'
        f'<p class="made">Made <time datetime="{escape(data.generated_at)}">{escape(data.generated_at)}</time> '
        f"by qcflow from <code>{escape(data.store)}</code></p></header>"
    )


def render(data: ReportData, plotly_js: str | None = None) -> str:
    """The whole page as text."""
    if plotly_js is None:
        from plotly.offline import get_plotlyjs

        plotly_js = get_plotlyjs()
    summary = data.score_summary
    agents_total, groups_total = len(data.agents), len(data.skill_groups)
    sections = [
        _section("per_day", "Inspections per day", per_day_figure(data), "No inspection in this range."),
        _section(
            "scores",
            "Score distribution",
            score_figure(data),
            "No scored inspection in this range.",
            f"{_number(summary.get('scored'))} scored inspections: average {_number(summary.get('average'))}, "
            f"median {_number(summary.get('median'))}.",
        ),
        _section(
            "agents",
            "Average score and volume by agent, worst first",
            _by_group_figure(data.agents, "agent", "agent_key"),
            "No finished inspection with an agent in this range.",
            f"{min(TOP_AGENTS, agents_total)} of {agents_total} agents shown." if agents_total > TOP_AGENTS else "",
        ),
        _section(
            "skill_groups",
            "Average score and volume by skill group, worst first",
            _by_group_figure(data.skill_groups, "skill_group", "skill_group"),
            "No finished inspection in this range.",
            f"{min(TOP_AGENTS, groups_total)} of {groups_total} skill groups shown."
            if groups_total > TOP_AGENTS
            else "",
        ),
        _section(
            "rules",
            "Rules hit most, with their share of calls",
            rules_figure(data),
            "No rule was hit in this range.",
            f"{min(TOP_RULES, len(data.rules))} of {len(data.rules)} rules; share of "
            f"{data.counts['finished']:,} finished calls.",
        ),
        _section(
            "review",
            "Review status",
            review_figure(data),
            "No finished inspection in this range.",
            "Of finished inspections.",
        ),
        _section(
            "failures",
            "Failures by reason",
            failures_figure(data),
            "No failed inspection in this range.",
            f"{data.counts['failed']:,} failed inspections; {min(TOP_FAILURES, len(data.failures))} of "
            f"{len(data.failures)} reasons shown.",
        ),
    ]
    figures = {chart_id: figure for chart_id, _, figure in sections if figure is not None}
    from qcflow.tools.report.page_reviews import review_block  # imports this module: import it here

    reviews_html, review_figures = review_block(data.reviews)
    figures.update(review_figures)
    banner = ""
    if data.empty:
        banner = (
            f'<p class="empty-range" id="empty-range">No results in this range '
            f"({escape(data.range.get('label') or 'all results')}): "
            "nothing was harvested for these days yet, or the range is wrong.</p>"
        )
    notes = ""
    if data.notes:
        notes = (
            '<section class="notes" id="notes"><h2>Missing or odd fields</h2><ul>'
            + "".join(f"<li>{escape(note)}</li>" for note in data.notes)
            + "</ul></section>"
        )
    body = "".join(html for _, html, _ in sections)
    library = plotly_js.replace(
        "</script", "<\\/script"
    )  # plotly.js holds none today; a page must not break if it does
    page = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{_CSP_SLOT}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>qcflow report · {escape(data.range.get("label") or "all results")}</title>
<style>{_STYLE}</style>
<script>{library}</script>
</head>
<body>
{_header(data)}
<main>
{banner}{notes}
<div class="grid">{body}</div>
{reviews_html}
{_lowest_table(data)}
</main>
<footer>qcflow report · data as of {escape(data.generated_at)} ·
figures embedded below as JSON (id qcflow-report-data)</footer>
<script type="application/json" id="qcflow-report-data">{script_json(data.to_dict())}</script>
<script type="application/json" id="qcflow-report-figures">{script_json(figures)}</script>
<script>{_DRAW}</script>
</body>
</html>
"""
    return with_csp(page)


def script_hashes(page: str) -> list[str]:
    """``'sha256-…'`` of every executable inline script of ``page``, in order, without repeats.

    The browser hashes a script's text exactly as it appears between its tags (UTF-8), which is
    what the page holds: every text from the data is escaped, so no ``</script>`` ends one early.
    """
    found: list[str] = []
    for match in _SCRIPT.finditer(page):
        kind = _TYPE.search(match.group("attrs"))
        if kind is not None and kind.group(1).lower() not in _JS_TYPES:
            continue  # a data block (application/json): never executed, nothing to allow
        digest = base64.b64encode(hashlib.sha256(match.group("body").encode("utf-8")).digest()).decode("ascii")
        source = f"'sha256-{digest}'"
        if source not in found:
            found.append(source)
    return found


def with_csp(page: str) -> str:
    """``page`` with its Content-Security-Policy filled in: the hashes of the scripts it holds."""
    scripts = " ".join(script_hashes(page)) or "'none'"
    return page.replace(_CSP_SLOT, CSP.format(scripts=scripts), 1)


_STYLE = (
    """
*{box-sizing:border-box}body{margin:0;font-family:"""
    + FONT.replace('"', "'")
    + """;color:#1f2933;background:#f5f7f8}
header{background:#12343b;color:#fff;padding:20px 28px}h1{margin:0 0 6px;font-size:22px;font-weight:600}
header .range,header .made{margin:4px 0;color:#cfe3e6;font-size:13px}header code{color:#fff}
.counts{display:flex;flex-wrap:wrap;gap:10px;margin:14px 0 6px}
.count{background:rgba(255,255,255,.08);border-radius:6px;
padding:8px 14px;min-width:104px}.count dd{margin:0;font-size:22px;font-weight:600}
.count dt{font-size:12px;color:#cfe3e6}
.count.finished dd{color:#7fd1c6}.count.failed dd{color:#ffb4a2}.count.running dd{color:#ffe08a}
main{padding:18px 28px}.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(560px,1fr));gap:16px}
section{background:#fff;border-radius:8px;padding:14px 16px;box-shadow:0 1px 2px rgba(0,0,0,.06)}
h2{font-size:15px;margin:0 0 6px;font-weight:600}.caption{margin:0 0 6px;color:#52606d;font-size:12px}
.empty{color:#52606d;font-style:italic;padding:24px 0;margin:0}.empty-range{background:#fff4e5;border:1px solid #f4a261;
border-radius:8px;padding:14px 16px;font-size:15px;margin:0 0 16px}.notes{margin:0 0 16px;border-left:4px solid #e9c46a}
.notes ul{margin:4px 0 0;padding-left:20px;font-size:13px}.table{margin-top:16px}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{text-align:left;padding:6px 8px;border-bottom:1px solid #eceff1;
vertical-align:top}th{color:#52606d;font-weight:600}td.num{text-align:right;font-weight:600}.mono{font-family:ui-monospace,
SFMono-Regular,Menlo,Consolas,monospace;font-size:12px}.small{color:#7b8794}
footer{padding:10px 28px 24px;color:#7b8794;font-size:12px}
.reviews{margin-top:16px}.reviews .count{background:#f1f5f6}.reviews .count dt{color:#52606d}
.review-chart{box-shadow:none;border:1px solid #eceff1}
"""
)

_DRAW = (
    """
(function () {
  var figures = JSON.parse(document.getElementById('qcflow-report-figures').textContent);
  var config = """
    + json.dumps(_CONFIG)
    + """;
  var pending = Object.keys(figures).map(function (id) {
    var element = document.getElementById('plot-' + id);
    var figure = figures[id];
    return Plotly.newPlot(element, figure.data, figure.layout, config).then(function () {
      element.closest('section').setAttribute('data-drawn', 'true');
    });
  });
  Promise.all(pending).then(function () {
    document.body.setAttribute('data-rendered', 'true');
  }, function (error) {
    document.body.setAttribute('data-rendered', 'error');
    console.error('qcflow report: a chart could not be drawn', error);
  });
})();
"""
)
