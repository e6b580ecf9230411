"""The exactly-once writer on both store adapters: commit records, races, rolls, recovery."""

from __future__ import annotations

import gzip
import json
import threading
from typing import Any

import pytest

from qcflow import journal, layout
from qcflow.errors import RetryableError, TransportError
from qcflow.harvest import output as out
from qcflow.harvest.output import CommitLog, ResultWriter, Spill, commit_spill
from qcflow.store import ObjectStore

from tests.harvest.conftest import Crash, FaultyStore, twin

P = "dt=2026-11-20/hour=07"


def line(result: str, n: int = 0) -> bytes:
    return (json.dumps({"task_id": result.split("|")[0], "call_id": result.split("|")[1], "n": n}) + "\n").encode()


def spill_of(results: list[str], tmp_path: Any) -> Spill:
    spill = Spill(P, str(tmp_path))
    for result in results:
        spill.add(result, line(result))
    return spill


def stored_lines(store: ObjectStore, prefix: str = "results/") -> list[dict[str, Any]]:
    found = []
    for info in store.list(prefix):
        body = store.get(info.key).body
        body = gzip.decompress(body) if info.key.endswith(".gz") else body
        found += [json.loads(x) for x in body.splitlines()]
    return found


def commit_records(store: ObjectStore) -> list[dict[str, Any]]:
    return [json.loads(store.get(info.key).body) for info in store.list(layout.HARVEST_COMMITS)]


def ids(n: int, start: int = 0) -> list[str]:
    return [f"T{i:05d}|job-{i}" for i in range(start, start + n)]


def test_commit_writes_part_and_record_and_drops_what_is_committed(store: ObjectStore, tmp_path: Any) -> None:
    first = commit_spill(store, spill_of(ids(5), tmp_path), CommitLog(P), run_id="run-a", gzip=False, grace_seconds=600)
    assert first is not None and first.key == f"results/{P}/part-0000000001-run-a.jsonl" and first.records == 5
    # another process (cold log) offers 3 old and 4 new results
    skipped: list[int] = []
    second = commit_spill(twin(store), spill_of(ids(7, start=2), tmp_path), CommitLog(P), run_id="run-b", gzip=False,
                          grace_seconds=600, on_duplicates=skipped.append)
    assert second is not None and second.records == 4 and skipped == [3]
    lines = stored_lines(store)
    assert sorted(f"{x['task_id']}|{x['call_id']}" for x in lines) == ids(9)
    records = commit_records(store)
    assert [r["seq"] for r in records] == [1, 2] and records[1]["results"] == ids(4, start=5)
    assert records[1]["part"] == second.key and store.head(second.key).size == second.bytes
    assert list(store.list(layout.HARVEST_PENDING)) == [], "no intent left behind"
    # everything known: nothing to write, no empty part
    assert commit_spill(store, spill_of(ids(9), tmp_path), CommitLog(P), run_id="run-c", gzip=False, grace_seconds=600) is None
    assert len(list(store.list("results/"))) == 2


def test_racing_writers_write_each_result_once(store: ObjectStore, tmp_path: Any) -> None:
    """Six "processes" (own store objects, cold caches) commit overlapping sets at once."""
    barrier = threading.Barrier(6)
    errors: list[BaseException] = []

    def writer(i: int) -> None:
        try:
            mine = twin(store)
            spill = spill_of(ids(40, start=i * 20), tmp_path)  # each overlaps its neighbours by half
            barrier.wait()
            commit_spill(mine, spill, CommitLog(P), run_id=f"run-{i}", gzip=False, grace_seconds=600)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    written = [f"{x['task_id']}|{x['call_id']}" for x in stored_lines(store)]
    assert sorted(written) == ids(140), "the union, each once"
    records = commit_records(store)
    assert [r["seq"] for r in records] == list(range(1, len(records) + 1))
    assert sum(len(r["results"]) for r in records) == 140


def test_a_lost_race_rewrites_the_spill(store: ObjectStore, tmp_path: Any) -> None:
    """Another writer takes seq 2 between our read of the log and our create: we read what
    it committed, drop it from our spill, and take seq 3."""
    commit_spill(store, spill_of(ids(3), tmp_path), CommitLog(P), run_id="run-a", gzip=False, grace_seconds=600)

    def other_writer() -> None:
        commit_spill(twin(store), spill_of(ids(3, start=3), tmp_path), CommitLog(P), run_id="run-b", gzip=False, grace_seconds=600)

    racing = FaultyStore(store, lambda method, key: method == "create_if_absent" and key == out.commit_key(P, 2), other_writer)
    skipped: list[int] = []
    written = commit_spill(racing, spill_of(ids(2, start=5), tmp_path), CommitLog(P), run_id="run-c", gzip=False,
                           grace_seconds=600, on_duplicates=skipped.append)
    assert racing.fired
    assert written is not None and written.seq == 3 and written.records == 1 and skipped == [1]
    assert sorted(f"{x['task_id']}|{x['call_id']}" for x in stored_lines(store)) == ids(7)
    assert [r["run"] for r in commit_records(store)] == ["run-a", "run-b", "run-c"]
    assert list(store.list(layout.HARVEST_PENDING)) == [], "the intent of the lost seq is removed too"


def test_gzip_parts(store: ObjectStore, tmp_path: Any) -> None:
    written = commit_spill(store, spill_of(ids(50), tmp_path), CommitLog(P), run_id="run-a", gzip=True, grace_seconds=600)
    assert written is not None and written.key.endswith(".jsonl.gz")
    info = store.head(written.key)
    assert info.content_type == "application/gzip" and info.metadata.get("records") == "50"
    assert len(stored_lines(store)) == 50


