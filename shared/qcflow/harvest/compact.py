"""Compaction: a closed hour's many small parts folded into one or two, never doubled, never lost.

Why: every callback writes a part of its own, so a busy day adds tens of thousands of objects,
and every reader (DuckDB, Spark, MaxCompute external tables, OSS LIST/GET) slows down with the
file count. The writer (``qcflow.harvest.output``) is left as it is — a part is visible the
moment its results are committed, so every reader stays fresh — and compaction rewrites an hour
once it can no longer receive results.

**The rule readers rely on.** A reader that lists ``<room>dt=*/hour=*/*.jsonl*`` and skips names
starting with ``_`` or ``.`` (Hive, Spark, MaxCompute, DuckDB with that glob) sees each result
**at most once at every instant, and exactly once once no compaction is in flight**. Fresh
readers (``qcflow report``, the latest view) also read the hidden ``_compact/`` folder and keep
one row per result (they already keep one current row per task), so they see each result
exactly once at every instant.

**The protocol.** Compaction is a record in the partition's commit log (the writer's own
sequence, ``state/harvest/commits/dt=…/hour=…/<seq>.json``), created with create-if-absent at
last + 1 like any commit, listing no new results (``results: []``) but::

    {"kind": "compact", "covers": [seqs folded], "groups": [[input keys of output 0], …],
     "staged": [<room><partition>/_compact/part-<seq>-c0.jsonl, …],
     "outputs": [<room><partition>/part-<seq>-c0.jsonl, …]}

then, in this order (each step idempotent, so any finisher — this pass, the next one, a
concurrent ``qcflow compact`` — can take over after a crash at any point):

1. **stage**: stream each group's inputs (one part in memory at a time) into a local file,
   upload it to its hidden ``staged`` key;
2. **hide the inputs**: delete the visible inputs (the replacement is committed and complete);
3. **publish**: upload each output to its visible key (from the local file, or, when another
   process staged it, from the staged object);
4. **clean**: delete the staged copies.

Between 2 and 3 a Hive-style reader misses those results for a moment (at most once, never
twice); ``qcflow report`` reads them from ``_compact/``. A compaction's inputs are the parts of
earlier commit records whose part is complete (listed, and no pending marker: a writer or a
recovery still at work is never folded) and the outputs of earlier compactions; each input is
in one group only, and an input is covered by at most one compaction (a second compactor's
record comes later in the same sequence and is planned from a log that already holds the
first). Writers racing a compaction commit later sequence numbers: their parts stay visible
and are folded by the next compaction of the hour.

The same in both rooms (``output.Room``): ``results/`` with ``state/harvest/commits/`` and
``reviews/`` with ``state/reviews/commits/``.

**Closed hour** (``closed_before``): the hour ended at least ``settle + lookback`` ago (no
incremental pass of either feed reads it any more) and, in ``results/``, no unfinished task
(``state/harvest/unfinished/``) was uploaded in it (``reviews/`` is partitioned by review time:
no late finisher lands in an old review hour). Correctness never depends on it: a backfill, a
late finisher or a review that still writes into a compacted hour adds a part, and the next
compaction folds it.

Why one module of ~590 lines: the compaction record, its steps, the finishing of one left
halfway and the closed-hour rule are one protocol over the commit log; apart, each step's
safety argument would point into another file.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

from qcflow import journal
from qcflow.errors import NotFoundError, RetryableError
from qcflow.harvest.output import RESULTS_ROOM, REVIEWS_ROOM, Room, _get_many, upload
from qcflow.journal import MAX_RACES
from qcflow.store import ObjectStore

log = logging.getLogger("qcflow.harvest")

#: The hidden folder of a partition where compaction stages its outputs (``_``: Hive skips it).
STAGED_DIR = "_compact"
#: A compaction that keeps meeting another finisher gives up after this many tries (next pass).
FINISH_ATTEMPTS = 5
_CHUNK = 1024 * 1024
#: Commit records read at once while loading a partition's log.
_LOAD_BATCH = 512
_SUFFIXES = (".jsonl", ".jsonl.gz")


#: The two rooms compaction keeps small (the writer's own: ``output.Room``).
RESULTS = RESULTS_ROOM
REVIEWS = REVIEWS_ROOM


def _prefix(room: Room, partition: str) -> str:
    return f"{room.output}{partition}/"


def staged_key(room: Room, partition: str, seq: int, index: int, gzip: bool) -> str:
    return f"{room.output}{partition}/{STAGED_DIR}/part-{seq:010d}-c{index}.jsonl" + (".gz" if gzip else "")


def output_key(room: Room, partition: str, seq: int, index: int, gzip: bool) -> str:
    return f"{room.output}{partition}/part-{seq:010d}-c{index}.jsonl" + (".gz" if gzip else "")


# ------------------------------------------------------------------------ the log's view


@dataclass(slots=True)
class Item:
    """What one uncovered commit record contributes to the hour: its part (a write) or its
    outputs (a compaction), with their stored sizes as listed."""

    seq: int
    keys: tuple[str, ...]
    count: int
    size: int = 0


@dataclass
class Partition:
    """A partition's commit log (the writers' records as ``seq → (part, count)``, the
    compaction records whole), what its listing shows, and what is left to do."""

    room: Room
    name: str
    writes: dict[int, tuple[str, int]]
    compacts: list[tuple[int, dict[str, Any]]]
    present: dict[str, int]  # key → size, the visible parts and the staged ones
    pending: set[int] = field(default_factory=set)

    @property
    def last_seq(self) -> int:
        return max(max(self.writes, default=0), max((seq for seq, _ in self.compacts), default=0))

    def compactions(self) -> list[tuple[int, dict[str, Any]]]:
        return list(self.compacts)

    def covered(self) -> set[int]:
        return {seq for _, rec in self.compacts for seq in rec.get("covers", [])}

    def unfinished(self) -> list[tuple[int, dict[str, Any]]]:
        """Compactions whose steps are not all done (a crash, or one in flight elsewhere). A
        compaction folded by a later one was complete (its outputs were all there) and is done."""
        left = []
        covered = self.covered()
        for seq, rec in self.compacts:
            if seq in covered:
                continue
            inputs = [key for group in rec["groups"] for key in group]
            if (
                any(key not in self.present for key in rec["outputs"])
                or any(key in self.present for key in rec["staged"])
                or any(key in self.present for key in inputs)
            ):
                left.append((seq, rec))
        return left

    def items(self) -> list[Item]:
        """The uncovered records whose parts are complete, in log order: what a new compaction
        may fold."""
        covered = self.covered()
        found = []
        entries: list[tuple[int, tuple[str, ...], int]] = [
            (seq, (part,), count) for seq, (part, count) in self.writes.items()
        ]
        entries += [(seq, tuple(rec["outputs"]), int(rec.get("count") or 0)) for seq, rec in self.compacts]
        entries.sort(key=lambda entry: entry[0])
        for seq, keys, count in entries:
            if seq in covered or seq in self.pending:
                continue
            if not all(key in self.present for key in keys):
                continue  # being written, or a compaction not finished: not an input now
            found.append(Item(seq, keys, count, sum(self.present[key] for key in keys)))
        return found

    def visible_parts(self) -> int:
        return sum(1 for key in self.present if "/" not in key[len(_prefix(self.room, self.name)) :])


def load(store: ObjectStore, room: Room, partition: str) -> Partition:
    """Read the log first, then the pending markers, then the listing: a record seen without a
    marker after it has its part uploaded (the writer drops its marker only after that). The
    log is read a batch at a time and only what compaction needs is kept: memory stays flat."""
    prefix = f"{room.commits}{partition}/"
    writes: dict[int, tuple[str, int]] = {}
    compacts: list[tuple[int, dict[str, Any]]] = []

    def read(batch: list[tuple[int, str]]) -> None:
        for (seq, key), body in zip(batch, _get_many(store, [key for _, key in batch]), strict=True):
            if body is None:
                raise RetryableError(f"commit record {key!r} was listed but cannot be read")
            count = int(body.get("count", len(body.get("results") or [])))
            if body.get("kind") == "compact":
                body["results"], body["count"] = None, count
                compacts.append((seq, body))
            else:  # a writer's record: only its part and count matter here
                writes[seq] = (sys.intern(str(body.get("part", ""))), count)

    batch: list[tuple[int, str]] = []
    for info in store.list(prefix):
        head = info.key[len(prefix) :].removesuffix(".json")
        if head.isdigit():
            batch.append((int(head), info.key))
        if len(batch) >= _LOAD_BATCH:
            read(batch)
            batch = []
    read(batch)
    pending: set[int] = set()
    pprefix = f"{room.pending}{partition}/"
    for info in store.list(pprefix):
        head = info.key[len(pprefix) :].split("-", 1)[0]
        if head.isdigit():
            pending.add(int(head))
    present = {info.key: info.size for info in store.list(_prefix(room, partition)) if info.key.endswith(_SUFFIXES)}
    return Partition(room, partition, writes, compacts, present, pending)


# ------------------------------------------------------------------------ planning


def plan(part: Partition, max_bytes: int) -> list[list[Item]]:
    """Groups of items (in log order), each at most ``max_bytes`` when it holds more than
    one item; a group of one is left alone (rewriting it gains nothing)."""
    groups: list[list[Item]] = []
    current: list[Item] = []
    size = 0
    for item in part.items():
        if current and size + item.size > max_bytes:
            groups.append(current)
            current, size = [], 0
        current.append(item)
        size += item.size
    if current:
        groups.append(current)
    return [group for group in groups if len(group) > 1 or len(group[0].keys) > 1]


@dataclass
class CompactStats:
    partitions: int = 0
    compactions: int = 0
    finished: int = 0  # compactions left unfinished by someone else, finished here
    parts_before: int = 0
    parts_after: int = 0
    records: int = 0
    bytes_written: int = 0

    def to_json(self) -> dict[str, int]:
        return dict(self.__dict__)


def compact_partition(
    store: ObjectStore,
    room: Room,
    partition: str,
    *,
    run_id: str,
    gzip: bool,
    max_bytes: int,
    stats: CompactStats | None = None,
    spill_dir: str | None = None,
    wall: Callable[[], float] = time.time,
) -> CompactStats:
    """Finish what earlier compactions left, then fold the partition's small parts (if that
    makes fewer files). Safe to run anywhere, any number of times, concurrently."""
    stats = stats or CompactStats()
    stats.partitions += 1
    part = load(store, room, partition)
    stats.parts_before += part.visible_parts()
    covered = part.covered()
    for seq, rec in part.compactions():  # a slow finisher's late staged copy of a folded compaction
        if seq in covered:
            for key in rec["staged"]:
                if key in part.present:
                    store.delete(key)
    for seq, rec in part.unfinished():
        finish(store, room, partition, seq, rec, gzip=gzip, spill_dir=spill_dir, stats=stats)
        stats.finished += 1
    del part
    for _ in range(MAX_RACES):
        part = load(store, room, partition)
        if part.unfinished():
            break  # another compactor is at work right now: the next pass looks again
        groups = plan(part, max_bytes)
        if not groups:
            break
        seq = part.last_seq + 1
        record: dict[str, Any] = {
            "v": 1,
            "kind": "compact",
            "partition": partition,
            "seq": seq,
            "run": run_id,
            "created_at": wall(),
            "covers": sorted(item.seq for group in groups for item in group),
            "groups": [[key for item in group for key in item.keys] for group in groups],
            "staged": [staged_key(room, partition, seq, i, gzip) for i in range(len(groups))],
            "outputs": [output_key(room, partition, seq, i, gzip) for i in range(len(groups))],
            "count": sum(item.count for group in groups for item in group),
            "results": [],
        }
        del part, groups  # the record holds what finishing needs; the log's view may be large
        commit = f"{room.commits}{partition}/{seq:010d}.json"
        if not journal.write_once(store, commit, record, token=f"compact-{run_id}-{seq}"):
            continue  # a writer or another compactor took this number: plan again from the log
        stats.compactions += 1
        stats.records += int(record["count"])
        finish(store, room, partition, seq, record, gzip=gzip, spill_dir=spill_dir, stats=stats)
        log.info(
            "harvest partition compacted",
            extra={
                "event": "harvest_compacted",
                "partition": partition,
                "room": room.output,
                "seq": seq,
                "inputs": sum(len(g) for g in record["groups"]),
                "outputs": len(record["outputs"]),
            },
        )
        break
    stats.parts_after += visible_parts(store, room, partition)
    return stats


def visible_parts(store: ObjectStore, room: Room, partition: str) -> int:
    """What a Hive-style reader lists in one partition (one listing)."""
    prefix = _prefix(room, partition)
    return sum(1 for info in store.list(prefix) if info.key.endswith(_SUFFIXES) and "/" not in info.key[len(prefix) :])


# ------------------------------------------------------------------------ the steps


def _lines_of(store: ObjectStore, key: str) -> Iterator[bytes]:
    """An input part's uncompressed bytes in chunks (the part is held once: parts are small,
    at most ``harvest_part_max_bytes``)."""
    body = store.get(key).body
    if not key.endswith(".gz"):
        for start in range(0, len(body), _CHUNK):
            yield body[start : start + _CHUNK]
        return
    unpacker = zlib.decompressobj(47)  # gzip or zlib header, any member
    view = memoryview(body)
    for start in range(0, len(view), _CHUNK):
        data = unpacker.decompress(view[start : start + _CHUNK])
        while data:
            yield data
            data = unpacker.decompress(unpacker.unconsumed_tail) if unpacker.unconsumed_tail else b""
    tail = unpacker.flush()
    if tail:
        yield tail


def _spill(store: ObjectStore, keys: Iterable[str], spill_dir: str | None) -> str:
    fd, path = tempfile.mkstemp(prefix="qcflow-compact-", suffix=".jsonl", dir=spill_dir)
    try:
        with os.fdopen(fd, "wb") as out:
            last = b"\n"
            for key in keys:
                for chunk in _lines_of(store, key):
                    out.write(chunk)
                    last = chunk[-1:]
                if last != b"\n":  # a part always ends with a newline; be safe if one did not
                    out.write(b"\n")
                    last = b"\n"
    except BaseException:
        os.unlink(path)
        raise
    return path


def _file_chunks(path: str) -> Iterator[bytes]:
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            yield chunk


def finish(
    store: ObjectStore,
    room: Room,
    partition: str,
    seq: int,
    record: dict[str, Any],
    *,
    gzip: bool,
    spill_dir: str | None,
    stats: CompactStats,
    crash: Callable[[str], None] = lambda step: None,
) -> None:
    """Steps 1–4 of the module docstring for compaction ``seq``, from wherever they stand.
    ``crash(step)`` is the tests' hook to stop between steps."""
    for _attempt in range(FINISH_ATTEMPTS):
        present = {info.key for info in store.list(_prefix(room, partition))}
        outputs, staged, groups = record["outputs"], record["staged"], record["groups"]
        inputs = [key for group in groups for key in group]
        local: list[str] = []
        try:
            if not all(key in present for key in outputs):
                out_gzip = str(outputs[0]).endswith(".gz")
                if not all(key in present for key in staged):
                    # 1. stage (the inputs are all there: nothing is deleted before this is done)
                    for group, key in zip(groups, staged, strict=True):
                        local.append(_spill(store, group, spill_dir))
                        crash("staging")
                        size = upload(
                            store, key, _file_chunks(local[-1]), gzip=out_gzip, metadata={"compaction": str(seq)}
                        )
                        stats.bytes_written += size
                crash("staged")
                # 2. hide the inputs: their results are in the committed, complete staged copies
                for key in inputs:
                    store.delete(key)
                    crash("hiding")
                # 3. publish
                for index, key in enumerate(outputs):
                    if local:
                        chunks: Iterable[bytes] = _file_chunks(local[index])
                        size = upload(store, key, chunks, gzip=out_gzip, metadata={"compaction": str(seq)})
                    else:  # staged by another process: copy the staged object as it is
                        body = store.get(staged[index]).body
                        with store.open_writer(
                            key, content_type="application/gzip" if out_gzip else "application/x-ndjson"
                        ) as writer:
                            writer.write(body)
                        size = len(body)
                    stats.bytes_written += size
                    crash("publishing")
            else:
                for key in inputs:  # a finisher that stopped between 3 and 4 deleted these already
                    store.delete(key)
            # 4. clean
            for key in staged:
                store.delete(key)
                crash("cleaning")
            return
        except NotFoundError:
            # Another finisher moved on (deleted inputs or staged copies): look again.
            continue
        finally:
            for path in local:
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass
    raise RetryableError(f"compaction {seq} of {partition}: kept meeting another finisher")


