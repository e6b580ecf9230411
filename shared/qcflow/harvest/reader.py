"""Read every GetResult item of a time window, as fast as the quota allows.

The time is the task's upload time (``startTime``/``endTime``: the harvest) or the time its
last review was saved (``reviewStartTime``/``reviewEndTime``: the review feed), chosen by
``WindowReader(by=...)``; paging, splitting and the 10,000 rule are the same for both.

GetResult pages by offset (``pageNumber`` × ``pageSize``), and the service lets a caller
jump to any page only within its first 10,000 records; past that, each page must carry the
previous page's last ``LastDataId`` — one page after another, no parallelism. Whether the
10,000 bound applies to the page's *start* or its *end* is unconfirmed, so this reader
assumes the strict reading: a page may be asked for freely only if it ends within record
10,000 (offset + pageSize <= 10,000: pages 1..101 of 99). That works under both rules.

So the reader, for each window:

1. asks for page 1 (99 records: never wasted when the window is small) and learns ``Count``;
2. ``Count`` within the free range → every other page is fetched in parallel, bounded;
3. ``Count`` beyond it → the window is split in time into parts expected to hold ~70 % of
   the free range each (results are rarely spread evenly), and each part starts over at 1.
   Page 1 of the split window is the only call spent on nothing;
4. a window of one second cannot be split: its free pages are fetched in parallel, the rest
   one after another with ``lastDataId`` (the fallback the API describes).

Pages of every window in flight share one pool of ``max_concurrency`` calls, so the
probe of the next part overlaps the pages of the previous one, and the rate limiter (one for
the whole run) — not the round trip — decides the pace. Items are never filtered on
``Status``: a window's membership must not change while its tasks finish, or offset paging
would skip and repeat records. Memory: the reader holds the pages in flight and nothing else.

Why one module of ~450 lines: the paging plan (parallel pages under 10,000, recursive time
splits above, the ``lastDataId`` chain), its bookkeeping and the by-taskId reads share one
queue of jobs and one set of counters; split apart they would pass that state around.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol
from zoneinfo import ZoneInfo

from qcflow.errors import DeadlineReached, PermanentError, RetryableError
from qcflow.harvest.fields import required_fields_with_identity
from qcflow.models.sca import GetResultQuery, format_sca_time

log = logging.getLogger("qcflow.harvest.reader")

#: GetResult's largest page.
MAX_PAGE_SIZE = 99
#: The first records of a query that may be paged in any order (the rest need lastDataId).
DEEP_PAGING_LIMIT = 10_000
#: A part of a split window aims at this share of the free range (uneven spread tolerated).
SPLIT_FILL = 0.7

#: Which time selects a window: the upload (``startTime``/``endTime``) or the last review
#: (``reviewStartTime``/``reviewEndTime``).
TimeSelector = Literal["upload", "review"]


class _Page(Protocol):
    @property
    def count(self) -> int | None: ...
    @property
    def items(self) -> list[dict[str, Any]]: ...


class _ScaPages(Protocol):
    async def get_result_page(
        self, query: GetResultQuery, *, deadline: float | None = None, limiter: Any = None
    ) -> _Page: ...


@dataclass(frozen=True)
class Window:
    """Upload times ``[start, end)``: aware datetimes, whole seconds.

    GetResult's ``startTime``/``endTime`` are inclusive and have a resolution of one
    second, so the query asks for ``start`` .. ``end - 1 s``, in SCA's zone.
    """

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        for name in ("start", "end"):
            moment = getattr(self, name)
            if moment.tzinfo is None or moment.utcoffset() is None:
                raise ValueError(f"Window.{name} must be timezone-aware: {moment!r}")
            if moment.microsecond:
                raise ValueError(f"Window.{name} must be a whole second: {moment.isoformat()}")
        if not self.end > self.start:
            raise ValueError(f"an empty window: [{self.start.isoformat()}, {self.end.isoformat()})")

    @property
    def seconds(self) -> int:
        return int((self.end - self.start).total_seconds())

    def query_times(self, zone: ZoneInfo) -> tuple[str, str]:
        """(``startTime``, ``endTime``) for GetResult: both inclusive, in ``zone``."""
        return format_sca_time(self.start, zone), format_sca_time(self.end - timedelta(seconds=1), zone)

    def split(self, parts: int) -> list[Window]:
        """``parts`` consecutive windows of (nearly) equal whole-second length covering this one."""
        seconds = self.seconds
        parts = max(1, min(parts, seconds))
        bounds = [self.start + timedelta(seconds=seconds * i // parts) for i in range(parts + 1)]
        return [Window(lo, hi) for lo, hi in zip(bounds, bounds[1:], strict=False)]

    def __str__(self) -> str:
        return f"[{self.start.isoformat()}, {self.end.isoformat()})"


@dataclass
class ReaderStats:
    """What a reader has done so far (for progress bars, reports and benchmarks).

    ``calls`` counts GetResult calls made (the client's retries inside one call are counted
    by the limiter, see ``throttled``); ``wasted`` are page-1 calls of windows then split;
    ``planned_pages`` is the number of pages known to be needed so far (``Count``-based),
    for an ETA; ``count_changed``: pages whose ``Count`` differed from their window's page 1.
    ``WindowReader.stats`` hands out a copy.
    """

    calls: int = 0
    pages: int = 0
    records: int = 0
    throttled: int = 0
    splits: int = 0
    sequential_windows: int = 0
    sequential_pages: int = 0
    wasted: int = 0
    planned_pages: int = 0
    count_changed: int = 0


@dataclass
class _Job:
    """One GetResult page to fetch. ``cursor``: the previous page's last LastDataId, when needed."""

    window: Window
    number: int
    cursor: str | None = None
    #: the page ends a chain read one after another (past the free range)
    chained: bool = False
    #: total pages of this window, when known (for chained pages)
    total: int | None = None
    #: the window's Count when page 1 was read (a later page saying otherwise: it changed)
    expected: int | None = None
    #: Count may be a cap (it reached the deep-paging limit): read on while pages are full
    open_ended: bool = False


