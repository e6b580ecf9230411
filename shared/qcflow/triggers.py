"""From a trigger's event to a use case: OSS (push) and timer (harvest); the HTTP trigger (SCA's
callback) faces the internet and has a module of its own, ``qcflow.callback_handler``.

No FC ``context`` here: a handler passes the services of its instance (or, for push, how to get
the ``Pusher`` of a bucket) and the invocation's deadline. Each use case is imported inside its
adapter: a function's cold start pays for its own use case only.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime, timedelta, timezone, tzinfo
from typing import TYPE_CHECKING, Any

from qcflow.errors import ForeignBucketError, PushIncomplete
from qcflow.ledger import Ledger
from qcflow.services import Services

if TYPE_CHECKING:
    from qcflow.push import Pusher, PushResult, Recording

log = logging.getLogger("qcflow.triggers")
push_log = logging.getLogger("qcflow.push")  # push's lines keep push's logger, wherever they are written


def parse_iso(value: Any, zone: tzinfo = timezone.utc) -> datetime | None:
    """An ISO 8601 time (``Z`` allowed; without an offset: in ``zone``), or None for nothing.

    The harvest timer's payload passes SCA's zone (``QCFLOW_SCA_TIME_ZONE``): the one rule of
    the CLI (``qcflow harvest --since``) and of the partitions, so a time means the same anywhere."""
    if value in (None, ""):
        return None
    moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=zone)


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
        zone = services.settings.zone
        since, until = parse_iso(payload.get("since"), zone), parse_iso(payload.get("until"), zone)
        check_backfill_range(since, until, datetime.now(timezone.utc))
    except (InvalidEventError, ValueError, TypeError, OverflowError) as exc:
        since = until = None
        # a bad payload must not stop the incremental harvest: run the plain pass, say why
        log.error("harvest: ignoring the timer payload: %s", exc, extra={"event": "harvest_bad_event"})
    report = await run_harvest(
        services.settings,
        services.sca,
        services.store,
        raw_store=services.raw_store,
        since=since,
        until=until,
        deadline=deadline,
        ledger=Ledger(services.store),
    )
    return _jsonable(report)


async def push_oss_event(
    raw_event: bytes | str | dict[str, Any],
    pusher_for: Callable[[str], Pusher],
    *,
    token: str,
    deadline: float,
) -> dict[str, Any]:
    """Push every record of an OSS trigger event; a summary of what happened.

    Malformed events, foreign buckets, keys that are not recordings and permanent failures
    end normally (logged, and recorded in the ledger where a recording was involved): FC
    retrying the same bytes cannot help. Retryable faults raise ``PushIncomplete``.
    """
    from qcflow.models.events import InvalidEventError, parse_oss_event
    from qcflow.push import PushResult

    try:
        event = parse_oss_event(raw_event)
    except InvalidEventError as exc:
        push_log.error("push: %s", exc, extra={"event": "push_bad_event", "reason": str(exc)})
        return {"records": 0, "error": str(exc)}
    results: list[PushResult] = []
    by_pusher: dict[int, tuple[Pusher, list[Recording]]] = {}
    for record in event.events:
        try:
            pusher = pusher_for(record.bucket)
        except ForeignBucketError as exc:
            push_log.error(
                "push: %s", exc, extra={"event": "push_bad_event", "bucket": record.bucket, "key": record.key}
            )
            results.append(
                PushResult(
                    "failed", f"oss://{record.bucket}/{record.key}", record.key, code="ForeignBucket", message=str(exc)
                )
            )
            continue
        resolved = await pusher.resolve(record.key)
        if isinstance(resolved, PushResult):
            results.append(resolved)
        else:
            by_pusher.setdefault(id(pusher), (pusher, []))[1].append(resolved)
    for pusher, recordings in by_pusher.values():
        results.extend(await pusher.push(recordings, token=token, deadline=deadline))
    summary: dict[str, Any] = {"records": len(event.events)}
    for result in results:
        summary[result.status] = summary.get(result.status, 0) + 1
    pending = [r for r in results if not r.settled]
    if pending:
        first = pending[0]
        raise PushIncomplete(
            f"{len(pending)} of {len(results)} recordings not settled yet (first: {first.key}: {first.status}, "
            f"{first.message}); FC's retry will come back",
            code=first.code,
        )
    return summary