# ------------------------------------------------------------------------ which hours


def partition_hour(partition: str, zone: ZoneInfo) -> datetime | None:
    """The start of a partition's hour (``dt=2026-11-20/hour=07`` in SCA's zone), or ``None``."""
    try:
        day, hour = partition.split("/")
        start = datetime.strptime(f"{day[3:]} {hour[5:]}", "%Y-%m-%d %H")
    except ValueError:
        return None
    return start.replace(tzinfo=zone)


def closed_before(now: datetime, settle_seconds: float, lookback_seconds: float) -> datetime:
    """Hours that end at or before this instant are read by no incremental pass any more."""
    return now - timedelta(seconds=settle_seconds + lookback_seconds)


def open_upload_hours(store: ObjectStore, zone: ZoneInfo) -> set[str]:
    """Partitions of tasks still polled as unfinished: not closed while one of them may finish."""
    from qcflow.harvest.state import read_unfinished, unfinished_results

    hours: set[str] = set()
    for result in unfinished_results(store):
        task = read_unfinished(store, result)
        if task is None or not task.upload_time:
            continue
        at = datetime.fromtimestamp(task.upload_time, zone)
        hours.add(f"dt={at.date().isoformat()}/hour={at.hour:02d}")
    return hours


def partitions(store: ObjectStore, room: Room, since: datetime | None, until: datetime | None) -> list[str]:
    """The partitions under ``room.output`` with a part, for days ``[since, until]`` (dates
    in SCA's zone, inclusive); one listing of that range."""
    start_after = f"{room.output}dt={since.date().isoformat()}" if since else None
    stop = f"{room.output}dt={until.date().isoformat()}/\U0010ffff" if until else None
    found: list[str] = []
    for info in store.list(room.output, start_after=start_after):
        if stop is not None and info.key > stop:
            break
        rest = info.key[len(room.output) :].split("/")
        if len(rest) < 3 or not rest[0].startswith("dt=") or not rest[1].startswith("hour="):
            continue
        name = f"{rest[0]}/{rest[1]}"
        if not found or found[-1] != name:
            found.append(name)
    return found


