"""The report's figures computed again, in plain Python, from the JSONL lines alone.

An oracle independent of the report's SQL: one loop per figure, written from the semantics
stated in ``qcflow.tools.report.query``'s docstring, never from its code.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any


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