@pytest.mark.anyio
async def test_writer_rolls_parts_and_commits_in_the_background(store: ObjectStore, tmp_path: Any) -> None:
    committed: list[list[str]] = []
    writer = ResultWriter(store, run_id="run-a", gzip=False, max_records=3, max_bytes=10**6, grace_seconds=600,
                          on_committed=lambda spill: committed.append(list(spill.ids)), spill_dir=str(tmp_path))
    await writer.ensure_loaded(P)
    for result in ids(10):
        writer.add(P, result, line(result))
    writer.add(P, ids(1)[0], line(ids(1)[0]))  # committed (or about to be) by the first part
    await writer.seal()
    await writer.close()
    assert writer.stats.written == 10 and len(writer.stats.files) == 4
    assert sorted(r for batch in committed for r in batch) == ids(10)
    assert len(stored_lines(store)) == 10, "a repeat of a result already committed is dropped at commit time"
    assert writer.stats.duplicates_skipped == 1
    assert not list(tmp_path.glob("qcflow-part-*")), "spill files are removed"


@pytest.mark.anyio
async def test_repeat_within_one_spill_is_skipped(store: ObjectStore, tmp_path: Any) -> None:
    writer = ResultWriter(store, run_id="run-a", gzip=False, max_records=100, max_bytes=10**6, grace_seconds=600, spill_dir=str(tmp_path))
    await writer.ensure_loaded(P)
    for result in ids(3):
        writer.add(P, result, line(result))
    assert all(writer.is_committed(P, result) for result in ids(3)), "in the open spill counts as taken"
    for result in ids(3):
        writer.add(P, result, line(result, n=1))  # a repeat offered anyway: the spill refuses it
    await writer.seal()
    assert writer.stats.written == 3 and writer.stats.duplicates_skipped == 3
    assert [x["n"] for x in stored_lines(store)] == [0, 0, 0]


def test_a_crash_before_the_upload_is_recovered_at_the_same_key(store: ObjectStore, tmp_path: Any) -> None:
    crashing = FaultyStore(store, lambda method, key: method == "open_writer" and key.startswith("results/"))
    with pytest.raises(Crash):
        commit_spill(crashing, spill_of(ids(4), tmp_path), CommitLog(P), run_id="run-a", gzip=False, grace_seconds=600)
    assert list(store.list("results/")) == []
    [intent] = out.pending_intents(store)
    assert (intent.partition, intent.seq, intent.run) == (P, 1, "run-a")
    assert intent.part == f"results/{P}/part-0000000001-run-a.jsonl"
    # the results are committed: a later writer does not write them again…
    assert commit_spill(store, spill_of(ids(4), tmp_path), CommitLog(P), run_id="run-b", gzip=False, grace_seconds=600) is None
    # …recovery does, at the key the record names
    results = out.intent_results(store, intent)
    assert results == ids(4)
    written = out.write_recovered(store, intent, [(r, line(r)) for r in results], gzip=False)
    assert written.key == intent.part and len(stored_lines(store)) == 4
    assert out.pending_intents(store) == []


def test_an_intent_whose_race_was_lost_or_whose_part_exists_needs_nothing(store: ObjectStore, tmp_path: Any) -> None:
    commit_spill(store, spill_of(ids(2), tmp_path), CommitLog(P), run_id="run-a", gzip=False, grace_seconds=600)
    lost = out.Intent(out.pending_key(P, 1, "run-b"), P, 1, "run-b", out.part_key(P, 1, "run-b", False), 0.0)
    assert out.intent_results(store, lost) is None, "record 1 belongs to run-a"
    done = out.Intent(out.pending_key(P, 1, "run-a"), P, 1, "run-a", out.part_key(P, 1, "run-a", False), 0.0)
    assert out.intent_results(store, done) is None, "its part exists"


def test_a_writer_past_the_grace_period_leaves_the_part_to_recovery(store: ObjectStore, tmp_path: Any) -> None:
    with pytest.raises(RetryableError, match="grace"):
        commit_spill(store, spill_of(ids(2), tmp_path), CommitLog(P), run_id="run-a", gzip=False, grace_seconds=0.0)
    assert list(store.list("results/")) == [], "nothing visible: recovery owns it now"
    assert len(out.pending_intents(store)) == 1 and len(commit_records(store)) == 1


class _LosesFirstCommitAnswer:
    """A store whose first commit-record create lands but whose answer is lost (a timeout after the PUT)."""

    def __init__(self, inner: ObjectStore) -> None:
        self.inner = inner
        self.url = inner.url
        self.lost = 0

    def create_if_absent(self, key: str, data: bytes, **kw: Any) -> bool:
        created = self.inner.create_if_absent(key, data, **kw)
        if key.startswith(layout.HARVEST_COMMITS) and not self.lost:
            self.lost += 1
            raise TransportError(f"answer to the create of {key} lost (created: {created})")
        return created

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_a_commit_record_whose_answer_was_lost_is_the_writers_own(
    store: ObjectStore, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The retried create of a commit record (same token) is recognised as the writer's own: its part is
    written. Taken for someone else's, the writer would drop its results as "committed" by a record
    whose part never comes, and they would be lost for good."""
    monkeypatch.setattr(journal.time, "sleep", lambda seconds: None)  # the retry's pause
    lossy = _LosesFirstCommitAnswer(store)
    written = commit_spill(lossy, spill_of(ids(3), tmp_path), CommitLog(P), run_id="run-a", gzip=False,
                           grace_seconds=600)
    assert lossy.lost == 1
    assert written is not None and written.records == 3
    assert sorted(f"{x['task_id']}|{x['call_id']}" for x in stored_lines(store)) == ids(3)
    assert [r["results"] for r in commit_records(store)] == [ids(3)]
    assert list(store.list(layout.HARVEST_PENDING)) == []
