"""The report's review figures: how many tasks people reviewed, and what their reviews changed.

Over the finished tasks of the range (their current rows, ``latest``), with every row of each
task (``rows``: its ``results/`` row and its ``reviews/`` rows). Semantics, which the page
states and the test's own computation follows:

- a task is **reviewed** when any of its rows is a ``reviews/`` row or carries a
  ``review_time``; a **review** is one ``reviews/`` row (each review qcflow saw);
- **machine score**: the score of the task's ``results/`` row when that row carries no review
  time (it was written before anyone reviewed), else the ``old_score`` of the earliest entry of
  ``review_history`` (by its ``time``, then its place in the list) that has one; the **reviewed
  score** is the final score (the current row's). A reviewed task with both is *compared*;
- **agreement**: the current row's ``review_result`` (SCA: 1 correct, 2 partly correct, 0
  wrong, 3 awaiting review);
- **appeals**: the entries of the current row's ``review_history`` with a ``complain_result``
  (SCA: 1 every point of the appeal upheld, 0 at least one rejected); *in appeal now*: a
  current ``review_status`` of 3;
- **reviewer**: ``resolver`` (who did the review), else ``reviewer`` (who it was assigned to);
- **review lag**: SCA records no finish time, so the lag is measured from the upload
  (``upload_time``) to the task's earliest review time seen (analysis takes minutes; reviews
  take hours to days).
"""

from __future__ import annotations

import math
from typing import Any

NO_REVIEWER = "(no reviewer)"
AGREEMENT = {1: "correct", 2: "partly correct", 0: "wrong", 3: "awaiting review"}
COMPLAINT = {1: "upheld", 0: "rejected (at least one point)"}
#: A score change (reviewed − machine) falls in the first bin whose test holds.
CHANGE_BINS: tuple[str, ...] = (
    "≤ −20",
    "−20 < Δ ≤ −10",
    "−10 < Δ < 0",
    "unchanged",
    "0 < Δ < 10",
    "10 ≤ Δ < 20",
    "≥ 20",
)


def change_bin(change: float) -> int:
    """The index in ``CHANGE_BINS`` of a score change."""
    tests = (change <= -20, change <= -10, change < 0, change == 0, change < 10, change < 20)
    return next((index for index, holds in enumerate(tests) if holds), len(tests))


#: (label, lower bound in hours included or None, upper bound excluded or None).
LAG_BINS: tuple[tuple[str, float | None, float | None], ...] = (
    ("before upload", None, 0.0),
    ("under 1 h", 0.0, 1.0),
    ("1–6 h", 1.0, 6.0),
    ("6–24 h", 6.0, 24.0),
    ("1–3 days", 24.0, 72.0),
    ("3–7 days", 72.0, 168.0),
    ("7 days or more", 168.0, None),
)

_TASKS = """
CREATE TEMP TABLE review_tasks AS
WITH done AS (SELECT * FROM results WHERE state = 'finished'),
task AS (
  SELECT result_id,
         bool_or(source = 'reviews' OR has_review_time) AS reviewed,
         count(*) FILTER (WHERE source = 'reviews') AS reviews,
         min(review_at) AS first_review_at,
         bool_or(source = 'results' AND NOT has_review_time) AS has_machine_row,
         any_value(score) FILTER (WHERE source = 'results' AND NOT has_review_time) AS machine_row_score
  FROM rows WHERE result_id IN (SELECT result_id FROM done) GROUP BY result_id
),
history AS (
  SELECT result_id, i, TRY_CAST(json_extract_string(h, '$.time') AS DOUBLE) AS t,
         TRY_CAST(json_extract_string(h, '$.old_score') AS DOUBLE) AS old_score,
         TRY_CAST(json_extract_string(h, '$.complain_result') AS BIGINT) AS complain_result,
         json_extract(h, '$.complain_result') IS NOT NULL
           AND json_type(json_extract(h, '$.complain_result')) <> 'NULL' AS appealed
  FROM (SELECT result_id, unnest(json_extract(review_history, '$[*]')) AS h,
               generate_subscripts(json_extract(review_history, '$[*]'), 1) AS i
        FROM done WHERE review_history IS NOT NULL)
  WHERE json_type(h) = 'OBJECT'
),
first_old AS (
  SELECT result_id, arg_min(old_score, {'t': coalesce(t, 'infinity'::DOUBLE), 'i': i}) AS old_score
  FROM history WHERE old_score IS NOT NULL AND isfinite(old_score) GROUP BY result_id
),
appeals AS (
  SELECT result_id, list(complain_result ORDER BY i) AS outcomes FROM history WHERE appealed GROUP BY result_id
)
SELECT d.result_id, d.score AS final_score, d.review_result, d.review_status, d.upload_at,
       t.reviewed, t.reviews, t.first_review_at,
       CASE WHEN t.has_machine_row THEN t.machine_row_score ELSE f.old_score END AS machine_score,
       coalesce(a.outcomes, []) AS appeals
FROM done d JOIN task t USING (result_id)
LEFT JOIN first_old f USING (result_id) LEFT JOIN appeals a USING (result_id)
"""
_SUMMARY = """
SELECT count(*) AS finished, count(*) FILTER (WHERE reviewed) AS reviewed,
       coalesce(sum(reviews), 0) AS reviews,
       count(*) FILTER (WHERE reviewed AND machine_score IS NOT NULL AND final_score IS NOT NULL) AS compared,
       count(*) FILTER (WHERE len(appeals) > 0) AS appealed_tasks,
       coalesce(sum(len(appeals)), 0) AS appeals,
       count(*) FILTER (WHERE review_status = 3) AS in_appeal
FROM review_tasks"""
_CHANGES = """
SELECT final_score - machine_score AS change, machine_score, final_score FROM review_tasks
WHERE reviewed AND machine_score IS NOT NULL AND final_score IS NOT NULL"""
_AGREEMENT = """
SELECT review_result, count(*) AS tasks FROM review_tasks WHERE reviewed
GROUP BY review_result ORDER BY tasks DESC, review_result NULLS LAST"""
_APPEALS = """
SELECT outcome, count(*) AS appeals FROM (SELECT unnest(appeals) AS outcome FROM review_tasks)
GROUP BY outcome ORDER BY appeals DESC, outcome NULLS LAST"""
_REVIEWERS = f"""
SELECT coalesce(review_by, '{NO_REVIEWER}') AS reviewer, count(*) AS reviews, count(DISTINCT result_id) AS tasks
FROM rows WHERE source = 'reviews' AND result_id IN (SELECT result_id FROM review_tasks)
GROUP BY 1 ORDER BY reviews DESC, reviewer"""
_LAGS = """
SELECT epoch(first_review_at) - epoch(upload_at) AS seconds FROM review_tasks
WHERE reviewed AND first_review_at IS NOT NULL AND upload_at IS NOT NULL"""


