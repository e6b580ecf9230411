"""The exactly-once writer: immutable JSONL parts, each announced by a commit record.

Why not a lease on the write path: the callback function writes single tasks while timer
runs write windows, in other Function Compute instances, at the same time. Exactness comes
from one rule instead: **a result is written iff it is listed in a commit record**, and commit
records of a partition form a total order in which no result appears twice. A result is
``<TaskId>|<Recording.Id>`` (``records.result_id``): one upload of several recordings
shares a taskId, and each recording is a result of its own::

    state/harvest/commits/dt=2026-11-20/hour=07/0000000012.json   {results, part, run, …}
    results/dt=2026-11-20/hour=07/part-0000000012-<run>.jsonl[.gz] the lines of those results
    state/harvest/pending/dt=2026-11-20/hour=07/0000000012-<run>.json  intent, until the part exists

The partition is the upload hour in SCA's zone (``records.Partitioner``), so every writer
of a result meets the same sequence. A writer (``ResultWriter``):

1. loads the partition's commit records (cached per process and store: later loads read
   only the records after the last one seen) and drops results already committed;
2. streams the remaining lines into a local spill file (memory stays flat: only result ids
   are held), rolling a new unit at ``harvest_part_max_records`` / ``_bytes``;
3. creates the pending marker, then commit record ``n + 1`` with create-if-absent. On a
   lost race it reads the records it missed, drops the results they committed (rewriting the
   spill), and tries ``n + 2``;
4. uploads the spill to the part key the record names, atomically (``open_writer``), then
   deletes the pending marker.

A crash between 3 and 4 leaves a record whose part is missing, and its pending marker. A
later timer run (``stale_intents``) finds markers older than the grace period (longer than
any writer may live: a writer whose record is older than that aborts its own upload) and
rewrites the part at the same key from the results fetched again by taskId. Writing a part
twice (a slow writer and a recovery) replaces it with the same set of results, never adds
one. Commit records are never deleted: they are what makes a backfill of an old range, or
a late finisher, exact.

A *room* (``Room``) is where one feed's parts and records live: the harvest's results
(``results/``, records under ``state/harvest/``) or the review feed's reviews (``reviews/``,
records under ``state/reviews/``). The protocol is the same in both; only the prefixes differ,
so a review and a result never share a commit sequence.

Why ~630 lines: the commit protocol (intent, commit record, spill, upload, recovery of
what a crash left) is one mechanism; its invariants are easier to check in one place.
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
import threading
import time
import weakref
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from qcflow import journal, layout
from qcflow.config import HarvestSettings
from qcflow.errors import NotFoundError, RetryableError
from qcflow.journal import MAX_RACES
from qcflow.store import ObjectStore

log = logging.getLogger("qcflow.harvest")

#: Partitions whose committed result ids a process keeps (per store).
CACHED_PARTITIONS = 4
_READ_CHUNK = 1024 * 1024
_LOAD_THREADS = 16


@dataclass(frozen=True)
class Room:
    """Where a feed's parts go (``output``) and where their commit records and pending
    markers live (``commits``, ``pending``): see the module docstring."""

    name: str
    output: str
    commits: str
    pending: str


#: The harvest's results, and the review feed's reviews.
RESULTS_ROOM = Room("results", layout.RESULTS, layout.HARVEST_COMMITS, layout.HARVEST_PENDING)
REVIEWS_ROOM = Room("reviews", layout.REVIEWS, layout.REVIEW_COMMITS, layout.REVIEW_PENDING)


def commit_key(partition: str, seq: int, room: Room = RESULTS_ROOM) -> str:
    return f"{room.commits}{partition}/{seq:010d}.json"


def part_key(partition: str, seq: int, run_id: str, gzip: bool, room: Room = RESULTS_ROOM) -> str:
    return f"{room.output}{partition}/part-{seq:010d}-{run_id}.jsonl" + (".gz" if gzip else "")


def pending_key(partition: str, seq: int, run_id: str, room: Room = RESULTS_ROOM) -> str:
    return f"{room.pending}{partition}/{seq:010d}-{run_id}.json"


@dataclass(frozen=True)
class WrittenFile:
    """One part made visible: its key, partition, line count and size in bytes (as stored)."""

    key: str
    partition: str
    records: int
    bytes: int
    seq: int

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "partition": self.partition, "records": self.records, "bytes": self.bytes}


# ------------------------------------------------------------------------ commit log


class CommitLog:
    """A partition's commit records as far as read: the last sequence number and the
    committed result ids. ``lock`` serializes this process's writers of the partition (the
    store serializes everyone else)."""

    def __init__(self, partition: str, room: Room = RESULTS_ROOM) -> None:
        self.partition = partition
        self.room = room
        self.last_seq = 0
        self.committed: set[str] = set()
        self.lock = threading.Lock()

    def refresh(self, store: ObjectStore) -> list[str]:
        """Read the records created since the last refresh; returns the result ids they add."""
        prefix = f"{self.room.commits}{self.partition}/"
        start_after = commit_key(self.partition, self.last_seq, self.room) if self.last_seq else None
        new: list[tuple[int, str]] = []
        for info in store.list(prefix, start_after=start_after):
            name = info.key[len(prefix) :]
            head = name[: -len(".json")] if name.endswith(".json") else ""
            if head.isdigit():
                new.append((int(head), info.key))
        if not new:
            return []
        records = _get_many(store, [key for _, key in new])
        added: list[str] = []
        for (seq, key), record in zip(new, records, strict=False):
            if record is None:
                raise RetryableError(f"commit record {key!r} was listed but cannot be read")
            ids = record.get("results") or []
            self.committed.update(ids)
            added.extend(ids)
            self.last_seq = max(self.last_seq, seq)
        return added

    def add(self, seq: int, results: Iterable[str]) -> None:
        self.committed.update(results)
        self.last_seq = max(self.last_seq, seq)


def _get_many(store: ObjectStore, keys: list[str]) -> list[dict[str, Any] | None]:
    if len(keys) <= 2:
        return [journal.read(store, key) for key in keys]
    with ThreadPoolExecutor(max_workers=min(_LOAD_THREADS, len(keys)), thread_name_prefix="qcflow-commits") as pool:
        return list(pool.map(lambda key: journal.read(store, key), keys))


class CommitLogs:
    """The commit logs a process knows, per store object (a new store object — another FC
    instance, or a test's second "process" — starts cold), least recently used first out."""

    _by_store: weakref.WeakKeyDictionary[Any, CommitLogs] = weakref.WeakKeyDictionary()
    _guard = threading.Lock()

    def __init__(self, limit: int = CACHED_PARTITIONS) -> None:
        self.limit = limit
        self._logs: OrderedDict[tuple[str, str], CommitLog] = OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def of(cls, store: ObjectStore) -> CommitLogs:
        with cls._guard:
            logs = cls._by_store.get(store)
            if logs is None:
                logs = cls._by_store[store] = CommitLogs()
            return logs

    def get(self, partition: str, room: Room = RESULTS_ROOM) -> CommitLog:
        with self._lock:
            name = (room.name, partition)
            found = self._logs.get(name)
            if found is None:
                found = self._logs[name] = CommitLog(partition, room)
            self._logs.move_to_end(name)
            while len(self._logs) > self.limit:
                oldest, evicted = next(iter(self._logs.items()))
                if evicted.lock.locked():  # in use right now: keep it (and stay over the limit)
                    break
                del self._logs[oldest]
            return found


# ------------------------------------------------------------------------------ spill


class Spill:
    """Lines of one partition waiting for their commit: a local temp file (the part's exact
    bytes, uncompressed) plus their result ids in line order — the only thing in memory."""

    def __init__(self, partition: str, directory: str | None = None) -> None:
        self.partition = partition
        fd, self.path = tempfile.mkstemp(prefix="qcflow-part-", suffix=".jsonl", dir=directory)
        self._fh = os.fdopen(fd, "wb", buffering=256 * 1024)
        self.ids: list[str] = []
        self.index: set[str] = set()
        self.size = 0
        #: result id → contact id, for the push ledger's taskId join (a small map).
        self.contacts: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self.ids)

    def add(self, result: str, line: bytes, contact_id: str | None = None) -> bool:
        """Append a line; False (nothing written) if the result is in this spill already."""
        if result in self.index:
            return False
        self._fh.write(line)
        self.ids.append(result)
        self.index.add(result)
        self.size += len(line)
        if contact_id is not None:
            self.contacts[result] = contact_id
        return True

    def seal(self) -> None:
        if not self._fh.closed:
            self._fh.close()

    def drop(self, committed: set[str]) -> int:
        """Remove the lines of results another writer committed first (rewrites the file)."""
        self.seal()
        if not any(result in committed for result in self.ids):
            return 0
        fd, new_path = tempfile.mkstemp(prefix="qcflow-part-", suffix=".jsonl", dir=os.path.dirname(self.path))
        kept: list[str] = []
        size = 0
        with open(self.path, "rb") as src, os.fdopen(fd, "wb") as dst:
            for result, line in zip(self.ids, src, strict=False):
                if result not in committed:
                    dst.write(line)
                    kept.append(result)
                    size += len(line)
        os.unlink(self.path)
        dropped = len(self.ids) - len(kept)
        self.path, self.ids, self.index, self.size = new_path, kept, set(kept), size
        self.contacts = {k: v for k, v in self.contacts.items() if k not in committed}
        return dropped

    def chunks(self) -> Iterable[bytes]:
        self.seal()
        with open(self.path, "rb") as fh:
            while chunk := fh.read(_READ_CHUNK):
                yield chunk

    def discard(self) -> None:
        self.seal()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


