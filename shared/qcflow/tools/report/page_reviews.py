"""The page's review block: what people's reviews and agents' appeals did to the scores.

Kept apart from ``page`` (the page's frame and its machine-score charts) because it is one
block with its own counts and five charts, all drawn from ``ReportData.reviews``
(``qcflow.tools.report.reviews`` says what each figure means). The charts sit in
``section.review-chart`` elements, drawn by the page's one script like the others.
"""

from __future__ import annotations

from html import escape
from typing import Any

from qcflow.tools.report.page import _layout, _number, plot_text

TOP_REVIEWERS = 25
_CHANGE_COLORS = ("#d62828", "#e76f51", "#f4a261", "#90a4ae", "#8ab17d", "#2a9d8f", "#1b7a6e")


def _bars(labels: list[str], values: list[int], *, color: Any, axis: str, hover: str) -> dict[str, Any]:
    return {
        "data": [
            {
                "type": "bar",
                "x": [plot_text(label) for label in labels],
                "y": values,
                "text": [f"{v:,}" for v in values],
                "textposition": "auto",
                "marker": {"color": color},
                "hovertemplate": f"%{{x}}<br>%{{y:,}} {hover}<extra></extra>",
            }
        ],
        "layout": _layout(
            300,
            xaxis={"type": "category"},
            yaxis={"title": {"text": axis}, "rangemode": "tozero", "gridcolor": "#eceff1"},
        ),
    }


def change_figure(reviews: dict[str, Any]) -> dict[str, Any] | None:
    if not reviews["summary"]["compared"]:
        return None
    rows = reviews["changes"]
    return _bars(
        [row["bin"] for row in rows],
        [row["count"] for row in rows],
        color=list(_CHANGE_COLORS[: len(rows)]),
        axis="reviewed inspections",
        hover="inspections",
    )


def agreement_figure(reviews: dict[str, Any]) -> dict[str, Any] | None:
    rows = reviews["agreement"]
    if not rows:
        return None
    colors = {1: "#2a9d8f", 2: "#e9c46a", 0: "#e76f51", 3: "#90a4ae"}
    return {
        "data": [
            {
                "type": "pie",
                "hole": 0.55,
                "labels": [plot_text(row["label"]) for row in rows],
                "values": [row["tasks"] for row in rows],
                "sort": False,
                "textinfo": "label+percent",
                "marker": {"colors": [colors.get(row["review_result"], "#adb5bd") for row in rows]},
                "hovertemplate": "%{label}<br>%{value:,} inspections<extra></extra>",
            }
        ],
        "layout": _layout(300, showlegend=True),
    }


def appeals_figure(reviews: dict[str, Any]) -> dict[str, Any] | None:
    rows = reviews["appeals"]
    if not rows:
        return None
    colors = {1: "#2a9d8f", 0: "#e76f51"}
    return _bars(
        [row["label"] for row in rows],
        [row["appeals"] for row in rows],
        color=[colors.get(row["complain_result"], "#adb5bd") for row in rows],
        axis="appeals",
        hover="appeals",
    )


def reviewers_figure(reviews: dict[str, Any]) -> dict[str, Any] | None:
    rows = reviews["reviewers"][:TOP_REVIEWERS]
    if not rows:
        return None
    return {
        "data": [
            {
                "type": "bar",
                "orientation": "h",
                "y": [plot_text(row["reviewer"]) for row in rows],
                "x": [row["reviews"] for row in rows],
                "text": [f"{row['reviews']:,} · {row['tasks']:,} calls" for row in rows],
                "textposition": "auto",
                "marker": {"color": "#264653"},
                "hovertemplate": "%{y}<br>%{x:,} reviews<extra></extra>",
            }
        ],
        "layout": _layout(
            90 + 30 * len(rows),
            xaxis={"title": {"text": "reviews"}, "rangemode": "tozero", "gridcolor": "#eceff1"},
            yaxis={"autorange": "reversed", "automargin": True, "type": "category"},
        ),
    }


def lag_figure(reviews: dict[str, Any]) -> dict[str, Any] | None:
    lag = reviews["lag"]
    if not lag["tasks"]:
        return None
    rows = [row for row in lag["bins"] if row["count"] or row["bin"] != "before upload"]
    return _bars(
        [row["bin"] for row in rows],
        [row["count"] for row in rows],
        color="#e9c46a",
        axis="reviewed inspections",
        hover="inspections",
    )


