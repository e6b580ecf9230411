"""Review: attempts to break the harvest's guarantees (exactly once, nothing lost, no stall).

Everything runs against the real sandbox and the real store adapters (``tests/harvest``'s
fixtures). Hostile or odd service answers are produced by an httpx transport — the I/O seam
of ``AcsClient`` — that rewrites GetResult bodies on their way back; qcflow's own code runs
unchanged.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from qcflow import layout
from qcflow.harvest import HarvestReport, run_harvest
from qcflow.harvest import output as out
from qcflow.harvest import state as st
from qcflow.store import ObjectStore

from tests.harvest.conftest import (
    NOW,
    Crash,
    Env,
    FaultyStore,
    far_deadline,
    harvest_settings,
    make_sca,
    read_lines,
    sandbox_env,
    sandbox_options,
    twin,
)

pytestmark = pytest.mark.anyio
SHANGHAI = ZoneInfo("Asia/Shanghai")

Rewrite = Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]]


@dataclass
class HostileTransport(httpx.AsyncBaseTransport):
    """Rewrites GetResult answers: ``rewrite(query, body) -> body`` (``query`` is the request's
    ``JsonStr``). ``after(query, body)`` runs once the answer is built, before it is returned."""

    rewrite: Rewrite | None = None
    after: Callable[[dict[str, Any], dict[str, Any]], None] | None = None
    inner: httpx.AsyncBaseTransport = field(default_factory=httpx.AsyncHTTPTransport)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if request.headers.get("x-acs-action") != "GetResult":
            return response
        raw = await response.aread()
        await response.aclose()
        query = json.loads(request.url.params.get("JsonStr") or "{}")
        body = json.loads(raw)
        if self.rewrite is not None and body.get("Success"):
            body = self.rewrite(query, body)
        if self.after is not None and body.get("Success"):
            self.after(query, body)
        headers = [(k, v) for k, v in response.headers.items() if k.lower() not in ("content-length", "content-encoding", "transfer-encoding")]
        # ensure_ascii: lone surrogates travel as \\udXXX escapes, NaN as NaN (what a Java/Jackson service may emit)
        return httpx.Response(response.status_code, headers=headers, content=json.dumps(body).encode("ascii"))

    async def aclose(self) -> None:
        await self.inner.aclose()


def items_of(body: dict[str, Any]) -> list[dict[str, Any]]:
    data = body.get("Data") or {}
    return data.get("ResultInfo") or []


async def harvest(env: Env, store: ObjectStore, settings: Any = None, *, sca: Any = None, **kw: Any) -> HarvestReport:
    return await run_harvest(settings or harvest_settings(), sca or env.sca, store,
                             deadline=kw.pop("deadline", far_deadline()), now=env.now, **kw)


def task_counts(store: ObjectStore) -> Counter[str]:
    return Counter(line["task_id"] for line in read_lines(store))


# ============================================================================ poison pills
# One odd value in one GetResult item must not stop the whole harvest. Today the conversion
# raises inside ``_Pass.handle``; the window is never checkpointed and every later run meets
# the same item again and dies the same way: the harvest stalls for good.


def _poison(field_name: str, value: Any) -> Rewrite:
    """Give the first item of every window page ``field_name = value``."""

    def rewrite(query: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        items = items_of(body)
        if items and "startTime" in query:
            items[0][field_name] = value
        return body

    return rewrite


@pytest.mark.parametrize("value", ["1e20", "nan", "inf", "99999999999999999999"], ids=["1e20", "nan", "inf", "huge-int"])
async def test_a_hostile_create_time_long_does_not_stall_the_harvest(store: ObjectStore, value: str) -> None:
    with sandbox_env() as env:
        env.preload(200, NOW - timedelta(hours=2), NOW - timedelta(minutes=30))
        sca = make_sca(env.server, env.clock, HostileTransport(_poison("CreateTimeLong", value)))
        settings = harvest_settings(harvest_start_seconds=3 * 3600)
        try:
            first = await harvest(env, store, settings, sca=sca)
        finally:
            await sca.aclose()
    assert not first.stopped_by_deadline
    written = set(task_counts(store))
    remembered = {st.UnfinishedTask(r, 0, None).task_id for r in st.unfinished_results(store)}
    assert len(written) + len(remembered - written) == 200, "each result written, or remembered to be polled"
    assert len(written) >= 197


async def test_a_lone_surrogate_in_a_text_field_does_not_stall_the_harvest(store: ObjectStore) -> None:
    """A Java service that cuts a string inside a surrogate pair (an emoji in a reviewer's
    comment, say) sends ``"\\ud83d"``: valid JSON, but not encodable as UTF-8."""
    with sandbox_env() as env:
        env.preload(200, NOW - timedelta(hours=2), NOW - timedelta(minutes=30))
        sca = make_sca(env.server, env.clock, HostileTransport(_poison("Comments", "great call \ud83d")))
        settings = harvest_settings(harvest_start_seconds=3 * 3600)
        try:
            await harvest(env, store, settings, sca=sca)
        finally:
            await sca.aclose()
    assert len(read_lines(store)) == 200


async def test_every_line_is_strict_json_even_when_the_service_sends_nan(store: ObjectStore) -> None:
    """``json.loads`` accepts ``NaN``; the writer then emits ``NaN`` too, which is not JSON:
    Spark, BigQuery, jq and Go reject the whole part."""
    with sandbox_env() as env:
        env.preload(50, NOW - timedelta(hours=2), NOW - timedelta(minutes=30))
        sca = make_sca(env.server, env.clock, HostileTransport(_poison("Score", math.nan)))
        try:
            await harvest(env, store, harvest_settings(harvest_start_seconds=3 * 3600), sca=sca)
        finally:
            await sca.aclose()

    def refuse(constant: str) -> Any:
        raise ValueError(f"not JSON: {constant}")

    for info in store.list("results/"):
        for raw in store.get(info.key).body.splitlines():
            json.loads(raw, parse_constant=refuse)


# ============================================================================ results shifting during paging


async def test_a_result_present_all_along_is_not_lost_when_the_window_shifts_during_paging(store: ObjectStore) -> None:
    """198 results sit in 09:01-09:59. Right after page 1 of that hour's window is answered, a
    result with an earlier upload time becomes visible (indexing lag, a clock a little
    behind): offset paging now shifts by one, page 2 repeats one result and the last one of
    the window moves to a page 3 that was never planned (page 1's Count said 198). The reader
    notices a later page's different Count at best with a warning, and the window is
    checkpointed with a result that was in it all along never read. The default lookback (1 h)
    does not save it: this is a catch-up pass over several hours, and the next pass re-reads
    only the hour before the new checkpoint."""
    with sandbox_env() as env:
        hour = datetime(2026, 11, 20, 9, tzinfo=timezone.utc)
        env.preload(198, hour + timedelta(minutes=1), hour + timedelta(minutes=59))
        start_text = hour.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M:%S")
        originals = {item["TaskId"] for item in await _window_items(env, hour, hour + timedelta(hours=1))}
        assert len(originals) == 198
        inserted: list[bool] = []

        def after(query: dict[str, Any], body: dict[str, Any]) -> None:
            if not inserted and query.get("startTime") == start_text and query.get("pageNumber", 1) == 1:
                inserted.append(True)
                env.preload(1, hour, hour + timedelta(seconds=1))

        sca = make_sca(env.server, env.clock, HostileTransport(after=after))
        settings = harvest_settings(harvest_start_seconds=3 * 3600)  # default lookback, settle
        try:
            first = await harvest(env, store, settings, sca=sca)
            env.clock.advance(600)
            await harvest(env, store, settings, sca=sca)
        finally:
            await sca.aclose()
    assert inserted and first.checkpoint is not None
    written = set(task_counts(store))
    assert originals <= written, f"{len(originals - written)} result(s) of the window never written"


async def _window_items(env: Env, start: datetime, end: datetime) -> list[dict[str, Any]]:
    from qcflow.models.sca import GetResultQuery

    items: list[dict[str, Any]] = []
    number = 1
    while True:
        page = await env.sca.get_result_page(GetResultQuery(
            start_time=start.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M:%S"),
            end_time=(end - timedelta(seconds=1)).astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M:%S"),
            page_size=99, page_number=number, required_fields="taskId,status"))
        items += page.items
        if len(page.items) < 99:
            return items
        number += 1


# ============================================================================ DST


async def test_the_repeated_hour_of_a_dst_fall_back_is_read(store: ObjectStore) -> None:
    """``QCFLOW_SCA_TIME_ZONE`` accepts any zone. On 2026-10-25 Europe/Berlin repeats
    02:00-03:00: the windows [00:00, 01:00) and [01:00, 02:00) UTC both become the query
    ``startTime=02:00:00, endTime=02:59:59`` — the same text — so one of the two hours is
    read twice and the other never, and the checkpoint moves past it."""
    from qcflow.errors import ConfigError

    zone = "Europe/Berlin"
    now = datetime(2026, 10, 25, 4, tzinfo=timezone.utc)
    try:
        settings = harvest_settings(sca_time_zone=zone, harvest_start_seconds=5 * 3600)
    except ConfigError:
        return  # refusing a zone whose windows cannot be named is a fix too: nothing is lost silently
    with sandbox_env(sandbox_options(time_zone=zone), start=now) as env:
        env.preload(100, datetime(2026, 10, 25, 0, tzinfo=timezone.utc), datetime(2026, 10, 25, 2, tzinfo=timezone.utc))
        report = await harvest(env, store, settings)
    assert report.checkpoint is not None and report.checkpoint > datetime(2026, 10, 25, 2, tzinfo=timezone.utc)
    assert len(read_lines(store)) == 100


# ============================================================================ a marker deleted before its commit


async def test_an_unfinished_marker_is_not_deleted_before_its_result_is_committed(store: ObjectStore) -> None:
    """A remembered task is polled by taskId and its answer lists the same result twice (offset
    paging of a task's results, or a service hiccup). The second copy is "committed" only in
    the sense that it waits in this run's open spill — ``_Pass.handle`` then deletes the
    unfinished marker at once, before the commit. The commit fails; the marker is gone, the
    task's hour is long behind the checkpoint: the finished result is never written."""
    with sandbox_env(sandbox_options(task_seconds=3 * 3600)) as env:
        task = await env.upload("job-1")
        env.clock.advance(600)
        settings = harvest_settings(harvest_start_seconds=3600, harvest_lookback_seconds=0)
        assert (await harvest(env, store, settings)).unfinished_remembered == 1
        env.clock.advance(5 * 3600)  # finished, and out of every later window (the checkpoint is past it)

        def duplicate(query: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
            items = items_of(body)
            if "taskId" in query and items:
                items.append(dict(items[0]))
            return body

        sca = make_sca(env.server, env.clock, HostileTransport(duplicate))
        failing = FaultyStore(twin(store), lambda method, key: method == "create_if_absent" and key.startswith(layout.HARVEST_COMMITS))
        try:
            with pytest.raises(Crash):
                await harvest(env, failing, settings, sca=sca)
        finally:
            await sca.aclose()
        for _ in range(3):  # the following plain passes
            env.clock.advance(600)
            await harvest(env, twin(store), settings)
    assert task_counts(store)[task] == 1, "the finished task was never written"


# ============================================================================ identity and partition must not depend on optional fields


def _drop_recording(query: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    for item in items_of(body):
        item.pop("Recording", None)
    return body


def _create_time_as_utc_only(query: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    """No ``CreateTimeLong``, and ``CreateTime`` in UTC — what its trailing ``Z`` says."""
    for item in items_of(body):
        seconds = int(item.pop("CreateTimeLong"))
        item["CreateTime"] = datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%MZ")
    return body


@pytest.mark.parametrize("odd", [_drop_recording, _create_time_as_utc_only], ids=["without-recording", "without-create-time-long"])
async def test_a_result_read_once_with_and_once_without_an_optional_field_is_written_once(store: ObjectStore, odd: Rewrite) -> None:
    """The exactly-once key is ``<TaskId>|<Recording.Id>`` (``Vid`` without a Recording) inside
    the upload-hour partition (``CreateTimeLong``, else ``CreateTime``). If one read of a
    result lacks the field the key was taken from, the same finished result gets a second
    key and is written twice."""
    with sandbox_env() as env:
        env.preload(100, NOW - timedelta(hours=2), NOW - timedelta(minutes=30))
        settings = harvest_settings(harvest_start_seconds=3 * 3600)
        sca = make_sca(env.server, env.clock, HostileTransport(odd))
        try:
            await harvest(env, store, settings, sca=sca)
        finally:
            await sca.aclose()
        await harvest(env, twin(store), settings, since=NOW - timedelta(hours=3), until=NOW)
    counts = task_counts(store)
    assert len(counts) == 100
    assert max(counts.values()) == 1, f"{sum(1 for c in counts.values() if c > 1)} results written twice"


# ============================================================================ a lease that outlives nothing


async def test_a_run_whose_lease_expired_starts_no_new_window(store: ObjectStore) -> None:
    """A run keeps going after its lease expired: nothing re-checks the lease (a commit slow
    past the commit margin; from the CLI no FC timeout kills the process either). Here the
    first window's commit is slow enough for the lease to expire and a second timer run takes
    over and harvests everything — yet the first run goes on to start reading windows it had
    not touched: two timer runs harvest at once, each with a limiter at the full GetResult
    quota (exactness still holds, through the commit records; the quota does not)."""
    with sandbox_env() as env:
        env.preload(1_100, NOW - timedelta(hours=11), NOW - timedelta(minutes=5))  # 12 windows
        settings = harvest_settings(harvest_start_seconds=11 * 3600, harvest_lease_seconds=300)
        second: list[HarvestReport] = []
        before: set[str] = set()
        after: set[str] = set()

        def note(query: dict[str, Any], body: dict[str, Any]) -> None:
            if "startTime" in query:
                (after if second else before).add(query["startTime"])

        def slow_commit_then_timer_fires() -> None:
            env.clock.advance(settings.harvest.lease_seconds + 1)  # the first run's commit is that slow

            async def timer() -> HarvestReport:
                sca = make_sca(env.server, env.clock)
                try:
                    return await run_harvest(settings, sca, twin(store), deadline=far_deadline(), now=env.now)
                finally:
                    await sca.aclose()

            second.append(asyncio.run(timer()))

        slow = FaultyStore(twin(store), lambda method, key: method == "create_if_absent" and key.startswith(layout.HARVEST_COMMITS),
                           slow_commit_then_timer_fires)
        sca = make_sca(env.server, env.clock, HostileTransport(after=note))
        try:
            await harvest(env, slow, settings, sca=sca)
        finally:
            await sca.aclose()
    assert second and not second[0].lease_busy and second[0].written > 0
    assert after <= before, f"the first run started {len(after - before)} new window(s) after losing its lease"


# ============================================================================ checks that held (kept as regression tests)


async def test_gzip_switched_on_between_runs_writes_nothing_twice(store: ObjectStore) -> None:
    with sandbox_env() as env:
        env.preload(300, NOW - timedelta(hours=3), NOW - timedelta(minutes=5))
        await harvest(env, store, harvest_settings(harvest_start_seconds=3 * 3600))
        env.clock.advance(600)
        again = await harvest(env, twin(store), harvest_settings(harvest_gzip=True, harvest_lookback_seconds=4 * 3600))
        backfill = await harvest(env, twin(store), harvest_settings(harvest_gzip=True), since=NOW - timedelta(hours=4), until=NOW)
    assert again.written == 0 and backfill.written == 0
    assert sum(task_counts(store).values()) == 300


async def test_a_recovery_racing_a_slow_writer_leaves_each_result_once(store: ObjectStore) -> None:
    """The writer stalls between its commit record and its part upload for longer than the
    grace (fake clock); a recovery by another process redoes the part at the same key; then
    the slow writer's upload lands too (same key, same results)."""
    from qcflow.harvest.run import recovery_grace_seconds

    with sandbox_env() as env:
        env.preload(300, NOW - timedelta(hours=3), NOW - timedelta(minutes=5))
        settings = harvest_settings(harvest_start_seconds=3 * 3600)
        recovered: list[HarvestReport] = []

        def stall_then_recover() -> None:
            env.clock.advance(recovery_grace_seconds(settings.http) + 1)  # (the other run is a backfill: its own lease)

            async def other() -> HarvestReport:
                sca = make_sca(env.server, env.clock)
                try:
                    return await run_harvest(settings, sca, twin(store), since=NOW - timedelta(hours=4), until=NOW,
                                             deadline=far_deadline(), now=env.now)
                finally:
                    await sca.aclose()

            recovered.append(asyncio.run(other()))

        slow = FaultyStore(twin(store), lambda method, key: method == "open_writer" and key.startswith("results/"), stall_then_recover)
        await harvest(env, slow, settings)
    assert recovered and recovered[0].recovered == 1
    counts = task_counts(store)
    assert len(counts) == 300 and max(counts.values()) == 1
    assert out.pending_intents(store) == []


async def test_a_count_capped_at_10000_still_splits() -> None:
    """If GetResult's Count were capped at 10,000 (a search back end's default total), the
    reader must still split: 10,000 > 101 pages × 99."""
    from qcflow.store import LocalStore  # noqa: F401 - only the reader is exercised here

    def cap(query: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        body["Count"] = min(body.get("Count") or 0, 10_000)
        return body

    with sandbox_env() as env:
        env.preload(12_000, NOW - timedelta(hours=2), NOW - timedelta(hours=1))
        sca = make_sca(env.server, env.clock, HostileTransport(cap))
        from qcflow.acs.adaptive import AdaptiveRateLimiter
        from qcflow.harvest.reader import Window, WindowReader

        reader = WindowReader(sca, AdaptiveRateLimiter(10_000), zone=SHANGHAI, required_fields="taskId,status")
        seen: set[str] = set()
        try:
            async for page in reader.pages(Window(NOW - timedelta(hours=2), NOW - timedelta(hours=1)), deadline=far_deadline()):
                seen.update(item["TaskId"] for item in page)
        finally:
            await sca.aclose()
    assert len(seen) == 12_000


# ============================================================================ secrets in the output


async def test_a_signed_url_echoed_in_an_error_message_does_not_reach_the_jsonl(store: ObjectStore) -> None:
    """``Recording.Url`` loses its query string, but a failed task's ``ErrorMessage`` may echo the
    ``voiceFileUrl`` it could not download — CCC's pre-signed URL, signature included."""
    signed = ("https://ccc-record.oss-cn-shanghai.aliyuncs.com/record/job-1.mkv?Expires=1790000000"
              "&OSSAccessKeyId=STS.NTxxxx&Signature=abcDEF%2B123%3D&security-token=CAIS-secret-token")

    def echo(query: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        for item in items_of(body):
            if item.get("Status") == 6:
                item["ErrorMessage"] = f"file download failed: {signed}"
        return body

    with sandbox_env(sandbox_options(task_seconds=60, task_failure_rate=1.0)) as env:
        await env.upload("job-1")
        env.clock.advance(600)
        sca = make_sca(env.server, env.clock, HostileTransport(echo))
        try:
            await harvest(env, store, harvest_settings(harvest_start_seconds=3600), sca=sca)
        finally:
            await sca.aclose()
    [line] = read_lines(store)
    assert line["state"] == "failed" and "job-1.mkv" in line["error_message"]
    text = json.dumps(line)
    assert "Signature=" not in text and "security-token" not in text and "OSSAccessKeyId" not in text
