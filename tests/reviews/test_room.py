"""The writer's rooms: reviews and results never share a commit sequence, and the reader
selects windows by review time when told to."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from qcflow import layout
from qcflow.harvest.output import REVIEWS_ROOM, CommitLog, commit_spill
from qcflow.harvest.reader import Window, WindowReader
from qcflow.store import ObjectStore
from tests.harvest.test_output import P, commit_records, ids, spill_of, stored_lines


def test_a_room_keeps_its_own_parts_and_commit_records(store: ObjectStore, tmp_path) -> None:
    results = ids(3)
    assert commit_spill(store, spill_of(results, tmp_path), CommitLog(P), run_id="r", gzip=False, grace_seconds=600)
    # the same identities again, in the reviews' room: written there (its own sequence), not skipped
    written = commit_spill(store, spill_of(results, tmp_path), CommitLog(P, REVIEWS_ROOM), run_id="v", gzip=False, grace_seconds=600)
    assert written is not None and written.key.startswith(f"{layout.REVIEWS}{P}/part-0000000001-v")
    assert len(stored_lines(store, "results/")) == 3 and len(stored_lines(store, "reviews/")) == 3
    assert [info.key for info in store.list(layout.REVIEW_COMMITS)] == [f"{layout.REVIEW_COMMITS}{P}/0000000001.json"]
    assert len(commit_records(store)) == 1
    # and a repeat in the reviews' room is dropped by its commit records
    assert commit_spill(store, spill_of(results, tmp_path), CommitLog(P, REVIEWS_ROOM), run_id="w", gzip=False, grace_seconds=600) is None


class _Capture:
    def __init__(self) -> None:
        self.queries = []

    async def get_result_page(self, query, *, deadline=None, limiter=None):
        self.queries.append(query.to_wire())

        class Page:
            count = 0
            items: list = []

        return Page()


@pytest.mark.anyio
async def test_the_reader_selects_by_review_time_when_told() -> None:
    window = Window(datetime(2026, 11, 20, 0, tzinfo=timezone.utc), datetime(2026, 11, 20, 1, tzinfo=timezone.utc))
    for by, present, absent in (("review", "reviewStartTime", "startTime"), ("upload", "startTime", "reviewStartTime")):
        sca = _Capture()
        reader = WindowReader(sca, None, zone="Asia/Shanghai", required_fields="score", by=by)
        assert [page async for page in reader.pages(window, deadline=float("inf"))] == []
        (query,) = sca.queries
        assert query[present] == "2026-11-20 08:00:00" and absent not in query