def upload(
    store: ObjectStore,
    key: str,
    chunks: Iterable[bytes],
    *,
    gzip: bool,
    metadata: dict[str, str],
    still_valid: Callable[[], bool] = lambda: True,
) -> int:
    """Stream ``chunks`` to ``key`` (gzip on the fly if asked); visible all at once, or not at
    all if ``still_valid()`` turns False before the commit. Returns the stored size."""
    content_type = "application/gzip" if gzip else "application/x-ndjson"
    packer = zlib.compressobj(6, zlib.DEFLATED, 31) if gzip else None  # wbits 31: a gzip member
    size = 0
    with store.open_writer(key, content_type=content_type, metadata=metadata) as writer:
        for chunk in chunks:
            data = packer.compress(chunk) if packer else chunk
            if data:
                writer.write(data)
                size += len(data)
        if packer:
            tail = packer.flush()
            writer.write(tail)
            size += len(tail)
        if not still_valid():
            writer.abort()
            raise RetryableError(f"part {key!r} took longer than the recovery grace period; left to recovery")
    return size


# ------------------------------------------------------------------------ the writer


@dataclass
class WriterStats:
    written: int = 0
    duplicates_skipped: int = 0
    files: list[WrittenFile] = field(default_factory=list)


class ResultWriter:
    """Routes result lines to their partition's spill and commits full spills in the
    background (one thread per commit; the store is synchronous). ``seal()`` closes the open
    spills and gives an awaitable of every commit scheduled so far — what a checkpoint must
    wait for.

    ``on_committed(spill)`` runs (in the committing thread) after a part is visible, e.g. to
    delete the unfinished markers of its results and record taskIds in the push ledger.
    """

    @classmethod
    def for_harvest(
        cls,
        store: ObjectStore,
        harvest: HarvestSettings,
        *,
        run_id: str,
        grace_seconds: float,
        wall: Callable[[], float],
        on_committed: Callable[[Spill], None] | None,
        room: Room = RESULTS_ROOM,
    ) -> ResultWriter:
        """A pass's writer for ``room``, its part format and sizes from the harvest settings
        (one place for both feeds and the unredacted copy's store)."""
        return cls(
            store,
            run_id=run_id,
            gzip=harvest.gzip,
            max_records=harvest.part_max_records,
            max_bytes=harvest.part_max_bytes,
            grace_seconds=grace_seconds,
            wall=wall,
            on_committed=on_committed,
            room=room,
        )

    def __init__(
        self,
        store: ObjectStore,
        *,
        run_id: str,
        gzip: bool,
        max_records: int,
        max_bytes: int,
        grace_seconds: float,
        wall: Callable[[], float] = time.time,
        on_committed: Callable[[Spill], None] | None = None,
        spill_dir: str | None = None,
        room: Room = RESULTS_ROOM,
    ) -> None:
        self.store = store
        self.room = room
        self.run_id = run_id
        self.gzip = gzip
        self.max_records = max_records
        self.max_bytes = max_bytes
        self.grace_seconds = grace_seconds
        self.wall = wall
        self.on_committed = on_committed
        self.spill_dir = spill_dir
        self.logs = CommitLogs.of(store)
        self.stats = WriterStats()
        self._open: dict[str, Spill] = {}
        #: Logs of the partitions routed to since the last seal (held, whatever the LRU does).
        self._logs: dict[str, CommitLog] = {}
        self._tasks: list[asyncio.Task[WrittenFile | None]] = []
        self._stats_lock = threading.Lock()

    # ---------------------------------------------------------------- hot path
    async def ensure_loaded(self, partition: str) -> None:
        """Read the partition's commit records once per run before routing to it, so that
        results committed earlier are skipped before they cost a conversion."""
        if partition not in self._logs:
            log_ = self.logs.get(partition, self.room)
            await asyncio.to_thread(_locked_refresh, log_, self.store)
            self._logs[partition] = log_

    def is_committed(self, partition: str, result: str) -> bool:
        """Known to be written already (by anyone, as far as read) or waiting in this run's
        open spill. Call ``ensure_loaded(partition)`` first."""
        spill = self._open.get(partition)
        return result in self._logs[partition].committed or (spill is not None and result in spill.index)

    def is_in_commit_log(self, partition: str, result: str) -> bool:
        """Listed in a commit record (as far as read): written, or recoverable — unlike a result
        that only waits in this run's open spill."""
        return result in self._logs[partition].committed

    def skip(self, count: int = 1) -> None:
        """Count results left out because they are written already (or queued)."""
        with self._stats_lock:  # committing threads count their drops too
            self.stats.duplicates_skipped += count

    def add(self, partition: str, result: str, line: bytes, contact_id: str | None = None) -> None:
        """Queue one line (after ``ensure_loaded``); a full spill is committed in the background."""
        spill = self._open.get(partition)
        if spill is None:
            spill = self._open[partition] = Spill(partition, self.spill_dir)
        if not spill.add(result, line, contact_id):
            self.skip()
            return
        if len(spill) >= self.max_records or spill.size >= self.max_bytes:
            del self._open[partition]
            self._schedule(spill)

    # ---------------------------------------------------------------- commits
    def _schedule(self, spill: Spill) -> None:
        spill.seal()
        log_ = self._logs.get(spill.partition) or self.logs.get(spill.partition, self.room)
        self._tasks.append(asyncio.get_running_loop().create_task(asyncio.to_thread(self._commit, spill, log_)))

    def seal(self) -> asyncio.Future[list[WrittenFile | None]]:
        """Close every open spill; the returned future completes when every commit scheduled
        so far has (and raises the first commit failure)."""
        for spill in list(self._open.values()):
            self._schedule(spill)
        self._open.clear()
        self._logs.clear()
        tasks, self._tasks = self._tasks, []
        return asyncio.gather(*tasks)

    async def close(self) -> None:
        """Discard what was not sealed, and wait for every commit in flight (never leave a
        thread writing behind a finished run)."""
        for spill in self._open.values():
            spill.discard()
        self._open.clear()
        tasks, self._tasks = self._tasks, []
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    def _commit(self, spill: Spill, log_: CommitLog) -> WrittenFile | None:
        try:
            written = commit_spill(
                self.store,
                spill,
                log_,
                run_id=self.run_id,
                gzip=self.gzip,
                grace_seconds=self.grace_seconds,
                wall=self.wall,
                on_duplicates=self.skip,
            )
            if written is not None:
                with self._stats_lock:
                    self.stats.written += written.records
                    self.stats.files.append(written)
                if self.on_committed is not None:
                    self.on_committed(spill)
            return written
        finally:
            spill.discard()


