"""The report's figures computed again, in plain Python, from the JSONL lines alone.

An oracle independent of the report's SQL: one loop per figure, written from the semantics
stated in ``qcflow.tools.report.query``'s docstring, never from its code.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number == number and abs(number) != float("inf") else None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value != "" else (str(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None)


def state(line: dict[str, Any]) -> str:
    if line.get("state") in ("finished", "failed"):
        return line["state"]
    status = _int(line.get("status"))
    if status == 1:
        return "finished"
    if status is not None and status != 0:
        return "failed"
    return "unknown"


def counts(lines: list[dict[str, Any]]) -> dict[str, int]:
    by_state = Counter(state(line) for line in lines)
    return {"results": len(lines), "finished": by_state["finished"], "failed": by_state["failed"],
            "unknown": by_state["unknown"]}


def finished(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [line for line in lines if state(line) == "finished"]


def agents(lines: list[dict[str, Any]]) -> dict[str | None, dict[str, Any]]:
    """agent key (id, else name) → calls, scored, average score (finished results)."""
    groups: dict[str | None, list[float | None]] = defaultdict(list)
    for line in finished(lines):
        agent = line.get("agent") if isinstance(line.get("agent"), dict) else {}
        key = _text(agent.get("id")) or _text(agent.get("name"))
        groups[key].append(_number(line.get("score")))
    return {key: _summary(scores) for key, scores in groups.items()}


def skill_groups(lines: list[dict[str, Any]]) -> dict[str | None, dict[str, Any]]:
    groups: dict[str | None, list[float | None]] = defaultdict(list)
    for line in finished(lines):
        agent = line.get("agent") if isinstance(line.get("agent"), dict) else {}
        groups[_text(agent.get("skill_group"))].append(_number(line.get("score")))
    return {key: _summary(scores) for key, scores in groups.items()}


def _summary(scores: list[float | None]) -> dict[str, Any]:
    known = [s for s in scores if s is not None]
    return {"calls": len(scores), "scored": len(known), "average_score": sum(known) / len(known) if known else None}


def rules(lines: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """rule key (rid, else name) → calls hitting it (once per call) and share of finished calls."""
    done = finished(lines)
    hit: Counter[str] = Counter()
    for line in done:
        found = line.get("hit_result")
        if not isinstance(found, list):
            continue
        keys = {(_text(h.get("rid")) or _text(h.get("name"))) for h in found if isinstance(h, dict)}
        hit.update(k for k in keys if k)
    return {key: {"calls": n, "share": n / len(done)} for key, n in hit.items()}


def failures(lines: list[dict[str, Any]]) -> dict[str, int]:
    return dict(Counter(_text(line.get("error_message")) or "(no message)" for line in lines if state(line) == "failed"))


def review_status(lines: list[dict[str, Any]]) -> dict[int | None, int]:
    return dict(Counter(_int(line.get("review_status")) for line in finished(lines)))


def per_day(lines: list[dict[str, Any]], dt_of: dict[int, str]) -> dict[str, Counter[str]]:
    days: dict[str, Counter[str]] = defaultdict(Counter)
    for index, line in enumerate(lines):
        days[dt_of[index]][state(line)] += 1
    return days


def lowest(lines: list[dict[str, Any]], limit: int = 20) -> list[tuple[float, str | None]]:
    scored = [(s, line.get("contact_id")) for line in finished(lines) if (s := _number(line.get("score"))) is not None]
    return sorted(scored, key=lambda pair: pair[0])[:limit]


# ------------------------------------------------------------------------------ reviews
# Written from the definitions in qcflow.tools.report.latest and .reviews' docstrings.

_OFFSET = re.compile(r":\d\d(\.\d+)?[+-]\d\d(:?\d\d)?$")
_WALL = ("%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M")


def instant(text: Any, zone: ZoneInfo) -> datetime | None:
    """A review time as an instant: its own offset, else a wall time in SCA's zone."""
    if not isinstance(text, str):
        return None
    if _OFFSET.search(text):
        try:
            return datetime.fromisoformat(text)
        except ValueError:
            return None
    for fmt in _WALL:
        try:
            return datetime.strptime(text.rstrip("Z"), fmt).replace(tzinfo=zone)
        except ValueError:
            continue
    return None


