"""The review feed against the sandbox's people, on both store adapters: each review lands once.

Time is the sandbox's fake clock (``env.clock``), shared by the harvest's ``now``. Reviews are
saved directly in the sandbox's ``ReviewBook`` (at chosen times) or through ``ScaState.review``
(now), on tasks uploaded months before: windows are by review time, not upload time.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import time
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from qcflow import journal, layout
from qcflow.harvest import HarvestReport, harvest_task_ids, run_harvest
from qcflow.harvest import state as st
from qcflow.store import ObjectStore

from tests.harvest.conftest import (
    NOW,
    Crash,
    Env,
    RequestLog,
    far_deadline,
    harvest_settings,
    make_sca,
    sandbox_env,
    twin,
)
from tests.harvest.test_run import dead_after

pytestmark = pytest.mark.anyio
SHANGHAI = ZoneInfo("Asia/Shanghai")
MONTHS_AGO = NOW - timedelta(days=120)
SETTINGS = dict(harvest_start_seconds=4 * 3600)


async def harvest(env: Env, store: ObjectStore, settings: Any = None, **kw: Any) -> HarvestReport:
    return await run_harvest(
        settings or harvest_settings(**SETTINGS),
        env.sca,
        store,
        deadline=kw.pop("deadline", far_deadline()),
        now=env.now,
        **kw,
    )


def review_backlog(env: Env, count: int, start: datetime, end: datetime, *, offset: int = 0) -> list[Any]:
    """Review ``count`` of the pre-loaded tasks (from ``offset``), saved evenly over ``[start, end)``."""
    state = env.state
    tasks = state._tasks[offset : offset + count]  # noqa: SLF001 - the sandbox's own task list
    lo = int(start.timestamp() * 1000)
    span = int((end - start).total_seconds() * 1000)
    with state._lock:  # noqa: SLF001
        for i, task in enumerate(tasks):
            state.reviews.review(task, lo + span * i // count, state._machine_score(task))  # noqa: SLF001
        state._generation += 1  # noqa: SLF001
    return tasks


def read_reviews(store: ObjectStore) -> list[dict[str, Any]]:
    lines: list[dict[str, Any]] = []
    for info in store.list(layout.REVIEWS):
        body = store.get(info.key).body
        body = gzip.decompress(body) if info.key.endswith(".gz") else body
        for raw in body.splitlines():
            line = json.loads(raw)
            line["_key"] = info.key
            lines.append(line)
    return lines


def assert_reviews_once(lines: list[dict[str, Any]]) -> None:
    keys = [(line["task_id"], line["call_id"], line["review_time"]) for line in lines]
    assert len(keys) == len(set(keys)), f"{len(keys) - len(set(keys))} review(s) written more than once"
    for line in lines:
        assert line["review_time"] and "review_type" in line and line["review_status"] in (1, 3, 4, 5)
        review = datetime.fromisoformat(line["review_time"]).astimezone(SHANGHAI)
        assert f"/dt={review:%Y-%m-%d}/hour={review:%H}/" in line["_key"], "partitioned by review hour"


def saved_reviews(env: Env) -> int:
    return env.state.reviews.saved


async def test_overlapping_passes_write_each_review_once_even_of_tasks_uploaded_months_ago(store: ObjectStore) -> None:
    with sandbox_env() as env:
        env.preload(600, MONTHS_AGO, MONTHS_AGO + timedelta(hours=1))
        review_backlog(env, 400, NOW - timedelta(hours=3), NOW - timedelta(minutes=10))
        first = await harvest(env, store)
        # 50 reviewed again and 50 reviewed for the first time, then passes that overlap
        review_backlog(env, 100, NOW - timedelta(minutes=4), NOW - timedelta(minutes=3), offset=350)
        env.clock.advance(600)
        second = await harvest(env, twin(store))
        env.clock.advance(600)
        third = await harvest(env, twin(store))
        final = {t.task_id: env.state.reviews.state(t).score for t in env.state._tasks[:450]}  # noqa: SLF001
    assert first.written == 0, "no result was uploaded in the results' windows"
    assert first.reviews["reviews_written"] == 400 and second.reviews["reviews_written"] == 100
    assert third.reviews["reviews_written"] == 0 and third.reviews["reviews_duplicates_skipped"] > 0
    lines = read_reviews(store)
    assert len(lines) == 500 == saved_reviews_count(first, second, third)
    assert_reviews_once(lines)
    assert all(line["upload_time"] < "2026-08-01" for line in lines), "tasks uploaded months before their review"
    latest: dict[str, dict[str, Any]] = {}
    for line in lines:
        if line["task_id"] not in latest or line["review_time"] > latest[line["task_id"]]["review_time"]:
            latest[line["task_id"]] = line
    assert {task: line["score"] for task, line in latest.items()} == final, "the latest row's score is the console's"
    reread = [line for line in lines if len(line["review_history"]) == 2]
    assert len(reread) == 50 and all(
        line["review_history"][1]["old_score"] == line["review_history"][0]["score"] for line in reread
    )
    checkpoint = st.read_checkpoint(store, layout.REVIEW_CHECKPOINT)
    assert checkpoint is not None and checkpoint.through > NOW
    assert third.reviews["review_checkpoint"] == checkpoint.through.isoformat()


def saved_reviews_count(*reports: HarvestReport) -> int:
    return sum(report.reviews["reviews_written"] for report in reports)


async def test_a_crash_between_commit_and_review_checkpoint_then_a_rerun(store: ObjectStore) -> None:
    with sandbox_env() as env:
        env.preload(800, MONTHS_AGO, MONTHS_AGO + timedelta(hours=1))
        review_backlog(env, 800, NOW - timedelta(hours=5), NOW - timedelta(minutes=10))  # from the first window
        settings = harvest_settings(**SETTINGS)
        pin = layout.REVIEW_CHECKPOINT + journal.seq_name(1)  # the first pass's start, saved before reading
        crashing = dead_after(
            twin(store),
            lambda method, key: (
                method == "create_if_absent" and key.startswith(layout.REVIEW_CHECKPOINT) and key != pin
            ),
        )
        with pytest.raises(Crash):
            await harvest(env, crashing, settings)
        assert read_reviews(store), "the first window's reviews were committed before the crash"
        checkpoint = st.read_checkpoint(store, layout.REVIEW_CHECKPOINT)
        assert checkpoint is not None and checkpoint.through == NOW - timedelta(hours=4), "only the start, kept"
        env.clock.advance(settings.harvest.lease_seconds)
        rerun = await harvest(env, twin(store), settings)
    lines = read_reviews(store)
    assert len(lines) == 800 and rerun.reviews["reviews_duplicates_skipped"] > 0
    assert_reviews_once(lines)


async def test_a_first_pass_cut_before_its_first_review_window_leaves_its_start_to_the_next(store: ObjectStore) -> None:
    """Like the harvest's checkpoint: with none yet, a first pass cut before it finished a
    review window keeps its start, else the next pass would start later by the gap between
    the two and never read the reviews saved in that gap (no lookback here)."""
    with sandbox_env() as env:
        env.preload(100, MONTHS_AGO, MONTHS_AGO + timedelta(hours=1))
        review_backlog(env, 100, NOW - timedelta(hours=4), NOW - timedelta(minutes=10))  # the first at NOW - 4 h
        settings = harvest_settings(**SETTINGS, harvest_lookback_seconds=0)
        first = await harvest(env, store, settings, deadline=time.monotonic() - 1)
        assert first.reviews["reviews_windows"] == 0 and first.reviews["reviews_stopped_by_deadline"]
        env.clock.advance(600)  # the next timer pass
        second = await harvest(env, store, settings)
    assert first.reviews["review_checkpoint"] == (NOW - timedelta(hours=4)).isoformat()
    assert second.reviews["reviews_written"] == 100 == len(read_reviews(store))


async def test_two_concurrent_runs_and_a_review_backfill_write_each_review_once(store: ObjectStore) -> None:
    with sandbox_env() as env:
        env.preload(1_500, MONTHS_AGO, MONTHS_AGO + timedelta(hours=2))
        review_backlog(env, 1_500, NOW - timedelta(hours=3), NOW - timedelta(minutes=10))
        settings = harvest_settings(**SETTINGS)
        one, two, backfill = await asyncio.gather(
            harvest(env, twin(store), settings),
            harvest(env, twin(store), settings),
            harvest(env, twin(store), settings, reviews=True, since=NOW - timedelta(hours=4), until=NOW),
        )
        checkpoint = st.read_checkpoint(store, layout.REVIEW_CHECKPOINT)
        env.clock.advance(60)
        again = await harvest(env, twin(store), settings, reviews=True, since=NOW - timedelta(hours=4), until=NOW)
    assert sorted([one.lease_busy, two.lease_busy]) == [False, True] and not backfill.lease_busy
    assert backfill.mode == "reviews" and backfill.written == 0 and backfill.calls > 0
    written = [r.reviews.get("reviews_written", 0) for r in (one, two, backfill)]
    assert sum(written) == 1_500 and again.reviews["reviews_written"] == 0
    assert st.read_checkpoint(store, layout.REVIEW_CHECKPOINT) == checkpoint, "a backfill never moves the checkpoint"
    lines = read_reviews(store)
    assert len(lines) == 1_500
    assert_reviews_once(lines)


async def test_a_callback_racing_the_timer_writes_each_review_once(store: ObjectStore) -> None:
    with sandbox_env() as env:
        env.preload(600, MONTHS_AGO, MONTHS_AGO + timedelta(hours=1))
        tasks = review_backlog(env, 600, NOW - timedelta(hours=2), NOW - timedelta(minutes=10))
        settings = harvest_settings(**SETTINGS)
        task_ids = [t.task_id for t in tasks]

        async def callbacks() -> list[HarvestReport]:
            return [
                await harvest_task_ids(
                    settings, env.sca, twin(store), task_ids[i : i + 100], deadline=far_deadline(), now=env.now
                )
                for i in range(0, 600, 100)
            ]

        early = await harvest_task_ids(
            settings, env.sca, twin(store), task_ids[:50], deadline=far_deadline(), now=env.now
        )
        timer, hints = await asyncio.gather(harvest(env, twin(store), settings), callbacks())
        hints.append(early)
        env.clock.advance(300)
        later = await harvest(env, twin(store), settings)
    from_hints = sum(h.reviews["reviews_written"] for h in hints)
    assert from_hints > 0, "the callback path writes review rows"
    assert timer.reviews["reviews_written"] + from_hints == 600 and later.reviews["reviews_written"] == 0
    lines = read_reviews(store)
    assert len(lines) == 600
    assert_reviews_once(lines)


class _ReviewWhilePaging(httpx.AsyncBaseTransport):
    """On the first review-window page 2, the agent appeals ``task_id`` and it is reviewed
    again (the sandbox's people act while the pass pages)."""

    def __init__(self, env: Env, task_id: str) -> None:
        self.inner = RequestLog()
        self.env, self.task_id, self.fired = env, task_id, False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        query = json.loads(request.url.params.get("JsonStr") or "{}")
        if not self.fired and query.get("reviewStartTime") and query.get("pageNumber") == 2:
            self.fired = True
            self.env.state.review(self.task_id, appeal=True, upheld=True)
        return await self.inner.handle_async_request(request)


async def test_reviewed_then_appealed_and_reviewed_again_while_paging_gives_two_rows(store: ObjectStore) -> None:
    with sandbox_env() as env:
        env.preload(300, MONTHS_AGO, MONTHS_AGO + timedelta(hours=1))
        tasks = review_backlog(env, 300, NOW - timedelta(minutes=50), NOW - timedelta(minutes=10))
        first = tasks[0]  # the earliest review: page 1 of its window
        paging = _ReviewWhilePaging(env, first.task_id)
        env_paging = Env(env.server, env.clock, make_sca(env.server, env.clock, paging), env.log)
        one = await harvest(env_paging, store)
        assert paging.fired
        env.clock.advance(600)
        two = await harvest(env, twin(store))
    lines = read_reviews(store)
    assert_reviews_once(lines)
    assert len(lines) == 301 and one.reviews["reviews_written"] == 300 and two.reviews["reviews_written"] == 1
    rows = sorted((line for line in lines if line["task_id"] == first.task_id), key=lambda line: line["review_time"])
    assert [row["review_status"] for row in rows] == [1, 4] and rows[1]["review_history"][-1]["complain_result"] == 1
    assert rows[1]["review_history"][-1]["old_score"] == rows[0]["score"]


async def test_more_than_10000_reviews_in_one_hour_land_all_once(store: ObjectStore) -> None:
    with sandbox_env() as env:
        env.preload(10_500, MONTHS_AGO, MONTHS_AGO + timedelta(hours=5))
        review_backlog(env, 10_500, NOW - timedelta(hours=2), NOW - timedelta(hours=1))
        report = await harvest(env, store)
        reads = [q for q in env.log.queries if q.get("reviewStartTime")]
    assert report.reviews["reviews_written"] == 10_500
    assert max(q.get("pageNumber", 1) * q.get("pageSize", 10) for q in reads) <= 10_000 or any(
        q.get("lastDataId") for q in reads
    )
    lines = read_reviews(store)
    assert len(lines) == 10_500
    assert_reviews_once(lines)


async def test_the_feed_is_off_when_told(store: ObjectStore) -> None:
    with sandbox_env() as env:
        env.preload(50, MONTHS_AGO, MONTHS_AGO + timedelta(hours=1))
        review_backlog(env, 50, NOW - timedelta(hours=2), NOW - timedelta(minutes=10))
        report = await harvest(env, store, harvest_settings(harvest_reviews=False, **SETTINGS))
        reads = [q for q in env.log.queries if q.get("reviewStartTime")]
    assert report.reviews == {} and reads == [] and read_reviews(store) == []