class WindowReader:
    """Pages of GetResult items for time windows (``by``: upload or last review), under one shared rate limiter.

    ``sca`` offers ``get_result_page(query, *, deadline, limiter)`` (``qcflow.sca.ScaClient``);
    ``limiter`` is the run's one GetResult limiter (``AdaptiveRateLimiter``), passed to every
    call. ``zone`` is SCA's time zone for ``startTime``/``endTime``. Every query asks for
    ``required_fields`` plus ``fields.IDENTITY_FIELDS`` (``status``, ``taskId``).
    """

    def __init__(
        self,
        sca: _ScaPages,
        limiter: Any,
        *,
        zone: ZoneInfo | str,
        required_fields: str,
        page_size: int = MAX_PAGE_SIZE,
        max_concurrency: int = 16,
        deep_paging_limit: int = DEEP_PAGING_LIMIT,
        by: TimeSelector = "upload",
    ) -> None:
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be 1..{MAX_PAGE_SIZE}, got {page_size}")
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        if deep_paging_limit < page_size:
            raise ValueError("deep_paging_limit must hold at least one page")
        if by not in ("upload", "review"):
            raise ValueError(f"by must be 'upload' or 'review', got {by!r}")
        self.by = by
        self.sca = sca
        self.limiter = limiter
        self.zone = zone if isinstance(zone, ZoneInfo) else ZoneInfo(zone)
        self.required_fields = required_fields_with_identity(required_fields)
        self.page_size = page_size
        self.max_concurrency = max_concurrency
        self.deep_paging_limit = deep_paging_limit
        #: Pages that may be asked for in any order: those ending within the limit.
        self.free_pages = deep_paging_limit // page_size
        self._n = ReaderStats()
        self._throttled_at_start = self._limiter_throttled()

    # ------------------------------------------------------------------ public

    @property
    def stats(self) -> ReaderStats:
        return replace(self._n, throttled=self._limiter_throttled() - self._throttled_at_start)

    async def pages(self, window: Window, *, deadline: float) -> AsyncGenerator[list[dict[str, Any]], None]:
        """Every result uploaded in ``window`` (any status), as pages of item dicts.

        Pages come in completion order, not upload order. Raises ``DeadlineReached`` when
        ``deadline`` (``time.monotonic()``) comes first. Close the iterator when leaving it
        early (``contextlib.aclosing``): that cancels the calls still in flight.
        """
        jobs: deque[_Job] = deque([_Job(window, 1)])
        self._n.planned_pages += 1
        running: dict[asyncio.Task[_Page], _Job] = {}
        ready: deque[asyncio.Task[_Page]] = deque()  # finished, in the order they were started
        try:
            while jobs or running:
                self._check_deadline(deadline, window)
                self._start(jobs, running, deadline)
                if not ready:
                    done, _ = await asyncio.wait(
                        running, timeout=max(0.0, deadline - time.monotonic()), return_when=asyncio.FIRST_COMPLETED
                    )
                    if not done:
                        self._check_deadline(deadline, window, force=True)
                    ready.extend(task for task in running if task in done)
                    del done
                task = ready.popleft()
                job = running.pop(task)
                page = task.result()  # a permanent error ends the window here
                del task
                items = self._plan(job, page, jobs)
                del page
                # start what this page made known before handing it over: the consumer's
                # work on it overlaps the next calls
                self._start(jobs, running, deadline)
                if items is not None:
                    self._n.pages += 1
                    self._n.records += len(items)
                if items:
                    yield items
                items = None  # the consumer may free the page now
        finally:
            for task in running:
                task.cancel()
            if running:
                await asyncio.gather(*running, return_exceptions=True)

    def _start(self, jobs: deque[_Job], running: dict[asyncio.Task[_Page], _Job], deadline: float) -> None:
        while jobs and len(running) < self.max_concurrency:
            job = jobs.popleft()
            running[asyncio.ensure_future(self._fetch(job, deadline))] = job

    async def task(self, task_id: str, *, deadline: float) -> dict[str, Any] | None:
        """The result of one task (GetResult by ``taskId``), or None when SCA has none.

        An upload of several recordings in one ``callList`` yields one taskId for all of
        them; this returns the first. ``tasks`` yields every one.
        """
        async with contextlib.aclosing(self._items_of(task_id, deadline)) as items:
            async for item in items:
                return item
        return None

    async def tasks(self, task_ids: Iterable[str], *, deadline: float) -> AsyncIterator[dict[str, Any]]:
        """Every result of each task id (each id asked once), ``max_concurrency`` at a time."""
        pending = deque(dict.fromkeys(t for t in task_ids if t))
        running: set[asyncio.Task[list[dict[str, Any]]]] = set()  # until handled, finished ones too
        try:
            while pending or running:
                self._check_deadline(deadline, None)
                while pending and len(running) < self.max_concurrency:
                    running.add(asyncio.ensure_future(self._collect(pending.popleft(), deadline)))
                done, _ = await asyncio.wait(
                    running, timeout=max(0.0, deadline - time.monotonic()), return_when=asyncio.FIRST_COMPLETED
                )
                if not done:
                    self._check_deadline(deadline, None, force=True)
                for task in done:
                    running.discard(task)
                    for item in task.result():
                        yield item
        finally:
            for task in running:
                task.cancel()
            if running:
                await asyncio.gather(*running, return_exceptions=True)

    # ------------------------------------------------------------------ planning

    def _plan(self, job: _Job, page: _Page, jobs: deque[_Job]) -> list[dict[str, Any]] | None:
        """Queue what this page implies; return its items to yield (None: discarded)."""
        items = list(page.items or [])
        count = page.count
        window = job.window
        if job.number == 1 and not job.chained:
            if count is not None and count > self.free_pages * self.page_size and window.seconds > 1:
                parts = window.split(math.ceil(count / (self.free_pages * self.page_size * SPLIT_FILL)))
                log.debug(
                    "splitting a window",
                    extra={"event": "harvest_window_split", "window": str(window), "count": count, "parts": len(parts)},
                )
                self._n.splits += 1
                self._n.wasted += 1
                self._n.planned_pages += len(parts) - 1
                jobs.extendleft(_Job(part, 1) for part in reversed(parts))  # probes first: learn counts early
                return None
            if count is None:
                # no total: one page after another until a short one
                if len(items) >= self.page_size:
                    self._n.sequential_windows += 1
                    self._n.planned_pages += 1
                    jobs.appendleft(self._next_in_chain(job, items, None))
                return items
            total = math.ceil(count / self.page_size)
            free = min(total, self.free_pages)
            self._n.planned_pages += total - 1
            following = [_Job(window, number, expected=count) for number in range(2, free + 1)]
            if total > free:
                # one second holding more than the free range: the rest one page after another,
                # chained from the last free page once it is here
                self._n.sequential_windows += 1
                log.info(
                    "a window of one second holds more results than can be paged in parallel; "
                    "reading the rest in sequence",
                    extra={"event": "harvest_window_sequential", "window": str(window), "count": count},
                )
                # UNCONFIRMED whether Count stops at 10,000 (as Elasticsearch's hit count does by
                # default): from there on, pages are read while they come back full
                open_ended = count >= self.deep_paging_limit
                if following:
                    following[-1] = _Job(window, free, chained=True, total=total, expected=count, open_ended=open_ended)
                else:
                    jobs.appendleft(
                        self._next_in_chain(replace(job, expected=count, open_ended=open_ended), items, total)
                    )
            jobs.extend(following)
            return items
        if job.expected is not None and count is not None and count != job.expected:
            # uploads still landing in the window (a settle delay too short): offsets moved, so
            # results may have been skipped or repeated; the next pass's lookback reads it again
            self._n.count_changed += 1
            log.warning(
                "a window's Count changed while it was read (%s -> %s); its results will be read again by the lookback",
                job.expected,
                count,
                extra={"event": "harvest_window_count_changed", "window": str(window)},
            )
        if job.chained:
            chain_total = job.total
            full = len(items) >= self.page_size
            more = full and (chain_total is None or job.number < chain_total or job.open_ended)
            if more:
                if chain_total is None or job.number >= chain_total:
                    self._n.planned_pages += 1
                jobs.appendleft(self._next_in_chain(job, items, chain_total))
            elif chain_total is not None and job.number < chain_total:
                log.warning(
                    "a window's results ended early",
                    extra={"event": "harvest_window_short", "window": str(window), "page": job.number},
                )
        return items

    def _next_in_chain(self, job: _Job, items: list[dict[str, Any]], total: int | None) -> _Job:
        number = job.number + 1
        cursor = None
        if self._needs_cursor(number):
            cursor = items[-1].get("LastDataId") if items else None
            if not cursor:
                raise PermanentError(
                    f"GetResult items carry no LastDataId: page {number} of {job.window} cannot be read "
                    f"(past record {self.deep_paging_limit} only the next page can, with the last LastDataId)",
                    action="GetResult",
                )
            self._n.sequential_pages += 1
        return _Job(
            job.window,
            number,
            cursor=cursor,
            chained=True,
            total=total,
            expected=job.expected,
            open_ended=job.open_ended,
        )

    def _needs_cursor(self, number: int) -> bool:
        """Strict rule: a page reaching past the limit carries the previous page's cursor."""
        return number * self.page_size > self.deep_paging_limit

    # ------------------------------------------------------------------ calling

    def _query(
        self, window: Window | None, number: int, cursor: str | None = None, task_id: str | None = None
    ) -> GetResultQuery:
        start_time = end_time = None
        if window is not None:
            start_time, end_time = window.query_times(self.zone)
        by_review = self.by == "review"
        return GetResultQuery(
            page_number=number,
            page_size=self.page_size,
            required_fields=self.required_fields,
            start_time=None if by_review else start_time,
            end_time=None if by_review else end_time,
            review_start_time=start_time if by_review else None,
            review_end_time=end_time if by_review else None,
            last_data_id=cursor,
            task_id=task_id,
        )

    async def _fetch(self, job: _Job, deadline: float) -> _Page:
        if job.number > 1 and not job.cursor and self._needs_cursor(job.number):
            raise AssertionError(
                f"page {job.number} would jump past record {self.deep_paging_limit}"
            )  # a bug, never sent
        return await self._call(self._query(job.window, job.number, job.cursor), deadline)

    async def _call(self, query: GetResultQuery, deadline: float) -> _Page:
        self._n.calls += 1
        try:
            return await self.sca.get_result_page(query, deadline=deadline, limiter=self.limiter)
        except RetryableError as exc:
            # the client gives up when no further attempt fits before the deadline
            if not isinstance(exc, DeadlineReached) and (exc.deadline_reached or time.monotonic() >= deadline):
                reached = DeadlineReached(
                    f"the run's time budget ended while calling GetResult: {exc}",
                    code=exc.code,
                    request_id=exc.request_id,
                    action="GetResult",
                )
                reached.attempts = exc.attempts
                raise reached from exc
            raise

    async def _items_of(self, task_id: str, deadline: float) -> AsyncGenerator[dict[str, Any], None]:
        number = 1
        cursor: str | None = None
        while True:
            self._check_deadline(deadline, None)
            page = await self._call(self._query(None, number, cursor, task_id=task_id), deadline)
            items = list(page.items or [])
            self._n.pages += 1
            self._n.records += len(items)
            for item in items:
                yield item
            total: int | None = page.count
            more = (number * self.page_size < total) if total is not None else len(items) >= self.page_size
            if not more or not items:
                return
            number += 1
            cursor = items[-1].get("LastDataId") if self._needs_cursor(number) else None
            if self._needs_cursor(number) and not cursor:
                return

    async def _collect(self, task_id: str, deadline: float) -> list[dict[str, Any]]:
        return [item async for item in self._items_of(task_id, deadline)]

    # ------------------------------------------------------------------ helpers

    def _check_deadline(self, deadline: float, window: Window | None, *, force: bool = False) -> None:
        if force or time.monotonic() >= deadline:
            where = f" while reading {window}" if window is not None else ""
            raise DeadlineReached(f"the run's time budget ended{where}", action="GetResult")

    def _limiter_throttled(self) -> int:
        return int(getattr(self.limiter, "throttled", 0) or 0)
