"""From a trigger's event to a use case, for the timer (harvest) and HTTP (SCA callback) functions.

No FC ``context`` here: a handler passes the services of its instance and the invocation's
deadline. (The OSS trigger's counterpart is ``qcflow.push.push_oss_event``.)
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict
from datetime import datetime, timedelta, timezone
from typing import Any

from qcflow.errors import QcflowError, RetryableError
from qcflow.ledger import Ledger
from qcflow.services import Services

log = logging.getLogger("qcflow.triggers")


def parse_iso(value: Any) -> datetime | None:
    """An ISO 8601 time (``Z`` allowed; without a zone: UTC), or None for nothing."""
    if value in (None, ""):
        return None
    moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


#: How far back a backfill may reach: SCA's retention is not published, and a range of decades
#: would only build millions of empty windows. A year covers any realistic catch-up.
MAX_BACKFILL_DAYS = 366


def check_backfill_range(since: datetime | None, until: datetime | None, now: datetime) -> None:
    """Refuse a backfill range that cannot be meant (``ValueError`` naming the problem)."""
    if until is not None and since is None:
        raise ValueError("a backfill needs since (until alone is not a range)")
    if since is None:
        return
    if since < now - timedelta(days=MAX_BACKFILL_DAYS):
        raise ValueError(f"since {since.isoformat()} is more than {MAX_BACKFILL_DAYS} days back")
    if since > now or (until is not None and until <= since):
        raise ValueError("the range is empty or in the future")


def _jsonable(report: Any) -> dict[str, Any]:
    return json.loads(json.dumps(asdict(report), default=str))


async def harvest_timer(
    raw_event: bytes | str | dict[str, Any], services: Services, *, deadline: float
) -> dict[str, Any]:
    """One harvest pass (the timer's ``payload`` may hold ``{"since": …, "until": …}`` for a backfill)."""
    from qcflow.harvest import run_harvest
    from qcflow.models.events import InvalidEventError, parse_timer_event

    since = until = None
    try:
        payload = parse_timer_event(raw_event).payload_json()
        since, until = parse_iso(payload.get("since")), parse_iso(payload.get("until"))
        check_backfill_range(since, until, datetime.now(timezone.utc))
    except (InvalidEventError, ValueError, TypeError, OverflowError) as exc:
        since = until = None
        # a bad payload must not stop the incremental harvest: run the plain pass, say why
        log.error("harvest: ignoring the timer payload: %s", exc, extra={"event": "harvest_bad_event"})
    report = await run_harvest(
        services.settings,
        services.sca,
        services.store,
        since=since,
        until=until,
        deadline=deadline,
        ledger=Ledger(services.store),
    )
    return _jsonable(report)


def _http_answer(status: int, body: dict[str, Any]) -> dict[str, Any]:
    return {"statusCode": status, "headers": {"content-type": "application/json"}, "body": json.dumps(body)}


async def sca_callback(
    raw_event: bytes | str | dict[str, Any], services: Services, *, deadline: float, now_ms: int | None = None
) -> dict[str, Any]:
    """SCA's task-complete callback: verified, then *only a hint* — the task is fetched from
    GetResult and written through harvest's exactly-once writer. Anyone can forge the
    keyless signature; a forged hint costs one GetResult call and writes nothing new."""
    from qcflow.callback import InvalidCallbackError, parse_callback, verify_callback
    from qcflow.harvest import harvest_task_ids
    from qcflow.models.events import InvalidEventError, parse_http_event

    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    try:
        event = parse_http_event(raw_event)
        hint, signature = parse_callback(event.query, event.body, event.header("content-type"))
        verify_callback(hint, signature, now_ms=now_ms, max_age_seconds=services.settings.callback_max_age_seconds)
    except (InvalidEventError, InvalidCallbackError) as exc:
        reason = getattr(exc, "reason", "malformed")
        log.warning("callback refused: %s", exc, extra={"event": "callback_refused", "reason": reason})
        return _http_answer(400, {"error": reason})
    try:
        report = await harvest_task_ids(
            services.settings,
            services.sca,
            services.store,
            [hint.task_id],
            deadline=deadline,
            ledger=Ledger(services.store),
        )
    except RetryableError as exc:
        # SCA may call again; the timer's pass is the backstop either way
        log.warning(
            "callback for %s not harvested yet: %s",
            hint.task_id,
            exc,
            extra={"event": "callback_deferred", "task_id": hint.task_id, "code": exc.code},
        )
        return _http_answer(503, {"error": "retry later"})
    except QcflowError as exc:
        log.error(
            "callback for %s failed: %s",
            hint.task_id,
            exc,
            extra={"event": "callback_failed", "task_id": hint.task_id, "code": exc.code},
        )
        return _http_answer(500, {"error": exc.code or "failed"})
    log.info(
        "callback for %s: %d written",
        hint.task_id,
        report.written,
        extra={"event": "callback_harvested", "task_id": hint.task_id, "written": report.written},
    )
    return _http_answer(200, {"task_id": hint.task_id, "written": report.written})