def _rows(con: Any, sql: str) -> list[dict[str, Any]]:
    cursor = con.execute(sql)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=False)) for row in cursor.fetchall()]


def _binned(values: list[float], bins: tuple[tuple[str, float | None, float | None], ...]) -> list[dict[str, Any]]:
    counts = [0] * len(bins)
    for value in values:
        for index, (_, low, high) in enumerate(bins):
            if (low is None or value >= low) and (high is None or value < high):
                counts[index] += 1
                break
    return [{"bin": label, "count": count} for (label, _, _), count in zip(bins, counts, strict=True)]


def quantile(values: list[float], q: float) -> float | None:
    """Linear interpolation between the closest ranks (DuckDB's ``quantile_cont``)."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def review_figures(con: Any) -> dict[str, Any]:
    """Every review figure of the page, as plain values (``ReportData.reviews``)."""
    con.execute(_TASKS)
    summary: dict[str, Any] = {k: int(v or 0) for k, v in _rows(con, _SUMMARY)[0].items()}
    summary["share"] = summary["reviewed"] / summary["finished"] if summary["finished"] else 0.0
    changes = [float(row["change"]) for row in _rows(con, _CHANGES) if math.isfinite(row["change"])]
    scores = _rows(con, _CHANGES)
    summary["average_change"] = sum(changes) / len(changes) if changes else None
    summary["average_abs_change"] = sum(abs(c) for c in changes) / len(changes) if changes else None
    summary["machine_average"] = sum(r["machine_score"] for r in scores) / len(scores) if scores else None
    summary["reviewed_average"] = sum(r["final_score"] for r in scores) / len(scores) if scores else None
    summary["raised"] = sum(1 for c in changes if c > 0)
    summary["lowered"] = sum(1 for c in changes if c < 0)
    summary["unchanged"] = sum(1 for c in changes if c == 0)
    lags = [float(row["seconds"]) / 3600 for row in _rows(con, _LAGS)]
    return {
        "summary": summary,
        "changes": [
            {"bin": label, "count": sum(1 for c in changes if change_bin(c) == index)}
            for index, label in enumerate(CHANGE_BINS)
        ],
        "agreement": [
            {
                "review_result": row["review_result"],
                "label": _label(AGREEMENT, row["review_result"]),
                "tasks": row["tasks"],
            }
            for row in _rows(con, _AGREEMENT)
        ],
        "appeals": [
            {"complain_result": row["outcome"], "label": _label(COMPLAINT, row["outcome"]), "appeals": row["appeals"]}
            for row in _rows(con, _APPEALS)
        ],
        "reviewers": _rows(con, _REVIEWERS),
        "lag": {
            "tasks": len(lags),
            "median_hours": quantile(lags, 0.5),
            "p90_hours": quantile(lags, 0.9),
            "max_hours": max(lags) if lags else None,
            "bins": _binned(lags, LAG_BINS),
        },
    }


def _label(labels: dict[int, str], value: int | None) -> str:
    if value is None:
        return "(none)"
    return f"{value} · {labels.get(value, 'other')}"
