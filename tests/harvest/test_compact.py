"""Compaction on both store adapters: the reader invariant at every step, crashes, races.

Every mutating call the compactor makes goes through ``Watched``, which checks after it (and
before a delete) what readers would see:

- a Hive-style reader (``results/dt=*/hour=*/*.jsonl*``, ``_``/``.`` names skipped) sees each
  result at most once;
- a fresh reader (the visible parts and the hidden ``_compact/`` copies, one row per result,
  as ``qcflow report`` and the latest view read) sees every committed result: nothing is ever
  missing, so nothing was deleted before its replacement was complete.
"""

from __future__ import annotations

import gzip
import json
from collections import Counter
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from qcflow import journal, layout
from qcflow.harvest import compact as cp
from qcflow.harvest.output import (
    CommitLog,
    Room,
    Spill,
    commit_spill,
    intent_results,
    pending_intents,
    write_recovered,
)
from qcflow.store import ObjectStore

from tests.harvest.conftest import Crash, twin

ROOM = cp.RESULTS


def part_of(index: int) -> str:
    day = date(2026, 10, 1) + timedelta(days=index // 24)
    return f"dt={day.isoformat()}/hour={index % 24:02d}"


def line(result: str) -> bytes:
    task, call = result.split("|")
    return (json.dumps({"task_id": task, "call_id": call, "score": 90}) + "\n").encode()


def write(
    store: ObjectStore,
    partition: str,
    results: list[str],
    tmp_path: Any,
    *,
    gzip_: bool = False,
    run: str = "w",
    room: Room = ROOM,
) -> None:
    spill = Spill(partition, str(tmp_path))
    for result in results:
        spill.add(result, line(result))
    log_ = CommitLog(partition, room)
    assert commit_spill(store, spill, log_, run_id=run, gzip=gzip_, grace_seconds=600) is not None


def ids(n: int, start: int = 0) -> list[str]:
    return [f"T{i:05d}|job-{i}" for i in range(start, start + n)]


def lines_in(store: ObjectStore, key: str) -> list[str]:
    body = store.get(key).body
    body = gzip.decompress(body) if key.endswith(".gz") else body
    return [f"{x['task_id']}|{x['call_id']}" for x in map(json.loads, body.splitlines())]


def seen(store: ObjectStore, partition: str, *, hidden: bool, room: Room = ROOM) -> Counter[str]:
    """What a reader of one partition sees: visible parts only, or with ``_compact/`` too."""
    prefix = f"{room.output}{partition}/"
    counts: Counter[str] = Counter()
    for info in store.list(prefix):
        rest = info.key[len(prefix) :]
        if not info.key.endswith((".jsonl", ".jsonl.gz")):
            continue
        if "/" in rest and not (hidden and rest.startswith(f"{cp.STAGED_DIR}/")):
            continue
        counts.update(lines_in(store, info.key))
    return counts


class Watched:
    """The store as the compactor sees it: ``check()`` runs after every mutation (and before
    every delete); the ``crash_at``-th mutation raises ``Crash`` instead; ``action_at`` runs
    ``action`` (another process slipping in) before the mutation of that number."""

    def __init__(
        self,
        inner: ObjectStore,
        check: Callable[[], None],
        crash_at: int | None = None,
        action_at: int | None = None,
        action: Callable[[], None] | None = None,
    ) -> None:
        self.inner, self.check, self.crash_at, self.action_at, self.action = inner, check, crash_at, action_at, action
        self.steps = 0
        self.url = inner.url

    def _step(self, what: str) -> None:
        self.steps += 1
        if self.steps == self.action_at and self.action is not None:
            self.action()
            self.check()
        if self.steps == self.crash_at:
            raise Crash(f"crash at step {self.steps}: {what}")

    def get(self, key: str) -> Any:
        return self.inner.get(key)

    def head(self, key: str) -> Any:
        return self.inner.head(key)

    def list(self, prefix: str = "", **kw: Any) -> Any:
        return self.inner.list(prefix, **kw)

    def put(self, key: str, data: bytes, **kw: Any) -> Any:
        self._step(f"put {key}")
        result = self.inner.put(key, data, **kw)
        self.check()
        return result

    def create_if_absent(self, key: str, data: bytes, **kw: Any) -> bool:
        self._step(f"create {key}")
        result = self.inner.create_if_absent(key, data, **kw)
        self.check()
        return result

    def delete(self, key: str) -> None:
        self._step(f"delete {key}")
        self.check()
        self.inner.delete(key)
        self.check()

    def open_writer(self, key: str, **kw: Any) -> Any:
        self._step(f"write {key}")
        return _Writer(self.inner.open_writer(key, **kw), self.check)

    def signed_get_url(self, key: str, expires: timedelta) -> str:
        return self.inner.signed_get_url(key, expires)


class _Writer:
    def __init__(self, inner: Any, check: Callable[[], None]) -> None:
        self.inner, self.check_ = inner, check

    def write(self, data: bytes) -> None:
        self.inner.write(data)

    def abort(self) -> None:
        self.inner.abort()

    def __enter__(self) -> _Writer:
        self.inner.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.inner.__exit__(*exc)
        self.check_()


def invariant(
    store: ObjectStore, partition: str, expected: set[str], late: set[str] = frozenset(), room: Room = ROOM
) -> Callable[[], None]:  # type: ignore[assignment]
    def check() -> None:
        visible = seen(store, partition, hidden=False, room=room)
        doubled = [r for r, n in visible.items() if n > 1]
        assert not doubled, f"a Hive reader sees {doubled[:3]} twice"
        fresh = set(seen(store, partition, hidden=True, room=room))
        assert expected <= fresh, f"a fresh reader misses {sorted(expected - fresh)[:3]}"
        assert set(visible) <= expected | late

    return check


def compact(
    store: ObjectStore,
    partition: str,
    *,
    gzip_: bool = False,
    max_bytes: int = 1 << 20,
    run: str = "c1",
    room: Room = ROOM,
) -> cp.CompactStats:
    return cp.compact_partition(store, room, partition, run_id=run, gzip=gzip_, max_bytes=max_bytes)


def settled(store: ObjectStore, partition: str, expected: set[str], *, files: int = 1, room: Room = ROOM) -> None:
    visible = seen(store, partition, hidden=False, room=room)
    assert set(visible) == expected and max(visible.values()) == 1, "exactly once after compaction"
    assert cp.files_per_hour(store, room)[partition] == files
    assert not [i for i in store.list(f"{room.output}{partition}/{cp.STAGED_DIR}/")], "no staged copy left"
    assert cp.load(store, room, partition).unfinished() == []


def fill(
    store: ObjectStore, partition: str, tmp_path: Any, parts: int = 5, per: int = 3, room: Room = ROOM
) -> set[str]:
    for i in range(parts):
        write(store, partition, ids(per, start=i * per), tmp_path, gzip_=i % 2 == 1, run=f"w{i}", room=room)
    return set(ids(parts * per))


# ------------------------------------------------------------------------------ tests


def test_many_parts_become_one_and_readers_never_double(store: ObjectStore, tmp_path: Any) -> None:
    p = part_of(0)
    expected = fill(store, p, tmp_path)
    assert cp.files_per_hour(store, ROOM)[p] == 5
    watched = Watched(store, invariant(store, p, expected))
    stats = compact(watched, p)  # type: ignore[arg-type]
    assert stats.compactions == 1 and stats.records == 15 and stats.parts_before == 5 and stats.parts_after == 1
    settled(store, p, expected)
    record = cp.load(store, ROOM, p).compactions()[0][1]
    assert record["covers"] == [1, 2, 3, 4, 5] and record["count"] == 15
    # the writer's log still knows every result (a late duplicate is still dropped)
    log_ = CommitLog(p)
    log_.refresh(store)
    assert log_.committed == expected and log_.last_seq == 6
    # nothing more to gain: a second pass changes nothing
    assert compact(store, p).compactions == 0


def test_the_size_limit_makes_more_outputs_and_gzip_outputs(store: ObjectStore, tmp_path: Any) -> None:
    p = part_of(1)
    expected = fill(store, p, tmp_path, parts=6, per=40)
    sizes = [i.size for i in store.list(f"results/{p}/")]
    stats = compact(store, p, gzip_=True, max_bytes=sum(sizes) // 2 + max(sizes))
    assert stats.compactions == 1
    settled(store, p, expected, files=2)
    assert all(i.key.endswith("-c0.jsonl.gz") or i.key.endswith("-c1.jsonl.gz") for i in store.list(f"results/{p}/"))


@pytest.mark.parametrize("room", [cp.RESULTS, cp.REVIEWS], ids=["results", "reviews"])
def test_a_crash_at_every_step_is_finished_by_the_next_pass(store: ObjectStore, tmp_path: Any, room: Room) -> None:
    probe = part_of(2)
    fill(store, probe, tmp_path, parts=3, room=room)
    counter = Watched(store, lambda: None)
    compact(counter, probe, room=room)  # type: ignore[arg-type]
    steps = counter.steps
    assert steps >= 7  # record, 1 staged, 3 deletes, 1 output, 1 staged delete
    for at in range(1, steps + 1):
        p = part_of(10 + at)
        expected = fill(store, p, tmp_path, parts=3, room=room)
        check = invariant(store, p, expected, room=room)
        with pytest.raises(Crash):
            compact(Watched(store, check, crash_at=at), p, room=room)  # type: ignore[arg-type]
        check()
        # the next pass (another process) finishes it, still checked at every step
        compact(Watched(twin(store), check), p, run="c2", room=room)  # type: ignore[arg-type]
        settled(store, p, expected, room=room)
        assert len(cp.load(store, room, p).compactions()) == 1, f"crash at {at}: one compaction, finished"
    other = cp.REVIEWS if room is cp.RESULTS else cp.RESULTS
    assert not list(store.list(other.output)), "a room's compaction never touches the other room"


def test_a_writer_committing_during_compaction_is_folded_next_time(store: ObjectStore, tmp_path: Any) -> None:
    p = part_of(3)
    expected = fill(store, p, tmp_path, parts=3)
    late = set(ids(4, start=100))
    for at in (1, 2, 3, 5, 7):
        q = part_of(40 + at)
        exp = fill(store, q, tmp_path, parts=3)
        every = exp | late
        check = invariant(store, q, exp, late)
        watched = Watched(
            store, check, action_at=at, action=lambda q=q: write(twin(store), q, sorted(late), tmp_path, run="late")
        )  # type: ignore[misc]
        compact(watched, q)  # type: ignore[arg-type]
        invariant(store, q, every)()
        compact(store, q, run="c2")
        settled(store, q, every)
    assert expected


def test_two_compactors_racing_fold_each_result_once(store: ObjectStore, tmp_path: Any) -> None:
    for at in range(1, 9):
        p = part_of(60 + at)
        expected = fill(store, p, tmp_path, parts=4)
        check = invariant(store, p, expected)
        other = Watched(twin(store), check)
        watched = Watched(store, check, action_at=at, action=lambda p=p, other=other: compact(other, p, run="c2"))  # type: ignore[misc]
        compact(watched, p)  # type: ignore[arg-type]
        compact(store, p, run="c3")
        settled(store, p, expected)


def test_a_part_still_pending_is_never_folded(store: ObjectStore, tmp_path: Any) -> None:
    p = part_of(4)
    expected = fill(store, p, tmp_path, parts=3)
    # a writer that died between its commit record and its upload: record + marker, no part
    spill = Spill(p, str(tmp_path))
    for result in ids(2, start=500):
        spill.add(result, line(result))
    seq = 4
    journal.write_once(
        store,
        f"{layout.HARVEST_PENDING}{p}/{seq:010d}-dead.json",
        {"partition": p, "seq": seq, "run": "dead", "part": f"results/{p}/part-{seq:010d}-dead.jsonl", "created_at": 0},
        token="x",
    )
    journal.write_once(
        store,
        f"{layout.HARVEST_COMMITS}{p}/{seq:010d}.json",
        {
            "v": 1,
            "partition": p,
            "seq": seq,
            "run": "dead",
            "part": f"results/{p}/part-{seq:010d}-dead.jsonl",
            "count": 2,
            "results": ids(2, start=500),
        },
        token="y",
    )
    # a writer that died after its upload, before dropping its marker: the part is there, the
    # marker too. Folding it would let recovery (which sees no part) write it a second time.
    write(store, p, ids(2, start=600), tmp_path, run="slow")
    journal.write_once(
        store,
        f"{layout.HARVEST_PENDING}{p}/{5:010d}-slow.json",
        {"partition": p, "seq": 5, "run": "slow", "part": f"results/{p}/part-{5:010d}-slow.jsonl", "created_at": 0},
        token="z",
    )
    stats = compact(store, p)
    assert stats.compactions == 1 and cp.load(store, ROOM, p).compactions()[0][1]["covers"] == [1, 2, 3]
    (slow,) = [i for i in pending_intents(store) if i.partition == p and i.run == "slow"]
    assert intent_results(store, slow) is None  # part exists: recovery only drops the marker
    store.delete(slow.key)
    expected |= set(ids(2, start=600))
    # recovery writes the lost part at its key; the next compaction folds it
    (intent,) = [i for i in pending_intents(store) if i.partition == p and i.run == "dead"]
    assert intent_results(store, intent) == ids(2, start=500)
    write_recovered(store, intent, [(r, line(r)) for r in ids(2, start=500)], gzip=False)
    assert compact(store, p, run="c2").compactions == 1
    settled(store, p, expected | set(ids(2, start=500)))


def test_closed_hours_wait_for_settle_lookback_and_unfinished_tasks(store: ObjectStore, tmp_path: Any) -> None:
    from qcflow.harvest.state import remember_unfinished

    zone = ZoneInfo("Asia/Shanghai")
    for name in ("dt=2026-11-20/hour=07", "dt=2026-11-20/hour=08", "dt=2026-11-20/hour=09"):
        write(store, name, ids(1, start=hash(name) % 1000), tmp_path)
    # 08:xx has a task still running
    upload = datetime(2026, 11, 20, 8, 30, tzinfo=zone).timestamp()
    remember_unfinished(store, "T1|job-1", first_seen=upload, upload_time=upload, owner="t")
    now = datetime(2026, 11, 20, 10, 30, tzinfo=zone).astimezone(
        timezone.utc
    )  # 09:xx ended 30 min ago: within settle + lookback
    closed = cp.closed_partitions(store, ROOM, zone=zone, now=now, settle_seconds=120, lookback_seconds=3600)
    assert closed == ["dt=2026-11-20/hour=07"]
    later = now + timedelta(hours=1)
    assert cp.closed_partitions(store, ROOM, zone=zone, now=later, settle_seconds=120, lookback_seconds=3600) == [
        "dt=2026-11-20/hour=07",
        "dt=2026-11-20/hour=09",
    ]