def _chart(chart_id: str, title: str, figure: dict[str, Any] | None, empty: str, caption: str = "") -> str:
    body = (
        f'<p class="empty">{escape(empty)}</p>'
        if figure is None
        else f'<div class="plot" id="plot-{chart_id}" role="img" aria-label="{escape(title)}"></div>'
    )
    note = f'<p class="caption">{escape(caption)}</p>' if caption and figure is not None else ""
    return (
        f'<section class="review-chart" id="{chart_id}" data-chart="{chart_id}" '
        f'data-empty="{str(figure is None).lower()}"><h2>{escape(title)}</h2>{note}{body}</section>'
    )


def _hours(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:,.1f} h" if abs(value) < 48 else f"{value / 24:,.1f} days"


def review_block(reviews: dict[str, Any]) -> tuple[str, dict[str, dict[str, Any]]]:
    """The block's HTML and its figures (by chart id)."""
    summary = reviews.get("summary") or {}
    if not summary.get("reviewed"):
        finished = int(summary.get("finished") or 0)
        return (
            '<section class="reviews" id="reviews" data-empty="true"><h2>Reviews and appeals</h2>'
            f'<p class="empty">No review yet: none of the {finished:,} finished inspections in this range '
            "has been reviewed (no reviews/ row, no review time). Scores are the machine's.</p></section>",
            {},
        )
    cells = [
        ("reviewed", f"{summary['share']:.1%}", f"reviewed ({summary['reviewed']:,} of {summary['finished']:,})"),
        ("reviews", f"{summary['reviews']:,}", "reviews"),
        ("average_change", _signed(summary.get("average_change")), "average score change"),
        ("appeals", f"{summary['appeals']:,}", f"appeals ({summary['appealed_tasks']:,} calls)"),
        ("in_appeal", f"{summary['in_appeal']:,}", "in appeal now"),
        ("lag", _hours(reviews["lag"]["median_hours"]), "median review lag"),
    ]
    counts = "".join(
        f'<div class="count"><dd data-review="{name}">{escape(value)}</dd><dt>{escape(label)}</dt></div>'
        for name, value, label in cells
    )
    figures = {
        "review_change": change_figure(reviews),
        "agreement": agreement_figure(reviews),
        "appeals": appeals_figure(reviews),
        "reviewers": reviewers_figure(reviews),
        "review_lag": lag_figure(reviews),
    }
    lag = reviews["lag"]
    machine, reviewed = summary.get("machine_average"), summary.get("reviewed_average")
    charts = [
        _chart(
            "review_change",
            "How far reviews moved scores (reviewed − machine)",
            figures["review_change"],
            "No reviewed inspection has both a machine and a reviewed score.",
            f"{summary['compared']:,} reviewed inspections with both scores: machine average {_number(machine)} → "
            f"reviewed {_number(reviewed)}; raised {summary['raised']:,}, lowered {summary['lowered']:,}, "
            f"unchanged {summary['unchanged']:,}; average |change| {_number(summary.get('average_abs_change'))}.",
        ),
        _chart(
            "agreement",
            "Agreement with the machine (ReviewResult)",
            figures["agreement"],
            "No reviewed inspection.",
            "Of reviewed inspections, their latest review.",
        ),
        _chart(
            "appeals",
            "Appeals and their outcomes",
            figures["appeals"],
            "No appeal in this range.",
            f"{summary['appeals']:,} appeals on {summary['appealed_tasks']:,} calls (ComplainResult in the review "
            f"history); {summary['in_appeal']:,} in appeal now.",
        ),
        _chart(
            "reviewers",
            "Reviews per reviewer",
            figures["reviewers"],
            "No review row in this range.",
            f"{min(TOP_REVIEWERS, len(reviews['reviewers']))} of {len(reviews['reviewers'])} reviewers "
            "(Resolver, else Reviewer); each review qcflow saw counts once.",
        ),
        _chart(
            "review_lag",
            "Review lag: upload → first review",
            figures["review_lag"],
            "No reviewed inspection with an upload time.",
            f"SCA records no finish time, so the lag runs from the upload (analysis takes minutes) to the first "
            f"review seen: median {_hours(lag['median_hours'])}, 90th percentile {_hours(lag['p90_hours'])}, "
            f"longest {_hours(lag['max_hours'])} over {lag['tasks']:,} inspections.",
        ),
    ]
    html = (
        '<section class="reviews" id="reviews" data-empty="false"><h2>Reviews and appeals</h2>'
        '<p class="caption">Every figure on this page uses each inspection\'s latest row: after a review, '
        f'its reviewed score.</p><dl class="counts review-counts">{counts}</dl>'
        f'<div class="grid">{"".join(charts)}</div></section>'
    )
    return html, {key: value for key, value in figures.items() if value is not None}


def _signed(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:+,.1f}"
