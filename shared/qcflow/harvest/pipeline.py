"""A feed's pipeline: windows of GetResult → pages → records → the exactly-once writer.

Every feed (the harvest; a feed of reviews next) reads and writes through this one pipeline;
what differs between them is handed in (``feed.py``: the source, the placement, the hooks,
the budget, ``after_commit``), never switched on a flag — plus ``make_writer``, the feed's
writer built around the pipeline's after-commit hook, and ``join``, the push ledger's taskId
join (``join.py``; one without a ledger joins nothing).

Invariants the pipeline keeps for every feed:

- a window is *finished* (counted, and ``after_commit`` runs) only once its parts are committed
  **and** the hooks' store writes for its results (the harvest's unfinished markers, stale-
  marker deletes) are done: ``seal`` gathers both. So a checkpoint never passes a running
  result whose marker is not written (marker before checkpoint), and windows finish in order;
- the next ``PREFETCH_WINDOWS`` windows are fetched while one is routed, and a window's commit
  overlaps the next one's reading, so the quota is not left idle at window boundaries or
  while parts upload; each fetch queues at most ``PREFETCH_PAGES`` pages (memory bound);
- a window whose ``Count`` changed while it was paged is read again (``WINDOW_REREADS``
  times, then ``WindowUnstable``): offsets moved, a result may have been skipped;
- reading stops at ``Budget.read_deadline``, the pass's deadline less a commit margin, so that
  what was read is still committed in time; a window cut by it is committed but not finished;
- between windows it stops when ``lease_holds()`` says the lease is about to expire;
- ``settle`` waits for every background write, also after a failure (no thread left behind).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from qcflow.acs.adaptive import AdaptiveRateLimiter
from qcflow.errors import WindowUnstable
from qcflow.harvest import records as rec
from qcflow.harvest.feed import Budget, Item, Placement, ResultHooks, ResultSource, StoreWrite
from qcflow.harvest.join import TaskIdJoin
from qcflow.harvest.output import ResultWriter, Spill
from qcflow.harvest.reader import DeadlineReached, Window
from qcflow.pii import Redactor

log = logging.getLogger("qcflow.harvest")

#: Windows fetched ahead of the one being written, and pages each may queue (memory bound).
PREFETCH_WINDOWS = 2
PREFETCH_PAGES = 4
#: Times a window whose Count changed while it was paged is read again before the run gives up.
WINDOW_REREADS = 3


@dataclass(frozen=True)
class HarvestProgress:
    """A snapshot for a progress bar: ``rate`` (GetResult calls/s so far) against
    ``quota_rate`` (the limiter's ceiling); ``estimated_total_pages`` when the reader knows."""

    pages: int
    records: int
    calls: int
    rate: float
    elapsed: float
    estimated_total_pages: int | None
    quota_rate: float
    written: int
    windows_done: int
    windows_total: int


@dataclass
class PipelineStats:
    """What the pipeline routed so far (the writer counts what it wrote)."""

    pages: int = 0
    records_seen: int = 0
    windows: int = 0
    windows_total: int = 0


class _Ahead:
    """Windows fetched ahead, in order: each has a queue of ``("page", items)`` events (at most
    ``PREFETCH_PAGES``) ended by ``("done" | "deadline" | "error", value)``, filled by ``produce``."""

    def __init__(
        self,
        windows: Iterable[Window],
        produce: Callable[[Window, asyncio.Queue[tuple[str, Any]]], Awaitable[None]],
    ) -> None:
        self._upcoming = iter(windows)
        self._produce = produce
        self._fetching: deque[tuple[Window, asyncio.Queue[tuple[str, Any]], asyncio.Future[None]]] = deque()

    def __bool__(self) -> bool:
        return bool(self._fetching)

    def start(self, count: int = 1) -> None:
        """Start fetching the next ``count`` windows (fewer at the end)."""
        for _ in range(count):
            window = next(self._upcoming, None)
            if window is None:
                return
            queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue(maxsize=PREFETCH_PAGES)
            self._fetching.append((window, queue, asyncio.ensure_future(self._produce(window, queue))))

    async def next(self) -> tuple[Window, str, Any]:
        """The first window's next event; a window leaves with its last one."""
        window, queue, _ = self._fetching[0]
        kind, value = await queue.get()
        if kind != "page":
            self._fetching.popleft()
        return window, kind, value

    async def cancel(self) -> None:
        """Stop the fetches still running and wait for them."""
        tasks = [task for _, _, task in self._fetching]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


class Pipeline:
    """One pass of one feed: its source, its writer and the bookkeeping between them."""

    def __init__(
        self,
        source: ResultSource,
        limiter: AdaptiveRateLimiter,
        make_writer: Callable[[Callable[[Spill], None]], ResultWriter],
        *,
        placement: Placement,
        hooks: ResultHooks,
        join: TaskIdJoin,
        zone: ZoneInfo,
        now: Callable[[], datetime],
        budget: Budget,
        progress: Callable[[HarvestProgress], None] | None = None,
        identity: Callable[[Item], str | None] = rec.result_id,
        redactor: Redactor | None = None,
        make_raw_writer: Callable[[], ResultWriter] | None = None,
    ) -> None:
        self.source = source
        #: An item's exactly-once identity: ``records.result_id`` (a result), or a review's
        #: ``reviews.review_id`` (``<TaskId>|<Recording.Id>|<review ms>``).
        self.identity = identity
        #: ``QCFLOW_PII`` applied to every record before it is encoded; a feed built without one
        #: still masks (the default mode): personal data stays out unless asked for.
        self.redactor = redactor if redactor is not None else Redactor()
        self.limiter = limiter
        self.placement = placement
        self.hooks = hooks
        self.join = join
        self.zone = zone
        self.now = now
        self.budget = budget
        self.progress = progress
        self.stats = PipelineStats()
        self.writer = make_writer(self._committed)
        #: ``QCFLOW_PII_RAW_STORE``'s writer: the same exactly-once writer on the raw store, fed
        #: the unredacted line of every result (its own commit records decide what it still needs).
        self.raw_writer = make_raw_writer() if make_raw_writer is not None else None
        #: Store writes the hooks asked for since the last seal, and seals not awaited yet.
        self._side: list[asyncio.Future[Any]] = []
        self._outstanding: list[asyncio.Future[Any]] = []

    # ------------------------------------------------------------------ routing (the hot path)
    async def handle(self, items: list[Item], *, page: bool = True) -> None:
        """Route one page (or one batch of by-taskId items)."""
        if page:
            self.stats.pages += 1
        harvested_at = rec.utc_now_text(self.now())
        for item in items:
            self.stats.records_seen += 1
            await self._route(item, harvested_at)
        if self.progress is not None and page:
            self.progress(self.snapshot())

    async def _route(self, item: Item, harvested_at: str) -> None:
        """One item: to the writer, to the hooks (unfinished), or skipped (written already, or
        unconvertible)."""
        result = self.identity(item)
        if result is None:
            log.warning("harvest: a result without TaskId was skipped", extra={"event": "harvest_no_task_id"})
            return
        partition = self._partition(result, item)
        if partition is None:
            self._beside(self.hooks.running(result, item))
            return
        await self.writer.ensure_loaded(partition)
        raw_due = False
        if self.raw_writer is not None:
            await self.raw_writer.ensure_loaded(partition)
            raw_due = not self.raw_writer.is_committed(partition, result)
        written = self.writer.is_committed(partition, result)
        if written:
            self.writer.skip()
            if self.writer.is_in_commit_log(partition, result):  # not merely queued in this run's spill
                self._beside(self.hooks.written_before(result))
                await self.join.met_written(rec.call_id_of(item), rec.task_of(result))
            if not raw_due:
                return
        try:
            record = rec.to_record(item, self.zone, harvested_at)
            raw_line = rec.encode_line(record) if raw_due else None
            record = self.redactor.record(record)
            line = rec.encode_line(record)
        except (RecursionError, ValueError, TypeError) as exc:
            # one poison result must not stall every later pass on the same window: skipped, loudly
            log.error(
                "harvest: result %s cannot be converted (%s); skipped",
                result[:200],
                type(exc).__name__,
                extra={"event": "harvest_unconvertible", "result": result[:200]},
            )
            return
        if raw_line is not None and self.raw_writer is not None:
            self.raw_writer.add(partition, result, raw_line)
        if not written:
            self.writer.add(partition, result, line, self.join.contact(record["call_id"]))

    def _partition(self, result: str, item: Item) -> str | None:
        """The partition of a finished or failed result with its whole exactly-once key; ``None``
        for any other (running, unreadable status, incomplete key): the hooks' ``running``."""
        state = rec.state_of(item)
        if state in ("finished", "failed"):
            partition = self.placement.of(item)
            if partition is not None and rec.call_id_of(item) is not None:
                return partition
            # the exactly-once key comes from these (always requested): a guessed key could
            # differ from the one another read gives the same result, and write it twice
            log.warning(
                "harvest: result %s came without %s or Recording.Id; polled again later",
                result,
                self.placement.time_field,
                extra={"event": "harvest_incomplete_identity"},
            )
            state = "unknown"
        if state == "unknown":
            log.warning(
                "harvest: result %s came without a readable Status; treated as unfinished",
                result,
                extra={"event": "harvest_unknown_status"},
            )
        return None

    def _beside(self, write: StoreWrite | None) -> None:
        """Start a hook's store write; the next ``seal`` waits for it."""
        if write is not None:
            self._side.append(asyncio.ensure_future(asyncio.to_thread(write)))

    def _committed(self, spill: Spill) -> None:
        """After a part is visible (in the committing thread): the hooks, then the ledger join."""
        self.hooks.committed(spill.ids)
        self.join.committed(spill.contacts)

    def snapshot(self) -> HarvestProgress:
        elapsed = self.budget.elapsed()
        calls = self.limiter.acquired
        return HarvestProgress(
            pages=self.stats.pages,
            records=self.stats.records_seen,
            calls=calls,
            rate=calls / elapsed if elapsed > 0 else 0.0,
            elapsed=elapsed,
            estimated_total_pages=self.source.stats.planned_pages,
            quota_rate=self.limiter.max_rate,
            written=self.writer.stats.written,
            windows_done=self.stats.windows,
            windows_total=self.stats.windows_total,
        )

    # ------------------------------------------------------------------ commits
    def seal(self) -> asyncio.Future[Any]:
        """Everything routed so far, committed: parts, and the hooks' store writes (the
        harvest's unfinished markers, stale-marker deletes)."""
        side, self._side = self._side, []
        if self.raw_writer is not None:
            side.append(self.raw_writer.seal())
        done = asyncio.gather(self.writer.seal(), *side)
        self._outstanding.append(done)
        return done

    async def settle(self) -> None:
        """Wait for every background write (also after a failure: no thread left behind)."""
        await self.writer.close()
        if self.raw_writer is not None:
            await self.raw_writer.close()
        pending = self._outstanding + self._side
        self._outstanding, self._side = [], []
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)

    # ------------------------------------------------------------------ reading
    async def read_tasks(self, task_ids: Iterable[str], also: Callable[[Item], Awaitable[None]] | None = None) -> bool:
        """Fetch ``task_ids`` by taskId, route every result (and hand it to ``also``: another
        feed's pipeline, e.g. the reviews'), and commit: ``False`` when the read deadline cut
        the fetch short (what was routed is committed all the same; ``also``'s committing is
        its owner's)."""
        complete = True
        try:
            async for item in self.source.tasks(task_ids, deadline=self.budget.read_deadline):
                await self.handle([item], page=False)
                if also is not None:
                    await also(item)
        except DeadlineReached:
            self.budget.stopped = True
            complete = False
        await self.seal()
        return complete

    async def read_windows(
        self,
        windows: list[Window],
        *,
        lease_holds: Callable[[], bool],
        after_commit: Callable[[Window], Awaitable[None]] | None = None,
    ) -> None:
        """Read the windows in order: the next ``PREFETCH_WINDOWS`` are already being fetched
        while one is consumed (a window's first page costs a round trip before its other pages
        can start), and each window's commit overlaps the next one's reading. A window is
        finished — counted, then ``after_commit(window)`` — only once it and every window
        before it are committed."""
        self.stats.windows_total = len(windows)
        ahead = _Ahead(windows, self._produce)
        previous: tuple[Window, asyncio.Future[Any]] | None = None
        try:
            if self.budget.may_read():
                ahead.start(PREFETCH_WINDOWS)
            elif windows:
                self.budget.stopped = True
            while ahead:
                window, kind, value = await ahead.next()
                if kind == "page":
                    await self.handle(value)
                    continue
                if kind == "error":
                    raise value
                done = self.seal()
                if previous is not None:
                    await self._finish(*previous, after_commit)
                    previous = None
                if kind == "deadline":  # committed, not finished: the next pass reads it again
                    self.budget.stopped = True
                    await done
                    return
                previous = (window, done)
                if not lease_holds():
                    log.warning(
                        "harvest: the lease is about to expire; stopping after the windows read",
                        extra={"event": "harvest_lease_lost"},
                    )
                    self.budget.stopped = True
                    break
                ahead.start()
            if previous is not None:
                await self._finish(*previous, after_commit)
        finally:
            await ahead.cancel()

    async def _produce(self, window: Window, queue: asyncio.Queue[tuple[str, Any]]) -> None:
        """Fetch one window's pages into ``queue`` (bounded: memory stays a few pages), then
        ``done``, ``deadline`` or ``error``."""
        try:
            for attempt in range(WINDOW_REREADS + 1):
                changed = self.source.stats.count_changed
                async with contextlib.aclosing(self.source.pages(window, deadline=self.budget.read_deadline)) as pages:
                    async for items in pages:
                        await queue.put(("page", items))
                if self.source.stats.count_changed == changed:
                    break
                # offsets moved while the window was paged: a result may have been skipped, and
                # the lookback re-reads only the last hour before the checkpoint. Read it again
                # (what was yielded stays valid: the writer drops repeats).
                if attempt == WINDOW_REREADS:
                    raise WindowUnstable(
                        f"{window}: its Count kept changing while it was read; the checkpoint stays before it"
                    )
                log.warning(
                    "harvest: %s changed while it was read; reading it again",
                    window,
                    extra={"event": "harvest_window_reread", "window": str(window)},
                )
            await queue.put(("done", None))
        except DeadlineReached:
            await queue.put(("deadline", None))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - handed to the consumer, which raises it
            await queue.put(("error", exc))

    async def _finish(
        self, window: Window, done: asyncio.Future[Any], after_commit: Callable[[Window], Awaitable[None]] | None
    ) -> None:
        await done
        self.stats.windows += 1
        if after_commit is not None:
            await after_commit(window)