def _locked_refresh(log_: CommitLog, store: ObjectStore) -> None:
    with log_.lock:
        log_.refresh(store)


def commit_spill(
    store: ObjectStore,
    spill: Spill,
    log_: CommitLog,
    *,
    run_id: str,
    gzip: bool,
    grace_seconds: float,
    wall: Callable[[], float] = time.time,
    on_duplicates: Callable[[int], None] = lambda n: None,
) -> WrittenFile | None:
    """Steps 3 and 4 of the module docstring for one spill; ``None`` if nothing was left to
    write (every result had been committed by someone else)."""
    with log_.lock:
        log_.refresh(store)
        for _ in range(MAX_RACES):
            dropped = spill.drop(log_.committed)
            if dropped:
                on_duplicates(dropped)
            if not spill.ids:
                return None
            seq = log_.last_seq + 1
            room = log_.room
            key = part_key(spill.partition, seq, run_id, gzip, room)
            marker = pending_key(spill.partition, seq, run_id, room)
            started = time.monotonic()
            journal.write_once(
                store,
                marker,
                {"partition": spill.partition, "seq": seq, "run": run_id, "part": key, "created_at": wall()},
                token=f"pending-{run_id}",
            )
            record = {
                "v": 1,
                "partition": spill.partition,
                "seq": seq,
                "run": run_id,
                "part": key,
                "count": len(spill.ids),
                "results": spill.ids,
            }
            if not journal.write_once(
                store, commit_key(spill.partition, seq, room), record, token=f"commit-{run_id}-{seq}"
            ):
                store.delete(marker)
                log_.refresh(store)
                continue
            log_.add(seq, spill.ids)
            size = upload(
                store,
                key,
                spill.chunks(),
                gzip=gzip,
                metadata={"run-id": run_id, "records": str(len(spill.ids))},
                still_valid=lambda: time.monotonic() - started < grace_seconds,  # noqa: B023 - called in this iteration
            )
            store.delete(marker)
            log.info(
                "harvest part written",
                extra={
                    "event": "harvest_part",
                    "room": room.name,
                    "key": key,
                    "records": len(spill.ids),
                    "bytes": size,
                    "partition": spill.partition,
                },
            )
            return WrittenFile(key, spill.partition, len(spill.ids), size, seq)
    raise RetryableError(f"partition {spill.partition}: lost {MAX_RACES} commit races in a row")


