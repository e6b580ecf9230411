"""``qcflow status``: the pipeline at a glance, read from the store alone (no API call).

Push: the ledger (``state/push/``) — submitted, failed *pushes* with the top reasons, in flight
(a live claim), stalled (a claim that expired without an outcome: its FC retries ran out;
``qcflow push --key`` settles it), taskIds still unknown. Harvest: the checkpoint and its
lag, remembered unfinished and stuck results, results committed in the last ``days``, and
the last run's manifest. Files: the most visible parts of a closed hour (compaction keeps
it at one or two). Inspections: the harvested results of the last ``days`` by SCA's
outcome, finished and failed (a task SCA could not inspect) — apart from failed pushes, which
never became a task. Reviews: the review feed's checkpoint and its lag, and the reviews
committed in the last ``days`` (days of review time). Reading the ledger costs one listing page per 1,000 objects plus a
read of each claim and outcome: on a very large ledger it takes a while, with progress.
"""

from __future__ import annotations

import gzip
import json
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any

from qcflow import journal, layout
from qcflow.ledger import Ledger
from qcflow.store import ObjectStore


def push_status(store: ObjectStore, *, now: float, progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    counts: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    recordings = 0
    for entry in Ledger(store).entries():
        recordings += 1
        if progress is not None and recordings % 100 == 0:
            progress(recordings)
        outcome = entry.outcome
        latest = entry.latest_claim
        if entry.submitted is not None:
            counts["submitted"] += 1
            if entry.task_id is None:
                counts["task_id_unknown"] += 1
        elif outcome is not None and outcome.state == "failed":
            counts["failed"] += 1
            reasons[outcome.code or "?"] += 1
        elif latest is None:
            counts["released"] += 1  # every claim released unsent by an operator's run: never pushed
        elif latest.expires_at > now:
            counts["in_flight"] += 1
        else:
            counts["stalled"] += 1
    return {
        "recordings": recordings,
        "submitted": counts["submitted"],
        "failed": counts["failed"],
        "failed_top_reasons": dict(reasons.most_common(5)),
        "in_flight": counts["in_flight"],
        "stalled": counts["stalled"],
        "released": counts["released"],
        "task_id_unknown": counts["task_id_unknown"],
    }


def harvest_status(store: ObjectStore, *, now: datetime, zone: tzinfo, days: int = 7) -> dict[str, Any]:
    """Harvest state; "the last ``days``" are days in ``zone``, the zone the partitions are named in
    (SCA's, ``QCFLOW_SCA_TIME_ZONE``): counted in UTC, a day's results would go missing for the hours
    the two dates differ."""
    from qcflow.harvest.state import read_checkpoint, stuck_results, unfinished_results

    checkpoint = read_checkpoint(store)
    harvested = 0
    for day in range(days):
        date = (now.astimezone(zone) - timedelta(days=day)).strftime("%Y-%m-%d")
        for info in store.list(f"{layout.HARVEST_COMMITS}dt={date}/"):
            record = journal.read(store, info.key)
            harvested += len((record or {}).get("results") or [])
    # manifests are dt=<day>/<run id>.json and a run id starts with its start time, so the
    # listing's last key is the latest run: one read, not one per run ever made
    last_key = None
    for info in store.list(layout.HARVEST_MANIFESTS):
        last_key = info.key
    last_run = journal.read(store, last_key) if last_key else None
    return {
        "checkpoint": checkpoint.through.isoformat() if checkpoint else None,
        "lag_seconds": round((now - checkpoint.through).total_seconds()) if checkpoint else None,
        f"harvested_last_{days}_days": harvested,
        "unfinished": sum(1 for _ in unfinished_results(store)),
        "stuck": sum(1 for _ in stuck_results(store)),
        "last_run": None
        if last_run is None
        else {
            k: last_run.get(k)
            for k in ("run_id", "mode", "started_at", "finished_at", "records", "stopped_by_deadline", "lease_busy")
        },
    }


def inspection_status(store: ObjectStore, *, now: datetime, zone: tzinfo, days: int = 7) -> dict[str, Any]:
    """The harvested results of the last ``days`` (partition days in ``zone``) by state: what SCA
    made of the pushed recordings. Reads the JSONL parts of those days (one GET per part)."""
    states: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    for day in range(days):
        date = (now.astimezone(zone) - timedelta(days=day)).strftime("%Y-%m-%d")
        for info in store.list(f"{layout.RESULTS}dt={date}/"):
            if not info.key.endswith((".jsonl", ".jsonl.gz")):
                continue
            body = store.get(info.key).body
            if info.key.endswith(".gz"):
                body = gzip.decompress(body)
            for line in body.splitlines():
                if not line.strip():
                    continue
                record = json.loads(line)
                state = str(record.get("state") or "unknown")
                states[state] += 1
                if state == "failed":
                    reasons[str(record.get("error_message") or record.get("status") or "?")[:80]] += 1
    return {
        "days": days,
        "finished": states["finished"],
        "failed": states["failed"],
        "other": sum(n for state, n in states.items() if state not in ("finished", "failed")),
        "failed_top_reasons": dict(reasons.most_common(5)),
    }


def review_status(store: ObjectStore, *, now: datetime, zone: tzinfo, days: int = 7) -> dict[str, Any]:
    """The review feed's checkpoint, its lag, and the reviews committed in the last ``days``
    (partitions are review days in ``zone``)."""
    from qcflow.harvest.state import read_checkpoint

    checkpoint = read_checkpoint(store, layout.REVIEW_CHECKPOINT)
    reviews = 0
    for day in range(days):
        date = (now.astimezone(zone) - timedelta(days=day)).strftime("%Y-%m-%d")
        for info in store.list(f"{layout.REVIEW_COMMITS}dt={date}/"):
            record = journal.read(store, info.key)
            reviews += len((record or {}).get("results") or [])
    return {
        "checkpoint": checkpoint.through.isoformat() if checkpoint else None,
        "lag_seconds": round((now - checkpoint.through).total_seconds()) if checkpoint else None,
        f"reviews_last_{days}_days": reviews,
    }


def files_status(
    store: ObjectStore, *, now: datetime, zone: tzinfo, days: int = 7, closed_after_seconds: float = 3720.0
) -> dict[str, Any]:
    """Visible parts per closed hour of the last ``days`` (one listing of ``results/``): what a
    Hive-style reader lists, and so what compaction (``qcflow.harvest.compact``) keeps small.
    An hour is counted once it ended ``closed_after_seconds`` ago (settle + lookback)."""
    from zoneinfo import ZoneInfo

    from qcflow.harvest.compact import RESULTS, files_per_hour, partition_hour

    since = now.astimezone(zone) - timedelta(days=days - 1)
    limit = now - timedelta(seconds=closed_after_seconds)
    hour_zone = zone if isinstance(zone, ZoneInfo) else ZoneInfo(str(zone))
    counts = {
        name: n
        for name, n in files_per_hour(store, RESULTS, since).items()
        if (start := partition_hour(name, hour_zone)) is not None and start + timedelta(hours=1) <= limit
    }
    return {
        "closed_hours": len(counts),
        "max_files_per_closed_hour": max(counts.values(), default=0),
        "closed_hours_over_2_files": sum(1 for n in counts.values() if n > 2),
    }


def status(
    store: ObjectStore,
    *,
    zone: tzinfo,
    now: datetime | None = None,
    days: int = 7,
    progress: Callable[[int], None] | None = None,
    closed_after_seconds: float = 3720.0,
) -> dict[str, Any]:
    now = now or datetime.now(timezone.utc)
    today = now.astimezone(zone).date()
    return {
        "store": store.url,
        "at": now.isoformat(timespec="seconds"),
        # the days "harvested" and "inspections" count: partition days in SCA's zone, today included
        "days": {"from": (today - timedelta(days=days - 1)).isoformat(), "to": today.isoformat(), "zone": str(zone)},
        "push": push_status(store, now=now.timestamp(), progress=progress),
        "harvest": harvest_status(store, now=now, zone=zone, days=days),
        "inspections": inspection_status(store, now=now, zone=zone, days=days),
        "reviews": review_status(store, now=now, zone=zone, days=days),
        "files": files_status(store, now=now, zone=zone, days=days, closed_after_seconds=closed_after_seconds),
    }


def as_json(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2, sort_keys=True, default=str)
