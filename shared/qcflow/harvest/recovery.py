"""Redo the parts whose writer died between its commit record and its upload.

Such a writer leaves a commit record naming a part that does not exist, and its pending
marker (``output.py``). A timer pass, before its windows, finds the markers older than the
grace (``recovery_grace_seconds``), fetches their results again by taskId and writes the part
at the very key the record names (``output.write_recovered``): a slow writer and a recovery
both writing it leave the same set of results, never one more. A marker whose record lost
its race, or whose part exists (the writer died just before its cleanup), is only deleted.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime
from zoneinfo import ZoneInfo

from qcflow.config import HttpSettings
from qcflow.harvest import records as rec
from qcflow.harvest.feed import Budget, Item, ResultSource
from qcflow.harvest.output import (
    RESULTS_ROOM,
    Intent,
    Room,
    WrittenFile,
    intent_results,
    pending_intents,
    write_recovered,
)
from qcflow.harvest.reader import DeadlineReached
from qcflow.pii import Redactor
from qcflow.store import ObjectStore

log = logging.getLogger("qcflow.harvest")

#: Least age of a pending write before another run redoes it (see ``recovery_grace_seconds``).
RECOVERY_GRACE_SECONDS = 300.0


def recovery_grace_seconds(http: HttpSettings) -> float:
    """How old a pending write must be before another run may redo it.

    It does not depend on how long functions run: a writer checks, just before its part
    becomes visible, that its commit record is younger than this, and otherwise aborts the
    upload and leaves the part to recovery. So the grace only has to cover one upload's
    final commit with its retries (a few HTTP timeouts), with room for clock skew between
    instances; a crashed writer's results are missing from ``results/`` for about that long
    (plus the time to the next timer run)."""
    return max(RECOVERY_GRACE_SECONDS, 4.0 * http.timeout_seconds * http.max_attempts)


async def recover(
    store: ObjectStore,
    source: ResultSource,
    *,
    grace: float,
    zone: ZoneInfo,
    now: Callable[[], datetime],
    budget: Budget,
    room: Room = RESULTS_ROOM,
    identity: Callable[[Item], str | None] = rec.result_id,
    redactor: Redactor | None = None,
) -> list[WrittenFile]:
    """Redo every stale pending write of ``room``; the parts written, in order. Stops at the
    read deadline (``budget.stopped``): the markers left stay for the next run.

    ``identity`` names what a fetched item is (a result; for the reviews' room, a review: a task
    reviewed again since then is a *different* review, so its old one is logged missing, and
    the new one comes in its own window). The lines are redacted as the lost writer's were
    (``redactor``; without one, the default mask)."""
    redactor = redactor if redactor is not None else Redactor()
    intents = await asyncio.to_thread(pending_intents, store, room)
    wall = now().timestamp()
    recovered: list[WrittenFile] = []
    for intent in intents:
        if wall - intent.created_at < grace:
            continue  # its writer may still be at work
        results = await asyncio.to_thread(intent_results, store, intent)
        if results is None:
            await asyncio.to_thread(store.delete, intent.key)
            continue
        try:
            lines = await _fetch_again(
                source, intent, results, zone=zone, now=now, budget=budget, identity=identity, redactor=redactor
            )
        except DeadlineReached:
            budget.stopped = True
            break  # the marker stays: the next run recovers it
        written = await asyncio.to_thread(write_recovered, store, intent, lines, gzip=intent.part.endswith(".gz"))
        recovered.append(written)
        log.warning(
            "harvest: recovered part %s (%d records) left by run %s",
            written.key,
            written.records,
            intent.run,
            extra={"event": "harvest_recovered", "key": written.key},
        )
    return recovered


async def _fetch_again(
    source: ResultSource,
    intent: Intent,
    results: list[str],
    *,
    zone: ZoneInfo,
    now: Callable[[], datetime],
    budget: Budget,
    identity: Callable[[Item], str | None],
    redactor: Redactor,
) -> list[tuple[str, bytes]]:
    """The lines of ``results`` as GetResult gives them now; the ones it no longer gives are
    logged (the part is written without them)."""
    harvested_at = rec.utc_now_text(now())
    wanted = set(results)
    lines: list[tuple[str, bytes]] = []
    async for item in source.tasks(sorted({rec.task_of(r) for r in results}), deadline=budget.read_deadline):
        result = identity(item)
        if result in wanted:
            wanted.discard(result)
            lines.append((result, rec.encode_line(redactor.record(rec.to_record(item, zone, harvested_at)))))
    if wanted:
        log.error(
            "harvest recovery of %s: %d committed task(s) could not be fetched again and are missing from the part: %s",
            intent.part,
            len(wanted),
            sorted(wanted)[:20],
            extra={"event": "harvest_recovery_incomplete"},
        )
    return lines
