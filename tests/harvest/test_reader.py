"""The window reader against the real sandbox: every result once, within GetResult's rules.

A spy transport (an ``httpx`` transport around the real one) records every GetResult query
as it leaves and the moment its answer arrives, so the tests can check the paging rules
from the wire: pageSize, offsets, ``lastDataId`` and the order of chained pages.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from qcflow.acs.adaptive import AdaptiveRateLimiter
from qcflow.acs.client import AcsClient, RetryPolicy
from qcflow.config import load_settings
from qcflow.errors import AuthError, RetryableError
from qcflow.credentials import Credentials
from qcflow.harvest.fields import required_fields, required_fields_with_identity
from qcflow.harvest.reader import DeadlineReached, Window, WindowReader
from qcflow.models.sca import GetResultQuery, UploadAudioDataJson
from qcflow.tools.sandbox.options import PreloadOptions, QuotaOptions, SandboxOptions, FaultOptions
from qcflow.tools.sandbox.server import SandboxServer
from qcflow.sca import ScaClient
from tests.sandbox.conftest import CREDS, running_sandbox

pytestmark = pytest.mark.anyio

ZONE = ZoneInfo("Asia/Shanghai")
DAY = Window(datetime(2026, 11, 19, tzinfo=ZONE), datetime(2026, 11, 20, tzinfo=ZONE))
BUSY_HOUR = Window(datetime(2026, 11, 19, 10, tzinfo=ZONE), datetime(2026, 11, 19, 11, tzinfo=ZONE))
LIGHT = "taskId,status,createTimeLong"
NO_QUOTA = QuotaOptions(get_result=None, upload_audio_data=None)


@dataclass
class Sent:
    query: dict[str, Any]
    sent_at: int
    answered_at: int | None = None
    count: int | None = None
    success: bool | None = None


@dataclass
class SpyTransport(httpx.AsyncBaseTransport):
    """Records each GetResult query and when its answer came, in one global order."""

    inner: httpx.AsyncBaseTransport = field(default_factory=httpx.AsyncHTTPTransport)
    log: list[Sent] = field(default_factory=list)
    _tick: Iterator[int] = field(default_factory=itertools.count)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.headers.get("x-acs-action") != "GetResult":
            return await self.inner.handle_async_request(request)
        entry = Sent(json.loads(request.url.params.get("JsonStr", "{}")), next(self._tick))
        self.log.append(entry)
        response = await self.inner.handle_async_request(request)
        body = await response.aread()
        entry.answered_at = next(self._tick)
        with contextlib.suppress(ValueError):
            parsed = json.loads(body)
            entry.count, entry.success = parsed.get("Count"), parsed.get("Success")
        return httpx.Response(response.status_code, headers=response.headers, content=body)

    async def aclose(self) -> None:
        await self.inner.aclose()


RETRY = RetryPolicy(max_attempts=2, throttle_backoff_initial_seconds=0.2, throttle_backoff_max_seconds=1.0)


def sca_over(server: SandboxServer, spy: SpyTransport | None = None, creds: Credentials = CREDS) -> ScaClient:
    return ScaClient(AcsClient(server.url, "2019-01-15", lambda: creds, retry=RETRY, transport=spy))


def reader(sca: ScaClient, limiter: Any = None, *, fields: str = LIGHT, **options: Any) -> WindowReader:
    return WindowReader(sca, limiter or AdaptiveRateLimiter(1000.0), zone="Asia/Shanghai", required_fields=fields, **options)


async def read_all(source: WindowReader, window: Window, *, seconds: float = 60.0) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    async with contextlib.aclosing(source.pages(window, deadline=time.monotonic() + seconds)) as pages:
        async for page in pages:
            items.extend(page)
    return items


async def window_count(sca: ScaClient, window: Window) -> int:
    start, end = window.query_times(ZONE)
    page = await sca.get_result_page(GetResultQuery(start_time=start, end_time=end, page_size=1, required_fields="taskId"))
    assert page.count is not None
    return page.count


def assert_paging_rules(spy: SpyTransport, limit: int = 10_000) -> None:
    """No pageSize above 99, no page reaching past ``limit`` without the previous page's cursor,
    and a chained page only asked for once the page before it was answered."""
    assert spy.log, "no GetResult was sent"
    asked: dict[tuple[Any, ...], Sent] = {}
    for sent in spy.log:
        q = sent.query
        assert 1 <= q["pageSize"] <= 99
        asked[(q.get("startTime"), q.get("endTime"), q.get("taskId"), q.get("pageNumber", 1))] = sent
    for sent in spy.log:
        q = sent.query
        if q.get("pageNumber", 1) * q["pageSize"] > limit:
            assert q.get("lastDataId"), f"page {q['pageNumber']} jumped past record {limit}"
            previous = asked[(q.get("startTime"), q.get("endTime"), q.get("taskId"), q.get("pageNumber", 1) - 1)]
            assert previous.answered_at is not None and previous.answered_at < sent.sent_at
        else:
            assert not q.get("lastDataId"), "a cursor is sent only where the rules need one"
    assert all(sent.success for sent in spy.log), [sent.query for sent in spy.log if not sent.success][:3]


def assert_once(items: list[dict[str, Any]], expected: int) -> None:
    ids = Counter(item["TaskId"] for item in items)
    twice = [task_id for task_id, n in ids.items() if n > 1]
    assert not twice, f"{len(twice)} results yielded more than once"
    assert len(ids) == expected


# --------------------------------------------------------------------------- windows


def test_window_is_half_open_in_whole_seconds_and_queried_inclusively() -> None:
    utc = Window(datetime(2026, 11, 19, 2, 0, tzinfo=timezone.utc), datetime(2026, 11, 19, 3, 0, tzinfo=timezone.utc))
    assert utc.query_times(ZONE) == ("2026-11-19 10:00:00", "2026-11-19 10:59:59")
    assert utc.seconds == 3600
    parts = utc.split(7)
    assert parts[0].start == utc.start and parts[-1].end == utc.end and len(parts) == 7
    assert all(a.end == b.start for a, b in zip(parts, parts[1:]))
    assert Window(utc.start, utc.start + timedelta(seconds=2)).split(10) == [
        Window(utc.start, utc.start + timedelta(seconds=1)),
        Window(utc.start + timedelta(seconds=1), utc.start + timedelta(seconds=2)),
    ]
    with pytest.raises(ValueError):
        Window(datetime(2026, 11, 19), datetime(2026, 11, 20))  # naive
    with pytest.raises(ValueError):
        Window(utc.start, utc.start)
    with pytest.raises(ValueError):
        Window(utc.start, utc.end + timedelta(milliseconds=5))


def test_status_and_task_id_are_always_required() -> None:
    assert required_fields_with_identity("score, recording,score") == "status,taskId,score,recording"
    assert required_fields_with_identity("taskId,status,asrResult") == "status,taskId,asrResult"
    # a pass asks for what it is told, then what its writer needs and the request lacks
    harvest = load_settings({}, harvest_required_fields="score,recording").harvest
    assert required_fields(harvest) == "status,taskId,score,recording,createTimeLong,createTime"
    with pytest.raises(ValueError):
        reader(ScaClient(AcsClient("http://127.0.0.1:9", "2019-01-15", lambda: CREDS)), page_size=100)


# --------------------------------------------------------------------------- the big day


@pytest.fixture(scope="module", params=["strict", "loose"])
def busy_day(request: pytest.FixtureRequest) -> Iterator[SandboxServer]:
    """25,000 results in one day, 12,000 more of them in one hour (> 10,000 there)."""
    options = SandboxOptions(
        quotas=NO_QUOTA, loose_deep_paging=request.param == "loose", preload=PreloadOptions(count=13_000, start=DAY.start, end=DAY.end)
    )
    with running_sandbox(options) as server:
        server.app.sca.preload(12_000, BUSY_HOUR.start, BUSY_HOUR.end)
        yield server


async def test_a_busy_day_is_read_once_within_the_paging_rules(busy_day: SandboxServer) -> None:
    spy = SpyTransport()
    sca = sca_over(busy_day, spy)
    source = reader(sca)
    items = await read_all(source, DAY)
    total = await window_count(sca, DAY)
    busy = await window_count(sca, BUSY_HOUR)
    assert total == 25_000 and busy > 10_000
    assert_once(items, total)
    assert_paging_rules(spy)
    stats = source.stats
    assert stats.records == total and stats.splits >= 2  # the day, then the busy hour's part
    assert stats.calls == len([s for s in spy.log if s.query["pageSize"] == 99])
    assert stats.sequential_windows == 0
    # little is spent on probing: the first pages of the windows split, and nothing else
    assert stats.calls - stats.wasted == stats.pages == stats.planned_pages and stats.wasted == stats.splits <= 5
    assert all(item["Status"] == 1 and "TaskId" in item for item in items)


async def test_the_busy_hour_alone_and_hour_by_hour_give_the_same_counts(busy_day: SandboxServer) -> None:
    sca = sca_over(busy_day)
    source = reader(sca)
    hours = DAY.split(24)
    per_hour = [len(await read_all(source, hour)) for hour in hours]
    assert per_hour == [await window_count(sca, hour) for hour in hours]
    assert sum(per_hour) == 25_000


# --------------------------------------------------------------------------- one second, too full


@pytest.mark.parametrize("loose", [False, True], ids=["strict", "loose"])
async def test_a_second_too_full_to_split_is_read_in_sequence_past_record_10000(loose: bool) -> None:
    second = Window(BUSY_HOUR.start, BUSY_HOUR.start + timedelta(seconds=1))
    options = SandboxOptions(quotas=NO_QUOTA, loose_deep_paging=loose)
    with running_sandbox(options) as server:
        server.app.sca.preload(10_350, second.start, second.end)
        server.app.sca.preload(300, second.end, second.end + timedelta(minutes=5))  # neighbours, not in the window
        spy = SpyTransport()
        sca = sca_over(server, spy)
        source = reader(sca)
        items = await read_all(source, Window(second.start, second.end))
        assert_once(items, 10_350)
        assert_paging_rules(spy)
        stats = source.stats
        assert stats.sequential_windows == 1 and stats.splits == 0
        assert stats.sequential_pages == 105 - 101  # pages 102..105 of 99, each after the one before
        # and the minute around it: split down to that second, the rest in parallel
        spy.log.clear()
        around = Window(second.start - timedelta(seconds=30), second.end + timedelta(minutes=5))
        assert_once(await read_all(reader(sca), around), 10_650)
        assert_paging_rules(spy)


async def test_a_window_still_filling_up_is_reported_and_a_second_read_gets_all(caplog: pytest.LogCaptureFixture) -> None:
    hour = DAY.split(24)[9]
    with running_sandbox(SandboxOptions(quotas=NO_QUOTA, preload=PreloadOptions(count=300, start=hour.start, end=hour.end))) as server:
        source = reader(sca_over(server))
        got: list[dict[str, Any]] = []
        with caplog.at_level("WARNING", logger="qcflow.harvest.reader"):
            async with contextlib.aclosing(source.pages(hour, deadline=time.monotonic() + 30)) as pages:
                async for page in pages:
                    if not got:  # uploads land while the window is read (the settle delay was too short)
                        server.app.sca.preload(200, hour.start, hour.end)
                    got.extend(page)
        assert source.stats.count_changed >= 1
        assert any(getattr(r, "event", None) == "harvest_window_count_changed" for r in caplog.records)
        assert len({item["TaskId"] for item in got}) <= 500
        assert_once(await read_all(reader(sca_over(server)), hour), 500)


# --------------------------------------------------------------------------- the quota


def _quota_settings(quota: int, window: float) -> Any:
    return load_settings({}, get_result_quota=quota, get_result_quota_window_seconds=window)


async def test_the_limiter_alone_keeps_the_reader_under_the_sliding_window() -> None:
    # a scaled quota: 60 calls / 2 s (30/s); the reader needs ~100 calls
    quota = QuotaOptions(get_result=60, upload_audio_data=None, window_seconds=2.0)
    hour = DAY.split(24)[3]
    with running_sandbox(SandboxOptions(quotas=quota, preload=PreloadOptions(count=9_800, start=hour.start, end=hour.end))) as server:
        limiter = AdaptiveRateLimiter.from_settings(_quota_settings(60, 2.0).quotas)
        source = reader(sca_over(server), limiter)
        assert_once(await read_all(source, hour), 9_800)
        assert server.app.stats["GetResult Throttling.User"] == 0
        assert limiter.throttled == 0 and source.stats.throttled == 0


async def test_a_competing_client_slows_the_reader_down_but_does_not_make_it_fail() -> None:
    quota = QuotaOptions(get_result=60, upload_audio_data=None, window_seconds=2.0)
    hour = DAY.split(24)[5]
    with running_sandbox(SandboxOptions(quotas=quota, preload=PreloadOptions(count=9_000, start=hour.start, end=hour.end))) as server:
        limiter = AdaptiveRateLimiter.from_settings(_quota_settings(60, 2.0).quotas)
        source = reader(sca_over(server), limiter)
        other = sca_over(server)  # the same account: the same quota
        stop = asyncio.Event()

        async def competitor() -> None:
            query = GetResultQuery(page_size=1, required_fields="taskId")
            while not stop.is_set():
                with contextlib.suppress(RetryableError):
                    await other.acs.call("GetResult", {"JsonStr": query.to_json_str()}, deadline=time.monotonic() + 0.2)
                await asyncio.sleep(1 / 12)  # 12 of the 30 calls/s

        rival = asyncio.ensure_future(competitor())
        try:
            items = await read_all(source, hour)
        finally:
            stop.set()
            await rival
        assert_once(items, 9_000)
        assert source.stats.throttled >= 1 and limiter.decreases >= 1


# --------------------------------------------------------------------------- the time budget


async def test_a_deadline_stops_the_read_and_a_second_pass_gets_everything() -> None:
    hour = DAY.split(24)[7]
    faults = FaultOptions(latency_seconds=0.05, actions=frozenset({"GetResult"}))
    with running_sandbox(SandboxOptions(quotas=NO_QUOTA, faults=faults, preload=PreloadOptions(count=5_000, start=hour.start, end=hour.end))) as server:
        source = reader(sca_over(server), AdaptiveRateLimiter(20.0, burst=2), max_concurrency=4)
        got: list[dict[str, Any]] = []
        with pytest.raises(DeadlineReached) as info:
            async with contextlib.aclosing(source.pages(hour, deadline=time.monotonic() + 0.6)) as pages:
                async for page in pages:
                    got.extend(page)
        assert isinstance(info.value, RetryableError)
        assert 0 < len(got) < 5_000 and len({item["TaskId"] for item in got}) == len(got)
        await asyncio.sleep(0)
        assert not [t for t in asyncio.all_tasks() if "_fetch" in repr(t.get_coro())], "calls left running"
        rest = await read_all(reader(sca_over(server)), hour)
        assert_once(rest, 5_000)
        assert {item["TaskId"] for item in got} <= {item["TaskId"] for item in rest}


async def test_a_deadline_during_slow_answers_ends_the_read_cleanly() -> None:
    faults = FaultOptions(latency_seconds=1.0, actions=frozenset({"GetResult"}))
    with running_sandbox(SandboxOptions(quotas=NO_QUOTA, faults=faults, preload=PreloadOptions(count=500, start=DAY.start, end=DAY.end))) as server:
        source = reader(sca_over(server))
        with pytest.raises(DeadlineReached):
            await read_all(source, DAY, seconds=0.3)
        assert source.stats.records == 0
        await asyncio.sleep(0)
        assert not [t for t in asyncio.all_tasks() if "_fetch" in repr(t.get_coro())], "calls left running"


async def test_a_deadline_already_past_sends_nothing() -> None:
    with running_sandbox(SandboxOptions(quotas=NO_QUOTA)) as server:
        spy = SpyTransport()
        source = reader(sca_over(server, spy))
        with pytest.raises(DeadlineReached):
            await read_all(source, DAY, seconds=-1)
        with pytest.raises(DeadlineReached):
            async for _ in source.tasks(["x"], deadline=time.monotonic() - 1):
                pass
        assert spy.log == []


# --------------------------------------------------------------------------- by task id, statuses, errors


async def test_tasks_by_id_every_result_of_each_and_none_for_unknown() -> None:
    with running_sandbox(SandboxOptions(quotas=NO_QUOTA, task_seconds=3600)) as server:
        sca = sca_over(server)
        single = await sca.upload_audio_data(UploadAudioDataJson(call_list=[{"voice_file_url": "http://127.0.0.1/a.mkv", "call_uuid": "r-1", "call_id": "job-1"}]))
        batch = await sca.upload_audio_data(
            UploadAudioDataJson(call_list=[
                {"voice_file_url": "http://127.0.0.1/b.mkv", "call_uuid": "r-2", "call_id": "job-2"},
                {"voice_file_url": "http://127.0.0.1/c.mkv", "call_uuid": "r-3", "call_id": "job-3"},
            ])
        )
        source = reader(sca, fields="recording")
        deadline = time.monotonic() + 30
        found = [item async for item in source.tasks([single.task_id, batch.task_id, "NO-SUCH-TASK", single.task_id], deadline=deadline)]
        assert sorted(item["Recording"]["Id"] for item in found) == ["job-1", "job-2", "job-3"]  # each id asked once
        # still running (status 0) and reported as such: the reader never filters on status
        assert all(item["Status"] == 0 and item["TaskId"] for item in found)
        assert (await source.task(single.task_id, deadline=deadline))["Recording"]["Id"] == "job-1"
        assert await source.task("NO-SUCH-TASK", deadline=deadline) is None
        # and a window holding them yields them, running as they are
        now = datetime.now(timezone.utc).replace(microsecond=0)
        recent = await read_all(source, Window(now - timedelta(minutes=5), now + timedelta(minutes=5)))
        assert sorted(item["Recording"]["Id"] for item in recent) == ["job-1", "job-2", "job-3"]


async def test_a_permanent_error_ends_the_read_and_cancels_the_calls_in_flight() -> None:
    with running_sandbox(SandboxOptions(quotas=NO_QUOTA, preload=PreloadOptions(count=50, start=DAY.start, end=DAY.end))) as server:
        wrong = Credentials(CREDS.access_key_id, "not-the-secret")
        with pytest.raises(AuthError):
            await read_all(reader(sca_over(server, creds=wrong)), DAY)
        await asyncio.sleep(0)
        assert not [t for t in asyncio.all_tasks() if "_fetch" in repr(t.get_coro())]
