"""One harvest pass: windows of GetResult into exactly-once JSONL parts, within a time budget.

``run_harvest`` (the timer, and ``qcflow harvest``):

1. takes the lease (``state.py``); if another run holds it, returns at once with
   ``lease_busy`` — two overlapping timer runs never read the same range twice;
2. recovers parts lost by a crash between a commit record and its upload (``recovery.py``);
3. reads windows by upload time from ``checkpoint - lookback`` to ``now - settle``, cut at
   whole hours (``pipeline.chunks``): finished and failed results go to the writer, running
   ones are remembered in ``state/harvest/unfinished/`` (``unfinished.py``). The checkpoint
   advances to a chunk's end only once the chunk's parts are committed *and* its running
   results are remembered — and never backwards. A first pass (no checkpoint yet) starts
   ``harvest_start_seconds`` ago and saves that start as the checkpoint before reading
   (``state.origin``): cut before its first chunk, it must not leave the next pass to start
   later by the time between them. The next chunks are already being fetched
   while one is written, and a chunk's commit overlaps the next one's reading, so that the
   quota is not left idle at chunk boundaries or while parts upload (``pipeline.py``);
4. polls the remembered unfinished results the windows did not meet, by taskId: finished
   ones are written, ones running past ``harvest_unfinished_max_age_seconds`` are reported
   stuck (``state/harvest/stuck/``) and polled no more;
5. reads the review feed (``reviews.py``: windows by last-review time into ``reviews/``, its
   own checkpoint) on the same limiter, with the time the results left — at least
   ``QCFLOW_HARVEST_REVIEWS_MIN_SHARE`` of the pass (the results stop reading before that);
   ``QCFLOW_HARVEST_REVIEWS=false`` turns it off;
6. with time left (``harvest_compact``), compacts the closed hours of the last
   ``harvest_compact_hours`` (a backfill: of its range) of ``results/`` and ``reviews/`` into one
   or two parts each (``compact.py``: readers never see a result twice);
7. writes the run's manifest (``state/harvest/manifests/dt=<day>/<run>.json``: its files and
   counts, and ``compaction``), releases the lease.

With ``reviews=True`` and ``since``/``until`` it is a backfill of the *reviews* saved in that
range (``qcflow harvest --reviews``): a lease of its own (``state/reviews/backfill-lease/``),
no results read, no checkpoint moved.

A *result* is one recording's inspection, ``<TaskId>|<Recording.Id>`` (``records.result_id``):
one upload of several recordings shares a taskId, so the taskId alone cannot be the unit of
exactly-once. ``status``, ``taskId``, ``recording`` and the upload time are always requested
(``fields.py``).

With ``since``/``until`` it is a backfill of that range instead: the same windows and
writer, a lease of its own (``state/harvest/backfill-lease/``, so a long backfill does not
starve the timer; the two may overlap safely, the writer is exact without any lease), no
checkpoint moved, no polling of old unfinished tasks (the next timer pass does that).

``harvest_task_ids`` (the callback fast path) fetches the given tasks and writes the
finished ones through the same writer, without a lease: exactness never relied on it; a
fetched result that has been reviewed is written to ``reviews/`` too (the review feed's
writer: the timer meeting the same review later drops it).

Every pass stops cleanly before ``deadline`` (a ``time.monotonic()`` value): the reader stops
at ``deadline - commit margin`` (``DeadlineReached``), what was read is committed, the
checkpoint stays at the last complete chunk, and the next run continues from there. The
lease outlives the deadline by a margin (``LEASE_MARGIN_SECONDS``); a budget longer than the
lease allows is cut, so a run never works past its own lease.

Here: the coordination (lease, phases, checkpoint, manifest, report), and the wiring of one
pass; a little over 400 lines because the report's shape and this overview live with it. The
reader → writer pipeline is ``pipeline.py``, the unfinished bookkeeping ``unfinished.py``,
the recovery of lost parts ``recovery.py``, the push ledger's taskId join ``join.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Literal
from zoneinfo import ZoneInfo

from qcflow import layout
from qcflow.acs.adaptive import AdaptiveRateLimiter
from qcflow.config import HarvestSettings, Settings
from qcflow.errors import QcflowError
from qcflow.harvest import records as rec
from qcflow.harvest import state as st
from qcflow.harvest.compact import CompactStats, compact_range
from qcflow.harvest.feed import Budget, chunks
from qcflow.harvest.fields import required_fields
from qcflow.harvest.join import TaskIdJoin, TaskIdLedger
from qcflow.harvest.output import RESULTS_ROOM, REVIEWS_ROOM, ResultWriter, Spill, write_manifest
from qcflow.harvest.pipeline import HarvestProgress, Pipeline
from qcflow.harvest.reader import Window, WindowReader
from qcflow.harvest.recovery import recover, recovery_grace_seconds
from qcflow.harvest.reviews import ReviewFeed
from qcflow.harvest.unfinished import UnfinishedResults
from qcflow.pii import Redactor
from qcflow.sca import ScaClient
from qcflow.store import ObjectStore

__all__ = [
    "LEASE_MARGIN_SECONDS",
    "HarvestProgress",
    "HarvestReport",
    "Mode",
    "chunks",
    "harvest_task_ids",
    "recovery_grace_seconds",
    "required_fields",
    "run_harvest",
]

log = logging.getLogger("qcflow.harvest")

Mode = Literal["incremental", "backfill", "tasks", "reviews"]

#: A lease outlives its run's deadline by this much (a run never holds it past its budget).
LEASE_MARGIN_SECONDS = 30.0
#: Compaction (after the windows) stops this long before the deadline (at most half what is left).
COMPACT_MARGIN_SECONDS = 30.0


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class HarvestReport:
    """What a pass did. ``files`` are the part keys it made visible (recovered ones too);
    ``stuck`` counts the results newly reported stuck (``stuck_results``: ``<TaskId>|<Recording.Id>``)."""

    run_id: str
    mode: Mode
    windows: int = 0
    pages: int = 0
    calls: int = 0
    records_seen: int = 0
    written: int = 0
    duplicates_skipped: int = 0
    unfinished_remembered: int = 0
    unfinished_resolved: int = 0
    stuck: int = 0
    stuck_results: list[str] = field(default_factory=list)
    recovered: int = 0
    files: list[str] = field(default_factory=list)
    stopped_by_deadline: bool = False
    lease_busy: bool = False
    checkpoint: datetime | None = None
    manifest: str | None = None
    elapsed: float = 0.0
    #: The review feed's part of the pass (``ReviewFeed.counts``; empty when it did not run)
    #: and the ``reviews/`` parts it made visible.
    reviews: dict[str, Any] = field(default_factory=dict)
    review_files: list[str] = field(default_factory=list)
    #: The upload-time range this pass read, ``[since, until)`` (None: no windows, e.g. the callback path).
    since: datetime | None = None
    until: datetime | None = None
    #: The settle delay, when it cut the range's end (``until = start - settle``): results uploaded
    #: after ``until`` were left for a later pass on purpose.
    settle_seconds: float | None = None

    @property
    def held_back_by_settle(self) -> bool:
        """Nothing written, and the settle delay cut the range: what is newer waits for a later pass."""
        return self.written == 0 and not self.files and bool(self.settle_seconds)

    def range_text(self) -> str:
        """``[since, until)`` in UTC, for logs (the CLI shows SCA's zone too)."""
        if self.since is None or self.until is None:
            return "-"
        return f"[{self.since.isoformat()}, {self.until.isoformat()})"

    def settle_note(self) -> str:
        """Why a pass that wrote nothing may be right to (empty when it is not the settle delay)."""
        if not self.held_back_by_settle or self.until is None:
            return ""
        return (
            f"nothing written: the range ends at {self.until.isoformat()}, {self.settle_seconds:g} s before the "
            "start of the pass (the settle delay, QCFLOW_HARVEST_SETTLE_SECONDS); results uploaded since are "
            "left for a later pass"
        )

    def summary(self) -> str:
        """One line for logs and the CLI."""
        if self.lease_busy:
            return f"harvest {self.mode} {self.run_id}: another run holds the lease; nothing done"
        through = self.checkpoint.isoformat() if self.checkpoint else "-"
        return (
            f"harvest {self.mode} {self.run_id}: windows={self.windows} pages={self.pages} calls={self.calls} "
            f"seen={self.records_seen} written={self.written} files={len(self.files)} "
            f"duplicates_skipped={self.duplicates_skipped} unfinished_remembered={self.unfinished_remembered} "
            f"unfinished_resolved={self.unfinished_resolved} stuck={self.stuck} recovered={self.recovered} "
            f"checkpoint={through} stopped_by_deadline={str(self.stopped_by_deadline).lower()} "
            f"elapsed={self.elapsed:.1f}s range={self.range_text()}"
            + (
                f" reviews_written={self.reviews.get('reviews_written', 0)} "
                f"review_checkpoint={self.reviews.get('review_checkpoint') or '-'}"
                if self.reviews
                else ""
            )
            + (f"; {note}" if (note := self.settle_note()) else "")
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "mode": self.mode,
            "windows": self.windows,
            "pages": self.pages,
            "calls": self.calls,
            "records_seen": self.records_seen,
            "written": self.written,
            "duplicates_skipped": self.duplicates_skipped,
            "unfinished_remembered": self.unfinished_remembered,
            "unfinished_resolved": self.unfinished_resolved,
            "stuck": self.stuck,
            "stuck_results": self.stuck_results,
            "recovered": self.recovered,
            "stopped_by_deadline": self.stopped_by_deadline,
            "lease_busy": self.lease_busy,
            "checkpoint": self.checkpoint.isoformat() if self.checkpoint else None,
            "elapsed": round(self.elapsed, 3),
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
            "held_back_by_settle": self.held_back_by_settle,
            **self.reviews,
        }


class _UploadHour:
    """The harvest's partitions: the upload hour in SCA's zone (``records.Partitioner``), from
    ``CreateTimeLong`` — always requested, and the one upload time every read gives alike."""

    time_field = "CreateTimeLong"

    def __init__(self, zone: ZoneInfo) -> None:
        self._hours = rec.Partitioner(zone)

    def of(self, item: dict[str, Any]) -> str | None:
        seconds = rec.epoch_seconds(item.get("CreateTimeLong"))
        return None if seconds is None else self._hours.of_seconds(seconds)


class _Pass:
    """One pass wired: the pipeline (reader → writer) with the harvest's partitions, its
    unfinished bookkeeping and the ledger join; the report, the checkpoint and the manifest."""

    def __init__(
        self,
        settings: Settings,
        sca: ScaClient,
        store: ObjectStore,
        *,
        mode: Mode,
        deadline: float,
        now: Callable[[], datetime],
        progress: Callable[[HarvestProgress], None] | None,
        ledger: TaskIdLedger | None,
        limiter: AdaptiveRateLimiter | None = None,
        raw_store: ObjectStore | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        #: ``QCFLOW_PII_RAW_STORE``: the unredacted rows, written exactly once there too (never
        #: when redaction is off: the store itself holds them then).
        self.raw_store = raw_store if settings.pii.mode != "off" else None
        self.mode = mode
        self.now = now
        self.budget = Budget(deadline)
        self.started_at = now()
        self.run_id = f"{self.started_at.astimezone(timezone.utc):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"
        self.report = HarvestReport(self.run_id, mode)
        harvest = settings.harvest
        zone = settings.zone
        self.grace_seconds = recovery_grace_seconds(settings.http)
        self.limiter = limiter or AdaptiveRateLimiter.from_settings(settings.quotas)
        # a callback's fetch may meet a reviewed result: it asks for what a review row needs
        fields = required_fields(harvest, reviews=mode == "tasks" and harvest.reviews)
        reader = WindowReader(sca, self.limiter, zone=zone, required_fields=fields)
        self.sca = sca
        self.feed: ReviewFeed | None = None
        self.join = TaskIdJoin(ledger)
        max_age = harvest.unfinished_max_age_seconds
        self.unfinished = UnfinishedResults(store, run_id=self.run_id, zone=zone, wall=self.wall, max_age=max_age)
        self.redactor = Redactor.from_settings(settings.pii)
        self.pipeline = Pipeline(
            reader,
            self.limiter,
            self._writer,
            placement=_UploadHour(zone),
            hooks=self.unfinished,
            join=self.join,
            zone=zone,
            now=now,
            budget=self.budget,
            progress=progress,
            redactor=self.redactor,
            make_raw_writer=self._raw_writer if self.raw_store is not None else None,
        )

    def wall(self) -> float:
        return self.now().timestamp()

    def _raw_writer(self) -> ResultWriter:
        """The raw store's writer: its own commit records, so the copy is exactly-once too."""
        assert self.raw_store is not None
        return self._writer(None, self.raw_store)

    def _writer(self, on_committed: Callable[[Spill], None] | None, store: ObjectStore | None = None) -> ResultWriter:
        return ResultWriter.for_harvest(
            store or self.store,
            self.settings.harvest,
            run_id=self.run_id,
            grace_seconds=self.grace_seconds,
            wall=self.wall,
            on_committed=on_committed,
        )

    def review_feed(self, deadline: float) -> ReviewFeed:
        """The pass's review feed, on the pass's limiter (one quota), with its own budget."""
        self.feed = ReviewFeed(
            self.settings,
            self.sca,
            self.store,
            limiter=self.limiter,
            run_id=self.run_id,
            deadline=deadline,
            now=self.now,
            grace_seconds=self.grace_seconds,
            redactor=self.redactor,
            raw_store=self.raw_store,
        )
        return self.feed

    async def settle(self) -> None:
        await self.pipeline.settle()
        if self.feed is not None:
            await self.feed.pipeline.settle()

    # ------------------------------------------------------------------ phases
    async def prepare(self) -> None:
        """Before the windows: the join's ContactIds, the remembered results, lost parts."""
        await self.join.load()
        await self.unfinished.load()
        recovered = await recover(
            self.store,
            self.pipeline.source,
            grace=self.grace_seconds,
            zone=self.settings.zone,
            now=self.now,
            budget=self.budget,
            redactor=self.redactor,
        )
        if self.raw_store is not None:  # a lost raw part is recovered from SCA too, unredacted
            await recover(
                self.raw_store,
                self.pipeline.source,
                grace=self.grace_seconds,
                zone=self.settings.zone,
                now=self.now,
                budget=self.budget,
                redactor=Redactor("off"),
            )
        self.report.recovered = len(recovered)
        self.report.files.extend(written.key for written in recovered)

    async def incremental(self, lease_holds: Callable[[], bool]) -> dict[str, Any]:
        """From the checkpoint (less the lookback) to ``now - settle``, then the unfinished."""
        settings = self.settings.harvest
        first = self.started_at - timedelta(seconds=settings.start_seconds)
        current = await asyncio.to_thread(st.origin, self.store, first, owner=self.run_id, now=self.wall())
        self.report.checkpoint = current.through
        start = current.through - timedelta(seconds=settings.lookback_seconds)
        end = self.started_at - timedelta(seconds=settings.settle_seconds)
        self._range(start, end, settings.settle_seconds)
        await self.pipeline.read_windows(chunks(start, end), lease_holds=lease_holds, after_commit=self.advance)
        if not self.budget.stopped:
            await self.unfinished.poll(self.pipeline)
        return {"since": start.isoformat(), "until": end.isoformat()}

    async def backfill(
        self, since: datetime, until: datetime | None, lease_holds: Callable[[], bool]
    ) -> dict[str, Any]:
        """``[since, until)`` (``until`` defaults to ``now - settle``); no checkpoint moved."""
        settle = self.settings.harvest.settle_seconds
        cut = self.started_at - timedelta(seconds=settle)
        end = until if until is not None else cut
        self._range(since, end, settle if until is None else None)
        await self.pipeline.read_windows(chunks(since, end), lease_holds=lease_holds)
        return {"since": since.isoformat(), "until": end.isoformat()}

    def _range(self, since: datetime, until: datetime, settle_seconds: float | None) -> None:
        self.report.since, self.report.until = since, until
        self.report.settle_seconds = settle_seconds or None

    async def advance(self, window: Window) -> None:
        """A window is committed (its parts and its unfinished markers): the checkpoint moves
        to its end — never backwards (``state.advance_checkpoint``)."""
        saved = await asyncio.to_thread(
            st.advance_checkpoint, self.store, window.end, owner=self.run_id, now=self.wall()
        )
        self.report.checkpoint = saved.through

    async def compact(self, deadline: float) -> dict[str, Any] | None:
        """After the windows, while time is left before ``deadline``: fold the small parts of
        the closed hours of the last ``harvest_compact_hours`` in ``results/`` and ``reviews/``
        (a backfill: of its range, in its room). A failure is logged, not raised: the results
        are written, and the next pass compacts again."""
        harvest = self.settings.harvest
        if not harvest.compact or self.mode == "tasks" or self.budget.stopped:
            return None  # a pass its deadline stopped has no time to spare: the next one compacts
        deadline -= min(COMPACT_MARGIN_SECONDS, max(0.0, deadline - time.monotonic()) / 2)
        since, until = self.started_at - timedelta(hours=harvest.compact_hours), None
        rooms = [RESULTS_ROOM, REVIEWS_ROOM]
        if self.mode != "incremental" and self.report.since is not None:
            since, until = self.report.since, self.report.until
            rooms = [REVIEWS_ROOM] if self.mode == "reviews" else [RESULTS_ROOM]
        zone = self.settings.zone
        stats = CompactStats()
        try:
            for room in rooms:
                if time.monotonic() >= deadline:
                    break
                await asyncio.to_thread(
                    compact_range,
                    self.store,
                    room,
                    zone=zone,
                    now=self.started_at,
                    settle_seconds=harvest.settle_seconds,
                    lookback_seconds=harvest.lookback_seconds,
                    run_id=self.run_id,
                    gzip=harvest.gzip,
                    max_bytes=harvest.compact_max_bytes,
                    since=since.astimezone(zone),
                    until=until.astimezone(zone) if until is not None else None,
                    deadline=deadline,
                    unfinished_rule=room is RESULTS_ROOM,
                    stats=stats,
                )
        except QcflowError as exc:
            log.warning(
                "harvest compaction stopped: %s", exc, extra={"event": "harvest_compact_failed", "code": exc.code}
            )
            return {**stats.to_json(), "error": exc.code}
        return stats.to_json()

    # ------------------------------------------------------------------ the end
    def finish_counts(self) -> None:
        report, stats, writer = self.report, self.pipeline.stats, self.pipeline.writer.stats
        report.windows, report.pages, report.records_seen = stats.windows, stats.pages, stats.records_seen
        report.written, report.duplicates_skipped = writer.written, writer.duplicates_skipped
        report.unfinished_remembered = self.unfinished.remembered
        report.unfinished_resolved = self.unfinished.resolved
        report.stuck_results = list(self.unfinished.stuck_results)
        report.stuck = len(report.stuck_results)
        report.stopped_by_deadline = self.budget.stopped
        known = set(report.files)
        report.files.extend(written.key for written in writer.files if written.key not in known)
        report.calls = self.limiter.acquired
        report.elapsed = self.budget.elapsed()
        if self.feed is not None:
            report.reviews = self.feed.counts()
            report.review_files = self.feed.files()
            report.stopped_by_deadline = report.stopped_by_deadline or self.feed.budget.stopped

    async def write_manifest(self, extra: dict[str, Any]) -> None:
        report = self.report
        day = self.started_at.astimezone(self.settings.zone).strftime("%Y-%m-%d")
        key = f"{layout.HARVEST_MANIFESTS}dt={day}/{self.run_id}.json"
        manifest = {
            "run_id": self.run_id,
            "mode": self.mode,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.now().isoformat(),
            "files": [written.to_json() for written in self.pipeline.writer.stats.files],
            "review_files": [w.to_json() for w in self.feed.pipeline.writer.stats.files] if self.feed else [],
            "records": report.written,
            "recovered_files": report.files[: report.recovered],
            # how this run's rows were redacted (QCFLOW_PII), and whether an unredacted copy was written
            "pii": self.redactor.mode,
            "pii_raw_copy": self.raw_store is not None,
            **report.to_json(),
            **extra,
        }
        await asyncio.to_thread(write_manifest, self.store, key, manifest)
        report.manifest = key


def _lease_terms(settings: HarvestSettings, deadline: float) -> tuple[float, float, float]:
    """(ttl, margin, deadline): the lease lives for the budget plus a margin, at most
    ``harvest_lease_seconds``; a longer budget is cut so that the run never works past its
    own lease."""
    budget = max(0.0, deadline - time.monotonic())
    margin = min(LEASE_MARGIN_SECONDS, settings.lease_seconds / 4)
    ttl = min(budget + margin, settings.lease_seconds)
    return ttl, margin, min(deadline, time.monotonic() + ttl - margin)


@contextlib.asynccontextmanager
async def _leased(run: _Pass, ttl: float, margin: float) -> AsyncIterator[Callable[[], bool] | None]:
    """The run's lease (the timer's, or the backfill's own) for ``ttl``: yields ``lease_holds()``
    — or ``None``, the report saying ``lease_busy``, when another run holds it. Released on
    the way out, whatever happened (else it expires by itself)."""
    prefix = {"backfill": layout.HARVEST_BACKFILL_LEASE, "reviews": layout.REVIEW_BACKFILL_LEASE}.get(
        run.mode, layout.HARVEST_LEASE
    )
    lease = await asyncio.to_thread(st.acquire_lease, run.store, run.run_id, now=run.wall(), ttl=ttl, prefix=prefix)
    if isinstance(lease, st.LeaseBusy):
        run.report.lease_busy = True
        log.info(
            "harvest: lease held by %s until %s; this run does nothing",
            lease.owner,
            lease.expires_at,
            extra={"event": "harvest_lease_busy"},
        )
        yield None
        return
    try:
        # between windows: stop while half the margin is left (the commit of what was read fits in it)
        yield lambda: run.wall() < lease.expires_at - margin / 2
    finally:
        try:
            await asyncio.to_thread(st.release_lease, run.store, lease)
        except QcflowError as exc:  # it expires by itself
            log.warning("harvest: could not release the lease (%s); it expires at %s", exc, lease.expires_at)


def _mode(since: datetime | None, until: datetime | None, reviews: bool = False) -> Mode:
    if until is not None and since is None:
        raise ValueError("a backfill needs since (until alone is not a range)")
    if reviews and since is None:
        raise ValueError("a backfill of reviews needs since (the incremental pass reads reviews already)")
    for name, value in (("since", since), ("until", until)):
        if value is not None and value.tzinfo is None:
            raise ValueError(f"{name} must be an aware datetime (with a time zone)")
    if reviews:
        return "reviews"
    return "backfill" if since is not None else "incremental"


def _results_deadline(settings: HarvestSettings, mode: Mode, deadline: float) -> float:
    """When the results stop reading so that the review feed keeps its share of the pass."""
    if mode != "incremental" or not settings.reviews:
        return deadline
    return deadline - settings.reviews_min_share * max(0.0, deadline - time.monotonic())


async def run_harvest(
    settings: Settings,
    sca: ScaClient,
    store: ObjectStore,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    deadline: float,
    now: Callable[[], datetime] = _utc_now,
    progress: Callable[[HarvestProgress], None] | None = None,
    ledger: TaskIdLedger | None = None,
    reviews: bool = False,
    raw_store: ObjectStore | None = None,
) -> HarvestReport:
    """One incremental pass (no ``since``/``until``: results, then the review feed), a backfill
    of the results uploaded in ``[since, until)``, or (``reviews``) of the reviews saved then;
    ``raw_store``: where the unredacted rows go too (``QCFLOW_PII_RAW_STORE``)."""
    mode = _mode(since, until, reviews)
    ttl, margin, deadline = _lease_terms(settings.harvest, deadline)
    results_deadline = _results_deadline(settings.harvest, mode, deadline)
    run = _Pass(
        settings,
        sca,
        store,
        mode=mode,
        deadline=results_deadline,
        now=now,
        progress=progress,
        ledger=ledger,
        raw_store=raw_store,
    )
    async with _leased(run, ttl, margin) as lease_holds:
        if lease_holds is None:
            return run.report
        try:
            if mode == "reviews":
                assert since is not None
                feed = run.review_feed(deadline)
                await feed.recover()
                extra = await feed.backfill(since, until, lease_holds)
                run._range(since, datetime.fromisoformat(extra["reviews_until"]), None)  # review times
            else:
                await run.prepare()
                extra = await (
                    run.backfill(since, until, lease_holds) if since is not None else run.incremental(lease_holds)
                )
                if mode == "incremental" and settings.harvest.reviews:
                    await run.pipeline.settle()
                    feed = run.review_feed(deadline)
                    await feed.recover()
                    extra.update(await feed.incremental(lease_holds))
            await run.settle()
            extra["compaction"] = await run.compact(deadline)
            run.finish_counts()
            await run.write_manifest(extra)
            log.info(run.report.summary(), extra={"event": "harvest_done", **run.report.to_json()})
            return run.report
        except QcflowError as exc:
            log.error(
                "harvest %s failed: %s",
                run.run_id,
                exc,
                extra={"event": "harvest_failed", "run_id": run.run_id, "code": exc.code, "request_id": exc.request_id},
            )
            raise
        finally:
            await run.settle()


async def harvest_task_ids(
    settings: Settings,
    sca: ScaClient,
    store: ObjectStore,
    task_ids: list[str],
    *,
    deadline: float,
    now: Callable[[], datetime] = _utc_now,
    ledger: TaskIdLedger | None = None,
    limiter: Any = None,
    raw_store: ObjectStore | None = None,
) -> HarvestReport:
    """The callback fast path: fetch ``task_ids`` and write the finished ones, exactly once
    (no lease: the commit records make it exact against concurrent timer runs). The
    remembered unfinished results are not listed: a committed result's marker, if any, is
    deleted all the same. ``limiter``: the GetResult limiter to use (the callback's
    per-instance bucket); by default a fresh one at the harvest's ceiling."""
    run = _Pass(
        settings,
        sca,
        store,
        mode="tasks",
        deadline=deadline,
        now=now,
        progress=None,
        ledger=ledger,
        limiter=limiter,
        raw_store=raw_store,
    )
    try:
        await run.join.load()
        wanted = list(dict.fromkeys(task_ids))
        feed = run.review_feed(deadline) if settings.harvest.reviews else None
        await run.pipeline.read_tasks(wanted, also=feed.take if feed else None)
        if feed is not None:
            await feed.pipeline.seal()
        await run.settle()
        run.finish_counts()
        if run.report.files or run.report.review_files:
            await run.write_manifest({"task_ids": wanted[:100]})
        return run.report
    finally:
        await run.settle()
