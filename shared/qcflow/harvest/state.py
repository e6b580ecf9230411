"""Harvest state in ``state/harvest/``: lease, checkpoint, unfinished and stuck tasks.

Everything here is built on create-if-absent and immutable objects (``qcflow.journal``;
deleting a marker one owns is fine): conditional overwrite (``If-Match``) on OSS is
unconfirmed, while ``x-oss-forbid-overwrite`` is documented. So a value that changes over time
is a *sequence* of immutable objects, and its current value is the last one listed (prefixes
in ``qcflow.layout``)::

    state/harvest/lease/000000000007.json        {owner, expires_at, …}  (create-if-absent at last+1)
    state/harvest/lease/000000000007.released    the owner let it go
    state/harvest/backfill-lease/…               the same, for backfills (see run.py)
    state/harvest/checkpoint/000000000042.json   {through: upload time}  (latest = last listed)
    state/harvest/unfinished/<result>.json       {first_seen, upload_time}: poll until it finishes
    state/harvest/stuck/<result>.json            polled no more: running past the maximum age

A *result* is ``<TaskId>|<Recording.Id>`` percent-encoded (``records.result_id``): one upload
of several recordings shares one taskId, and each recording is its own result.

Why a lease is taken only at ``last + 1``: of any number of runs that see the last lease
released or expired, exactly one creates the next object, so two timer runs never harvest
at once (a crashed run's lease simply expires). Old leases and checkpoints are pruned (a few
are kept) so that listings stay one short page.

Times stored here are epoch seconds of the caller's wall clock (``now``), since they are
compared across Function Compute instances; monotonic deadlines stay inside one process.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone

from qcflow import journal, layout
from qcflow.errors import RetryableError
from qcflow.journal import MAX_RACES, seq_name
from qcflow.store import ObjectStore

log = logging.getLogger("qcflow.harvest")

#: Leases and checkpoints kept behind the current one (for the curious operator).
KEEP = 3


# ----------------------------------------------------------------------------- lease


@dataclass(frozen=True)
class Lease:
    """A held lease: ``key`` is its object; ``expires_at`` epoch seconds."""

    prefix: str
    seq: int
    owner: str
    expires_at: float

    @property
    def key(self) -> str:
        return self.prefix + seq_name(self.seq)


@dataclass(frozen=True)
class LeaseBusy:
    """Someone else holds the lease until ``expires_at``."""

    owner: str | None
    expires_at: float | None


def _listing(store: ObjectStore, prefix: str) -> dict[int, set[str]]:
    """seq → the suffixes present (``.json``, ``.released``)."""
    found: dict[int, set[str]] = {}
    for info in store.list(prefix):
        name = info.key[len(prefix) :]
        seq = journal.seq_of(name)
        if seq is not None and "/" not in name:
            found.setdefault(seq, set()).add(name[name.index(".") :] if "." in name else "")
    return found


def acquire_lease(
    store: ObjectStore, owner: str, *, now: float, ttl: float, prefix: str = layout.HARVEST_LEASE
) -> Lease | LeaseBusy:
    """Take the lease (``Lease``) or learn who holds it (``LeaseBusy``).

    Free means: no lease yet, or the last one released, or expired (its run crashed or
    overran). Then the lease is the object ``last + 1``, created if absent: racing runs
    cannot both get it.
    """
    for _ in range(MAX_RACES):
        found = _listing(store, prefix)
        last = max((seq for seq, kinds in found.items() if ".json" in kinds), default=0)
        if last and ".released" not in found.get(last, set()):
            current = journal.read(store, prefix + seq_name(last))
            if current is None:
                continue  # pruned or replaced while we looked: look again
            expires_at = float(current.get("expires_at", 0))
            if now < expires_at:
                return LeaseBusy(current.get("owner"), expires_at)
            log.warning(
                "harvest lease %d of %s expired at %s: taking over",
                last,
                current.get("owner"),
                _text(expires_at),
                extra={"event": "harvest_lease_expired"},
            )
        lease = Lease(prefix, last + 1, owner, now + ttl)
        record = {"owner": owner, "taken_at": now, "expires_at": lease.expires_at}
        if journal.write_once(store, lease.key, record, token=f"lease-{owner}"):
            _prune(store, prefix, found, keep_from=lease.seq - KEEP)
            return lease
    raise RetryableError(f"could not take the harvest lease in {store.url}: lost {MAX_RACES} races")


def release_lease(store: ObjectStore, lease: Lease) -> None:
    """Let the next run in at once (else it waits for ``expires_at``)."""
    journal.write_once(
        store, lease.prefix + seq_name(lease.seq, ".released"), {"owner": lease.owner}, token=f"release-{lease.owner}"
    )


def _prune(store: ObjectStore, prefix: str, found: dict[int, set[str]], *, keep_from: int) -> None:
    for seq, kinds in found.items():
        if seq < keep_from:
            for suffix in kinds:
                try:
                    store.delete(prefix + seq_name(seq, suffix))
                except RetryableError as exc:  # pruning is housekeeping: the next run tries again
                    log.warning("could not prune %s: %s", prefix + seq_name(seq, suffix), exc)


# ------------------------------------------------------------------------ checkpoint


@dataclass(frozen=True)
class Checkpoint:
    seq: int
    through: datetime


def read_checkpoint(store: ObjectStore, prefix: str = layout.HARVEST_CHECKPOINT) -> Checkpoint | None:
    """The latest checkpoint: every result uploaded before ``through`` has been read (with
    ``prefix`` ``layout.REVIEW_CHECKPOINT``: every review saved before ``through``)."""
    for _ in range(MAX_RACES):
        found = _listing(store, prefix)
        seqs = sorted((seq for seq, kinds in found.items() if ".json" in kinds), reverse=True)
        if not seqs:
            return None
        record = journal.read(store, prefix + seq_name(seqs[0]))
        if record is None:
            continue
        return Checkpoint(seqs[0], datetime.fromtimestamp(float(record["through"]), timezone.utc))
    raise RetryableError(f"could not read the harvest checkpoint in {store.url}")


def advance_checkpoint(
    store: ObjectStore, through: datetime, *, owner: str, now: float, prefix: str = layout.HARVEST_CHECKPOINT
) -> Checkpoint:
    """Move the checkpoint to ``through`` — never backwards: if the stored one is already
    later, it stays, and it is returned."""
    for _ in range(MAX_RACES):
        current = read_checkpoint(store, prefix)
        if current is not None and current.through >= through:
            return current
        seq = (current.seq if current else 0) + 1
        record = {
            "through": through.timestamp(),
            "through_text": through.astimezone(timezone.utc).isoformat(),
            "owner": owner,
            "written_at": now,
        }
        if journal.write_once(
            store,
            prefix + seq_name(seq),
            record,
            token=f"checkpoint-{owner}-{int(through.timestamp())}",
        ):
            if seq > KEEP + 1:
                _prune(store, prefix, _listing(store, prefix), keep_from=seq - KEEP)
            return Checkpoint(seq, through)
    raise RetryableError(f"could not advance the harvest checkpoint in {store.url}: lost {MAX_RACES} races")


def origin(
    store: ObjectStore, first: datetime, *, owner: str, now: float, prefix: str = layout.HARVEST_CHECKPOINT
) -> Checkpoint:
    """Where a pass starts reading (before its lookback): the checkpoint, or — with none yet —
    ``first`` (``QCFLOW_HARVEST_START_SECONDS`` before the pass), saved as the checkpoint at
    once. Why saved before anything is read: a first pass stopped (deadline, crash) before
    its first window is finished would leave no checkpoint, and the next pass would start
    ``start_seconds`` before *its* own start — later, by the time between the two: the
    results uploaded in between would never be read (the lookback only hides it while it is
    longer than that gap). Nothing before ``first`` is wanted, so the checkpoint's promise
    ("every result before ``through`` is read") holds for it."""
    current = read_checkpoint(store, prefix)
    if current is not None:
        return current
    return advance_checkpoint(store, first, owner=owner, now=now, prefix=prefix)


# ------------------------------------------------------------------ unfinished, stuck


@dataclass(frozen=True)
class UnfinishedTask:
    """A result seen running (``result`` is ``records.result_id``: ``<TaskId>|<Recording.Id>``),
    polled by its taskId until it finishes or passes the maximum age."""

    result: str
    first_seen: float
    upload_time: float | None

    @property
    def task_id(self) -> str:
        return self.result.split("|", 1)[0]

    def age(self, now: float) -> float:
        return now - self.first_seen


def unfinished_key(result: str) -> str:
    return f"{layout.HARVEST_UNFINISHED}{journal.key_segment(result)}.json"


def stuck_key(result: str) -> str:
    return f"{layout.HARVEST_STUCK}{journal.key_segment(result)}.json"


def remember_unfinished(
    store: ObjectStore, result: str, *, first_seen: float, upload_time: float | None, owner: str
) -> bool:
    """Remember a running result (True if this call created the marker; an older one wins)."""
    record = {
        "result": result,
        "task_id": result.split("|", 1)[0],
        "first_seen": first_seen,
        "upload_time": upload_time,
    }
    return journal.write_once(store, unfinished_key(result), record, token=f"unfinished-{owner}")


def unfinished_results(store: ObjectStore) -> Iterator[str]:
    """The remembered results (from the listing alone: one request per 1,000)."""
    for info in store.list(layout.HARVEST_UNFINISHED):
        name = info.key[len(layout.HARVEST_UNFINISHED) :]
        if name.endswith(".json") and "/" not in name:
            yield journal.segment_value(name[: -len(".json")])


def read_unfinished(store: ObjectStore, result: str) -> UnfinishedTask | None:
    record = journal.read(store, unfinished_key(result))
    if record is None:
        return None
    upload = record.get("upload_time")
    return UnfinishedTask(result, float(record.get("first_seen", 0)), float(upload) if upload is not None else None)


def forget_unfinished(store: ObjectStore, result: str) -> None:
    store.delete(unfinished_key(result))


def mark_stuck(store: ObjectStore, task: UnfinishedTask, *, now: float, owner: str) -> None:
    """Report a result that kept running past the maximum age, and stop polling it. A later
    backfill over its upload time still writes it if it ever finishes."""
    record = {
        "result": task.result,
        "task_id": task.task_id,
        "first_seen": task.first_seen,
        "upload_time": task.upload_time,
        "stuck_at": now,
    }
    journal.write_once(store, stuck_key(task.result), record, token=f"stuck-{owner}")
    forget_unfinished(store, task.result)


def stuck_results(store: ObjectStore) -> Iterator[str]:
    """Every result ever reported stuck (for ``qcflow status``)."""
    for info in store.list(layout.HARVEST_STUCK):
        name = info.key[len(layout.HARVEST_STUCK) :]
        if name.endswith(".json") and "/" not in name:
            yield journal.segment_value(name[: -len(".json")])


def _text(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat()
