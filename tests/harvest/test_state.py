"""Lease, checkpoint and unfinished/stuck markers on both store adapters."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import pytest

from qcflow import journal, layout
from qcflow.errors import RequestError
from qcflow.harvest import state as st
from qcflow.store import ObjectStore

from tests.harvest.conftest import twin

T0 = 1_800_000_000.0


def keys(store: ObjectStore, prefix: str) -> list[str]:
    return [info.key[len(prefix):] for info in store.list(prefix)]


def test_lease_is_exclusive_until_released(store: ObjectStore) -> None:
    first = st.acquire_lease(store, "run-a", now=T0, ttl=600)
    assert isinstance(first, st.Lease) and first.seq == 1
    busy = st.acquire_lease(twin(store), "run-b", now=T0 + 10, ttl=600)
    assert isinstance(busy, st.LeaseBusy) and busy.owner == "run-a" and busy.expires_at == T0 + 600
    st.release_lease(store, first)
    second = st.acquire_lease(twin(store), "run-b", now=T0 + 20, ttl=600)
    assert isinstance(second, st.Lease) and second.seq == 2 and second.owner == "run-b"


def test_a_crashed_runs_lease_expires(store: ObjectStore) -> None:
    crashed = st.acquire_lease(store, "run-a", now=T0, ttl=300)
    assert isinstance(crashed, st.Lease)
    assert isinstance(st.acquire_lease(store, "run-b", now=T0 + 299, ttl=300), st.LeaseBusy)
    taken = st.acquire_lease(store, "run-b", now=T0 + 300, ttl=300)
    assert isinstance(taken, st.Lease) and taken.seq == 2


def test_racing_runs_get_one_lease(store: ObjectStore) -> None:
    results: list[object] = []
    lock = threading.Lock()
    barrier = threading.Barrier(6)

    def contend(name: str) -> None:
        mine = twin(store)
        barrier.wait()
        got = st.acquire_lease(mine, name, now=T0, ttl=600)
        with lock:
            results.append(got)

    threads = [threading.Thread(target=contend, args=(f"run-{i}",)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    held = [r for r in results if isinstance(r, st.Lease)]
    assert len(results) == 6 and len(held) == 1, results


def test_old_leases_are_pruned(store: ObjectStore) -> None:
    for i in range(8):
        lease = st.acquire_lease(store, f"run-{i}", now=T0 + i, ttl=60)
        assert isinstance(lease, st.Lease) and lease.seq == i + 1
        st.release_lease(store, lease)
    names = keys(store, layout.HARVEST_LEASE)
    assert len(names) <= 2 * (st.KEEP + 1), names
    assert "000000000008.json" in names and "000000000001.json" not in names


def test_checkpoint_never_moves_backwards(store: ObjectStore) -> None:
    assert st.read_checkpoint(store) is None
    t1 = datetime(2026, 11, 20, 3, tzinfo=timezone.utc)
    assert st.advance_checkpoint(store, t1, owner="a", now=T0).through == t1
    assert st.advance_checkpoint(store, t1 - timedelta(hours=2), owner="b", now=T0).through == t1
    current = st.read_checkpoint(twin(store))
    assert current is not None and current.through == t1 and current.seq == 1
    for hour in range(4, 12):
        st.advance_checkpoint(store, t1.replace(hour=hour), owner="a", now=T0)
    current = st.read_checkpoint(store)
    assert current is not None and current.through == t1.replace(hour=11)
    assert len(keys(store, layout.HARVEST_CHECKPOINT)) <= st.KEEP + 1, "old checkpoints are pruned"


def test_unfinished_markers_round_trip_odd_ids(store: ObjectStore) -> None:
    results = ["A6BEC8D2-9A5B-4BE5-8432-4F635E3A0B11|job-1", "T|", "T|odd/id with space"]
    for i, result in enumerate(results):
        assert st.remember_unfinished(store, result, first_seen=T0 + i, upload_time=T0 - 60, owner="run-a")
        assert not st.remember_unfinished(store, result, first_seen=T0 + 99, upload_time=None, owner="run-b"), "the first one wins"
    assert sorted(st.unfinished_results(store)) == sorted(results)
    task = st.read_unfinished(store, results[2])
    assert task is not None and task.first_seen == T0 + 2 and task.upload_time == T0 - 60 and task.task_id == "T"
    st.mark_stuck(store, task, now=T0 + 10, owner="run-a")
    assert sorted(st.unfinished_results(store)) == sorted(results[:2])
    assert list(st.stuck_results(store)) == [results[2]]
    st.forget_unfinished(store, results[0])
    st.forget_unfinished(store, results[0])  # twice is fine
    assert list(st.unfinished_results(store)) == [results[1]]


def test_a_state_object_that_is_not_json_is_refused(store: ObjectStore) -> None:
    store.put(layout.HARVEST_CHECKPOINT + journal.seq_name(1), b"not json")
    with pytest.raises(RequestError, match="not a JSON object"):
        st.read_checkpoint(store)