# ------------------------------------------------------------------------ recovery


@dataclass(frozen=True)
class Intent:
    """A pending marker: a writer meant to make ``part`` visible for commit ``seq``."""

    key: str
    partition: str
    seq: int
    run: str
    part: str
    created_at: float
    room: Room = RESULTS_ROOM


def pending_intents(store: ObjectStore, room: Room = RESULTS_ROOM) -> list[Intent]:
    """Every pending marker of ``room`` (usually none, or the few writes in flight right now)."""
    found: list[Intent] = []
    for info in store.list(room.pending):
        record = journal.read(store, info.key)
        if record is None:
            continue
        found.append(
            Intent(
                info.key,
                str(record["partition"]),
                int(record["seq"]),
                str(record["run"]),
                str(record["part"]),
                float(record.get("created_at", 0)),
                room,
            )
        )
    return found


def intent_results(store: ObjectStore, intent: Intent) -> list[str] | None:
    """The result ids a stale intent must write, or ``None`` if there is nothing to recover
    (the race was lost, or the part exists: the writer died just before the cleanup)."""
    record = journal.read(store, commit_key(intent.partition, intent.seq, intent.room))
    if record is None or record.get("run") != intent.run or record.get("part") != intent.part:
        return None
    try:
        store.head(intent.part)
        return None
    except NotFoundError:
        pass
    return list(record.get("results") or [])


def write_recovered(store: ObjectStore, intent: Intent, lines: list[tuple[str, bytes]], *, gzip: bool) -> WrittenFile:
    """Rewrite a lost part at the key its commit record names, then drop the marker."""
    size = upload(
        store,
        intent.part,
        (line for _, line in lines),
        gzip=gzip,
        metadata={"run-id": intent.run, "records": str(len(lines)), "recovered": "true"},
    )
    store.delete(intent.key)
    return WrittenFile(intent.part, intent.partition, len(lines), size, intent.seq)


def write_manifest(store: ObjectStore, key: str, manifest: dict[str, Any]) -> None:
    journal.write_once(store, key, manifest, token=f"manifest-{manifest.get('run_id', '')}")


__all__ = [
    "CommitLog",
    "CommitLogs",
    "Intent",
    "REVIEWS_ROOM",
    "RESULTS_ROOM",
    "ResultWriter",
    "Room",
    "Spill",
    "WrittenFile",
    "commit_key",
    "commit_spill",
    "intent_results",
    "part_key",
    "pending_intents",
    "pending_key",
    "upload",
    "write_manifest",
    "write_recovered",
]