def closed_partitions(
    store: ObjectStore,
    room: Room,
    *,
    zone: ZoneInfo,
    now: datetime,
    settle_seconds: float,
    lookback_seconds: float,
    since: datetime | None = None,
    until: datetime | None = None,
    unfinished_rule: bool = True,
) -> list[str]:
    """The closed partitions of a range (module docstring), oldest first."""
    limit = closed_before(now, settle_seconds, lookback_seconds)
    busy = open_upload_hours(store, zone) if unfinished_rule else set()
    found = []
    for name in partitions(store, room, since, until):
        start = partition_hour(name, zone)
        if start is None or start + timedelta(hours=1) > limit or name in busy:
            continue
        found.append(name)
    return found


def compact_range(
    store: ObjectStore,
    room: Room,
    *,
    zone: ZoneInfo,
    now: datetime,
    settle_seconds: float,
    lookback_seconds: float,
    run_id: str,
    gzip: bool,
    max_bytes: int,
    since: datetime | None = None,
    until: datetime | None = None,
    deadline: float | None = None,
    spill_dir: str | None = None,
    unfinished_rule: bool = True,
    stats: CompactStats | None = None,
) -> CompactStats:
    """Compact every closed partition of the range, oldest first, until ``deadline``
    (``time.monotonic()``); what is left is for the next pass."""
    stats = stats or CompactStats()
    for name in closed_partitions(
        store,
        room,
        zone=zone,
        now=now,
        settle_seconds=settle_seconds,
        lookback_seconds=lookback_seconds,
        since=since,
        until=until,
        unfinished_rule=unfinished_rule,
    ):
        if deadline is not None and time.monotonic() >= deadline:
            break
        compact_partition(
            store, room, name, run_id=run_id, gzip=gzip, max_bytes=max_bytes, stats=stats, spill_dir=spill_dir
        )
    return stats


def files_per_hour(store: ObjectStore, room: Room, since: datetime | None = None) -> dict[str, int]:
    """Visible parts per partition (what a Hive-style reader lists), for ``qcflow status``."""
    counts: dict[str, int] = {}
    start_after = f"{room.output}dt={since.date().isoformat()}" if since else None
    for info in store.list(room.output, start_after=start_after):
        rest = info.key[len(room.output) :].split("/")
        if len(rest) != 3 or not info.key.endswith(_SUFFIXES) or rest[2].startswith(("_", ".")):
            continue
        name = f"{rest[0]}/{rest[1]}"
        counts[name] = counts.get(name, 0) + 1
    return counts


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


__all__ = [
    "RESULTS",
    "REVIEWS",
    "STAGED_DIR",
    "CompactStats",
    "Partition",
    "Room",
    "closed_partitions",
    "compact_partition",
    "compact_range",
    "files_per_hour",
    "finish",
    "load",
    "output_key",
    "plan",
    "staged_key",
]