def identity(line: dict[str, Any]) -> str:
    other = _text(line.get("call_id")) or _text(line.get("vid")) or ""
    return f"{line.get('task_id') or ''}|{other}"


def latest(results: list[dict[str, Any]], reviews: list[dict[str, Any]], zone: ZoneInfo) -> dict[str, dict[str, Any]]:
    """Each task's current row: its latest review time, then a reviews/ row, then the later harvest."""
    oldest = datetime.min.replace(tzinfo=zone)
    best: dict[str, tuple[Any, dict[str, Any]]] = {}
    for source, lines in (("results", results), ("reviews", reviews)):
        for line in lines:
            at = instant(line.get("review_time"), zone)
            key = (at is not None, at or oldest, source == "reviews", line.get("harvested_at") or "")
            known = best.get(identity(line))
            if known is None or key > known[0]:
                best[identity(line)] = (key, line)
    return {result: row for result, (_, row) in best.items()}


def review_figures(results: list[dict[str, Any]], reviews: list[dict[str, Any]], zone: ZoneInfo) -> dict[str, Any]:
    current = latest(results, reviews, zone)
    done = {result: row for result, row in current.items() if state(row) == "finished"}
    by_task: dict[str, list[tuple[str, dict[str, Any]]]] = defaultdict(list)
    for source, lines in (("results", results), ("reviews", reviews)):
        for line in lines:
            by_task[identity(line)].append((source, line))
    reviewed, changes, lags, appeals, agreement = 0, [], [], Counter(), Counter()
    reviewers: dict[str, list[str]] = defaultdict(list)
    appealed = in_appeal = 0
    for result, row in done.items():
        rows = by_task[result]
        is_reviewed = any(source == "reviews" or line.get("review_time") is not None for source, line in rows)
        machine_rows = [line for source, line in rows if source == "results" and line.get("review_time") is None]
        history = [h for h in (row.get("review_history") or []) if isinstance(h, dict)]
        if machine_rows:
            machine = _number(machine_rows[0].get("score"))
        else:
            olds = [(h.get("time") if isinstance(h.get("time"), (int, float)) else float("inf"), i, _number(h.get("old_score")))
                    for i, h in enumerate(history)]
            olds = [o for o in olds if o[2] is not None]
            machine = min(olds)[2] if olds else None
        outcomes = [h.get("complain_result") for h in history if h.get("complain_result") is not None]
        appeals.update(outcomes)
        appealed += bool(outcomes)
        in_appeal += _int(row.get("review_status")) == 3
        for source, line in rows:
            if source == "reviews":
                reviewers[_text(line.get("resolver")) or _text(line.get("reviewer")) or "(no reviewer)"].append(result)
        if not is_reviewed:
            continue
        reviewed += 1
        agreement[_int(row.get("review_result"))] += 1
        final = _number(row.get("score"))
        if machine is not None and final is not None:
            changes.append(final - machine)
        times = [t for _, line in rows if (t := instant(line.get("review_time"), zone)) is not None]
        upload = instant(row.get("upload_time"), zone)
        if times and upload is not None:
            lags.append((min(times) - upload).total_seconds() / 3600)
    return {
        "finished": len(done), "reviewed": reviewed, "reviews": sum(len(v) for v in reviewers.values()),
        "changes": changes, "lags": lags, "appeals": dict(appeals), "appealed_tasks": appealed,
        "in_appeal": in_appeal, "agreement": dict(agreement),
        "reviewers": {name: (len(tasks), len(set(tasks))) for name, tasks in reviewers.items()},
    }
