"""One harvest pass: windows of GetResult into exactly-once JSONL parts, within a time budget.

``run_harvest`` (the timer, and ``qcflow harvest``):

1. takes the lease (``state.py``); if another run holds it, returns at once with
   ``lease_busy`` — two overlapping timer runs never read the same range twice;
2. recovers parts lost by a crash between a commit record and its upload (``output.py``);
3. reads windows by upload time from ``checkpoint - lookback`` to ``now - settle``, cut at
   whole hours (``CHUNK_SECONDS``): finished and failed results go to the writer, running
   ones are remembered in ``state/harvest/unfinished/``. The checkpoint advances to a
   chunk's end only once the chunk's parts are committed *and* its running results are
   remembered — and never backwards. The next chunks are already being fetched while one
   is written, and a chunk's commit overlaps the next one's reading, so that the quota is
   not left idle at chunk boundaries or while parts upload;
4. polls the remembered unfinished results the windows did not meet, by taskId: finished
   ones are written, ones running past ``harvest_unfinished_max_age_seconds`` are reported
   stuck (``state/harvest/stuck/``) and polled no more;
5. writes the run's manifest (``state/harvest/manifests/dt=<day>/<run>.json``: its files and
   counts), releases the lease.

A *result* is one recording's inspection, ``<TaskId>|<Recording.Id>`` (``records.result_id``):
one upload of several recordings shares a taskId, so the taskId alone cannot be the unit of
exactly-once. ``status``, ``taskId``, ``recording`` and the upload time are always requested
(``fields.py``).

With ``since``/``until`` it is a backfill of that range instead: the same windows and
writer, a lease of its own (``state/harvest/backfill-lease/``, so a long backfill does not
starve the timer; the two may overlap safely, the writer is exact without any lease), no
checkpoint moved, no polling of old unfinished tasks (the next timer pass does that).

``harvest_task_ids`` (the callback fast path) fetches the given tasks and writes the
finished ones through the same writer, without a lease: exactness never relied on it.

Every pass stops cleanly before ``deadline`` (a ``time.monotonic()`` value): the reader stops
at ``deadline - commit margin`` (``DeadlineReached``), what was read is committed, the
checkpoint stays at the last complete chunk, and the next run continues from there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

from qcflow.acs.adaptive import AdaptiveRateLimiter
from qcflow.config import Settings
from qcflow.errors import QcflowError, WindowUnstable
from qcflow.harvest import records as rec
from qcflow.harvest import state as st
from qcflow.harvest.fields import required_fields
from qcflow.harvest.output import (
    MANIFESTS,
    ResultWriter,
    Spill,
    intent_results,
    pending_intents,
    write_manifest,
    write_recovered,
)
from qcflow.harvest.reader import DeadlineReached, Window, WindowReader
from qcflow.sca import ScaClient
from qcflow.store import ObjectStore

log = logging.getLogger("qcflow.harvest")

Mode = Literal["incremental", "backfill", "tasks"]

#: Windows are cut at whole hours (of epoch time): a checkpoint step, and one output partition.
CHUNK_SECONDS = 3600
#: Windows fetched ahead of the one being written, and pages each may queue (memory bound).
PREFETCH_WINDOWS = 2
PREFETCH_PAGES = 4
#: Times a window whose Count changed while it was paged is read again before the run gives up.
WINDOW_REREADS = 3
#: Time kept at the end of a budget to commit what was read (at most a quarter of the budget).
COMMIT_MARGIN_SECONDS = 20.0
#: A lease outlives its run's deadline by this much (a run never holds it past its budget).
LEASE_MARGIN_SECONDS = 30.0
#: Least age of a pending write before another run redoes it (see ``recovery_grace_seconds``).
RECOVERY_GRACE_SECONDS = 300.0


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


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
            f"elapsed={self.elapsed:.1f}s"
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
        }


def recovery_grace_seconds(settings: Settings) -> float:
    """How old a pending write must be before another run may redo it.

    It does not depend on how long functions run: a writer checks, just before its part
    becomes visible, that its commit record is younger than this, and otherwise aborts the
    upload and leaves the part to recovery. So the grace only has to cover one upload's
    final commit with its retries (a few HTTP timeouts), with room for clock skew between
    instances; a crashed writer's results are missing from ``results/`` for about that long
    (plus the time to the next timer run)."""
    return max(RECOVERY_GRACE_SECONDS, 4.0 * settings.http_timeout_seconds * settings.max_attempts)


def chunks(start: datetime, end: datetime, size: int = CHUNK_SECONDS) -> list[Window]:
    """``[start, end)`` in whole seconds, cut at multiples of ``size`` seconds of epoch time."""
    lo = math.floor(start.timestamp())
    hi = math.floor(end.timestamp())
    out: list[Window] = []
    while lo < hi:
        cut = min(hi, (lo // size + 1) * size)
        out.append(Window(datetime.fromtimestamp(lo, timezone.utc), datetime.fromtimestamp(cut, timezone.utc)))
        lo = cut
    return out


class _Pass:
    """The state of one pass: reader, writer, report and the bookkeeping between them."""

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
        ledger: Any,
    ) -> None:
        self.settings = settings
        self.store = store
        self.mode = mode
        self.now = now
        self.zone = settings.zone
        self.started = time.monotonic()
        self.deadline = deadline
        budget = max(0.0, deadline - self.started)
        self.read_deadline = deadline - min(COMMIT_MARGIN_SECONDS, budget / 4)
        started_at = now()
        self.run_id = f"{started_at.astimezone(timezone.utc):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"
        self.started_at = started_at
        self.report = HarvestReport(self.run_id, mode)
        self.progress = progress
        self.ledger = ledger
        self.contacts: set[str] = set()
        self.limiter = AdaptiveRateLimiter.from_settings(settings)
        self.reader = WindowReader(sca, self.limiter, zone=self.zone, required_fields=required_fields(settings))
        self.partitioner = rec.Partitioner(self.zone)
        #: Remembered unfinished tasks (listed at the start; ``None``: not listed, e.g. callbacks).
        self.unfinished: set[str] | None = None
        #: Remembered tasks met running in this pass (→ their upload time), and markers this
        #: pass created (too young to be stuck).
        self.running_upload: dict[str, float | None] = {}
        self.fresh: set[str] = set()
        self._count_lock = threading.Lock()
        self.windows_total = 0
        #: Wall time (epoch s) the run's lease ends (None: no lease, the callback path), and the
        #: margin it was given beyond the run's deadline.
        self.lease_expires_at: float | None = None
        self.lease_margin = LEASE_MARGIN_SECONDS
        self._side: list[asyncio.Future[Any]] = []
        self._outstanding: list[asyncio.Future[Any]] = []
        self.writer = ResultWriter(
            store,
            run_id=self.run_id,
            gzip=settings.harvest_gzip,
            max_records=settings.harvest_part_max_records,
            max_bytes=settings.harvest_part_max_bytes,
            grace_seconds=recovery_grace_seconds(settings),
            wall=self.wall,
            on_committed=self._on_committed,
        )

    def wall(self) -> float:
        return self.now().timestamp()

    # ------------------------------------------------------------------ set-up
    async def load_contacts(self) -> None:
        """The push ledger's ContactIds whose taskId is unknown (asked once per run)."""
        if self.ledger is None:
            return
        try:
            self.contacts = set(await asyncio.to_thread(self.ledger.contacts_with_unknown_task))
        except QcflowError as exc:
            log.warning(
                "harvest: cannot read the push ledger's unknown taskIds (%s); no join this run",
                exc,
                extra={"event": "harvest_ledger_unavailable"},
            )

    async def list_unfinished(self) -> None:
        self.unfinished = set(await asyncio.to_thread(lambda: list(st.unfinished_results(self.store))))

    # ------------------------------------------------------------------ hot path
    async def handle(self, items: list[dict[str, Any]], *, page: bool = True) -> None:
        """Route one page (or one batch of by-taskId items)."""
        report = self.report
        if page:
            report.pages += 1
        harvested_at = rec.utc_now_text(self.now())
        for item in items:
            report.records_seen += 1
            result = rec.result_id(item)
            if result is None:
                log.warning("harvest: a result without TaskId was skipped", extra={"event": "harvest_no_task_id"})
                continue
            state = rec.state_of(item)
            if state in ("finished", "failed") and (
                rec.epoch_seconds(item.get("CreateTimeLong")) is None or rec.call_id_of(item) is None
            ):
                # the exactly-once key comes from these (always requested): a guessed key could
                # differ from the one another read gives the same result, and write it twice
                log.warning(
                    "harvest: result %s came without CreateTimeLong or Recording.Id; polled again later",
                    result,
                    extra={"event": "harvest_incomplete_identity"},
                )
                state = "unknown"
            if state == "running" or state == "unknown":
                if state == "unknown":
                    log.warning(
                        "harvest: result %s came without a readable Status; treated as unfinished",
                        result,
                        extra={"event": "harvest_unknown_status"},
                    )
                self._remember(result, item)
                continue
            partition = self.partitioner.of(item)
            await self.writer.ensure_loaded(partition)
            if self.writer.is_committed(partition, result):
                self.writer.skip()
                if self.writer.is_in_commit_log(partition, result):  # not merely queued in this run's spill
                    self._resolved(result)
                    call_id = rec.call_id_of(item)
                    if call_id in self.contacts:  # written before push learnt it lacks the taskId
                        await asyncio.to_thread(self._learn_task_id, call_id, rec.task_of(result))
                continue
            try:
                record = rec.to_record(item, self.zone, harvested_at)
                line = rec.encode_line(record)
            except (RecursionError, ValueError, TypeError) as exc:
                # one poison result must not stall every later pass on the same window: skipped, loudly
                log.error(
                    "harvest: result %s cannot be converted (%s); skipped",
                    result[:200],
                    type(exc).__name__,
                    extra={"event": "harvest_unconvertible", "result": result[:200]},
                )
                continue
            contact = record["call_id"] if record["call_id"] in self.contacts else None
            self.writer.add(partition, result, line, contact)
        if self.progress is not None and page:
            self.progress(self._snapshot())

    def _remember(self, result: str, item: dict[str, Any]) -> None:
        """A running result: make sure a marker remembers it (before the checkpoint moves)."""
        upload = rec.upload_seconds(item, self.zone)
        if self.unfinished is not None and result in self.unfinished:
            self.running_upload[result] = upload
            return
        if self.unfinished is not None:
            self.unfinished.add(result)
            self.fresh.add(result)
        first_seen = self.wall()

        def remember() -> None:
            if st.remember_unfinished(self.store, result, first_seen=first_seen, upload_time=upload, owner=self.run_id):
                self._count("unfinished_remembered")

        self._side.append(asyncio.ensure_future(asyncio.to_thread(remember)))

    def _count(self, name: str, by: int = 1) -> None:
        with self._count_lock:  # bumped from committing threads
            setattr(self.report, name, getattr(self.report, name) + by)

    def _resolved(self, result: str) -> None:
        """A remembered result met as already written: its marker is stale."""
        if self.unfinished is not None and result in self.unfinished:
            self.unfinished.discard(result)
            self._side.append(asyncio.ensure_future(asyncio.to_thread(self._forget, result)))

    def _forget(self, result: str) -> None:
        st.forget_unfinished(self.store, result)
        self._count("unfinished_resolved")

    def _on_committed(self, spill: Spill) -> None:
        """After a part is visible (in the committing thread): markers and the ledger join."""
        for result in spill.ids:
            if self.unfinished is None:
                # not listed (the callback path): a marker may exist; one delete is cheap
                st.forget_unfinished(self.store, result)
            elif result in self.unfinished:
                self.unfinished.discard(result)
                self._forget(result)
        for result, contact_id in spill.contacts.items():
            self._learn_task_id(contact_id, rec.task_of(result))

    def _learn_task_id(self, contact_id: str, task_id: str) -> None:
        """Tell the push ledger the taskId of a submission whose taskId SCA did not say."""
        try:
            self.ledger.record_task_id(contact_id, task_id)
            self.contacts.discard(contact_id)
        except QcflowError as exc:
            log.warning(
                "harvest: cannot record taskId %s for ContactId %s in the ledger: %s",
                task_id,
                contact_id,
                exc,
                extra={"event": "harvest_ledger_write_failed"},
            )

    def _snapshot(self) -> HarvestProgress:
        elapsed = time.monotonic() - self.started
        calls = self.limiter.acquired
        stats = getattr(self.reader, "stats", None)
        estimated = getattr(stats, "planned_pages", None) if stats is not None else None
        return HarvestProgress(
            pages=self.report.pages,
            records=self.report.records_seen,
            calls=calls,
            rate=calls / elapsed if elapsed > 0 else 0.0,
            elapsed=elapsed,
            estimated_total_pages=estimated if isinstance(estimated, int) else None,
            quota_rate=self.limiter.max_rate,
            written=self.writer.stats.written,
            windows_done=self.report.windows,
            windows_total=self.windows_total,
        )

    # ------------------------------------------------------------------ commits
    def seal(self) -> asyncio.Future[Any]:
        """Everything routed so far, committed: parts, unfinished markers, stale-marker deletes."""
        side, self._side = self._side, []
        done = asyncio.gather(self.writer.seal(), *side)
        self._outstanding.append(done)
        return done

    async def settle(self) -> None:
        """Wait for every background write (also after a failure: no thread left behind)."""
        await self.writer.close()
        pending = self._outstanding + self._side
        self._outstanding, self._side = [], []
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)

    # ------------------------------------------------------------------ phases
    async def recover(self) -> None:
        """Redo the parts whose writer died between its commit record and its upload."""
        grace = recovery_grace_seconds(self.settings)
        intents = await asyncio.to_thread(pending_intents, self.store)
        now = self.wall()
        for intent in intents:
            if now - intent.created_at < grace:
                continue  # its writer may still be at work
            results = await asyncio.to_thread(intent_results, self.store, intent)
            if results is None:
                await asyncio.to_thread(self.store.delete, intent.key)
                continue
            harvested_at = rec.utc_now_text(self.now())
            wanted = set(results)
            lines: list[tuple[str, bytes]] = []
            try:
                async for item in self.reader.tasks(
                    sorted({rec.task_of(r) for r in results}), deadline=self.read_deadline
                ):
                    result = rec.result_id(item)
                    if result in wanted:
                        wanted.discard(result)
                        lines.append((result, rec.encode_line(rec.to_record(item, self.zone, harvested_at))))
            except DeadlineReached:
                self.report.stopped_by_deadline = True
                return  # the marker stays: the next run recovers it
            missing = wanted
            if missing:
                log.error(
                    "harvest recovery of %s: %d committed task(s) could not be fetched again and are missing "
                    "from the part: %s",
                    intent.part,
                    len(missing),
                    sorted(missing)[:20],
                    extra={"event": "harvest_recovery_incomplete"},
                )
            written = await asyncio.to_thread(
                write_recovered, self.store, intent, lines, gzip=intent.part.endswith(".gz")
            )
            self.report.recovered += 1
            self.report.files.append(written.key)
            log.warning(
                "harvest: recovered part %s (%d records) left by run %s",
                written.key,
                written.records,
                intent.run,
                extra={"event": "harvest_recovered", "key": written.key},
            )

    async def read_windows(self, windows: list[Window], *, checkpoint: bool) -> None:
        """Read the windows in order: the next ``PREFETCH_WINDOWS`` are already being fetched
        while one is consumed (a window's first page costs a round trip before its other pages
        can start), and each window's commit overlaps the next one's reading."""
        self.windows_total = len(windows)
        lease_ok = lambda: self.lease_expires_at is None or self.wall() < self.lease_expires_at - self.lease_margin / 2  # noqa: E731
        previous: tuple[Window, asyncio.Future[Any]] | None = None
        upcoming = iter(windows)
        fetching: deque[tuple[Window, asyncio.Queue[tuple[str, Any]], asyncio.Task[None]]] = deque()

        def start_next() -> None:
            window = next(upcoming, None)
            if window is not None:
                queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue(maxsize=PREFETCH_PAGES)
                fetching.append((window, queue, asyncio.ensure_future(self._produce(window, queue))))

        try:
            if time.monotonic() < self.read_deadline:
                for _ in range(PREFETCH_WINDOWS):
                    start_next()
            elif windows:
                self.report.stopped_by_deadline = True
            while fetching:
                window, queue, _ = fetching[0]
                kind, value = await queue.get()
                if kind == "page":
                    await self.handle(value)
                    continue
                fetching.popleft()
                if kind == "error":
                    raise value
                done = self.seal()
                if previous is not None:
                    await self._finish(*previous, checkpoint=checkpoint)
                    previous = None
                if kind == "deadline":
                    self.report.stopped_by_deadline = True
                    await done
                    return
                previous = (window, done)
                if not lease_ok():
                    log.warning(
                        "harvest: the lease is about to expire; stopping after the windows read",
                        extra={"event": "harvest_lease_lost"},
                    )
                    self.report.stopped_by_deadline = True
                    break
                start_next()
            if previous is not None:
                await self._finish(*previous, checkpoint=checkpoint)
        finally:
            for _, _, task in fetching:
                task.cancel()
            if fetching:
                await asyncio.gather(*(task for _, _, task in fetching), return_exceptions=True)

    async def _produce(self, window: Window, queue: asyncio.Queue[tuple[str, Any]]) -> None:
        """Fetch one window's pages into ``queue`` (bounded: memory stays a few pages), then
        ``done``, ``deadline`` or ``error``."""
        try:
            for attempt in range(WINDOW_REREADS + 1):
                changed = self.reader.stats.count_changed
                async with contextlib.aclosing(self.reader.pages(window, deadline=self.read_deadline)) as pages:
                    async for items in pages:
                        await queue.put(("page", items))
                if self.reader.stats.count_changed == changed:
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

    async def _finish(self, window: Window, done: asyncio.Future[Any], *, checkpoint: bool) -> None:
        await done
        self.report.windows += 1
        if checkpoint:
            saved = await asyncio.to_thread(
                st.advance_checkpoint, self.store, window.end, owner=self.run_id, now=self.wall()
            )
            self.report.checkpoint = saved.through

    async def poll_unfinished(self) -> None:
        """Fetch (by taskId) the remembered results the windows did not meet; report the ones
        stuck.

        A result is checked for age only once this pass has looked at it (met it running, or
        fetched its task and found it running or absent), and its marker is read only when
        its upload time cannot rule "stuck" out (first seen is never before the upload)."""
        assert self.unfinished is not None
        to_fetch = sorted(self.unfinished - self.fresh - set(self.running_upload))
        looked_at = set(self.running_upload)
        if to_fetch and time.monotonic() < self.read_deadline:
            try:
                async for item in self.reader.tasks(
                    sorted({rec.task_of(r) for r in to_fetch}), deadline=self.read_deadline
                ):
                    await self.handle([item], page=False)
                looked_at.update(to_fetch)  # found running, found finished (resolved), or not found
            except DeadlineReached:
                self.report.stopped_by_deadline = True
            await self.seal()
        elif to_fetch:
            self.report.stopped_by_deadline = True
        await self._report_stuck((looked_at & self.unfinished) - self.fresh)

    async def _report_stuck(self, results: Iterable[str]) -> None:
        max_age = self.settings.harvest_unfinished_max_age_seconds
        now = self.wall()

        def check(result: str) -> str | None:
            upload = self.running_upload.get(result)
            if upload is not None and now - upload <= max_age:
                return None
            task = st.read_unfinished(self.store, result)
            if task is None or task.age(now) <= max_age:
                return None
            st.mark_stuck(self.store, task, now=now, owner=self.run_id)
            return result

        found = await asyncio.gather(*(asyncio.to_thread(check, result) for result in sorted(results)))
        stuck = [result for result in found if result is not None]
        for result in stuck:
            log.warning(
                "harvest: result %s is still unfinished after %.0f s; reported stuck and no longer polled",
                result,
                max_age,
                extra={"event": "harvest_task_stuck", "result": result},
            )
        self.report.stuck += len(stuck)
        self.report.stuck_results.extend(stuck)

    async def write_manifest(self, extra: dict[str, Any]) -> None:
        report = self.report
        day = self.started_at.astimezone(self.zone).strftime("%Y-%m-%d")
        key = f"{MANIFESTS}dt={day}/{self.run_id}.json"
        manifest = {
            "run_id": self.run_id,
            "mode": self.mode,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.now().isoformat(),
            "files": [written.to_json() for written in self.writer.stats.files],
            "records": report.written,
            "recovered_files": report.files[: report.recovered],
            **report.to_json(),
            **extra,
        }
        await asyncio.to_thread(write_manifest, self.store, key, manifest)
        report.manifest = key

    def finish_counts(self) -> None:
        report = self.report
        report.written = self.writer.stats.written
        report.duplicates_skipped = self.writer.stats.duplicates_skipped
        known = set(report.files)
        report.files.extend(written.key for written in self.writer.stats.files if written.key not in known)
        report.calls = self.limiter.acquired
        report.elapsed = time.monotonic() - self.started


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
    ledger: Any = None,
) -> HarvestReport:
    """One incremental pass (no ``since``/``until``) or a backfill of ``[since, until)``."""
    if until is not None and since is None:
        raise ValueError("a backfill needs since (until alone is not a range)")
    for name, value in (("since", since), ("until", until)):
        if value is not None and value.tzinfo is None:
            raise ValueError(f"{name} must be an aware datetime (with a time zone)")
    mode: Mode = "backfill" if since is not None else "incremental"
    # The lease lives for the budget plus a margin, at most harvest_lease_seconds; a longer
    # budget is cut so that the run never works past its own lease.
    budget = max(0.0, deadline - time.monotonic())
    margin = min(LEASE_MARGIN_SECONDS, settings.harvest_lease_seconds / 4)
    ttl = min(budget + margin, settings.harvest_lease_seconds)
    deadline = min(deadline, time.monotonic() + ttl - margin)
    run = _Pass(settings, sca, store, mode=mode, deadline=deadline, now=now, progress=progress, ledger=ledger)
    started_at = run.started_at
    prefix = st.BACKFILL_LEASE if mode == "backfill" else st.LEASE
    lease = await asyncio.to_thread(st.acquire_lease, store, run.run_id, now=run.wall(), ttl=ttl, prefix=prefix)
    if isinstance(lease, st.LeaseBusy):
        run.report.lease_busy = True
        log.info(
            "harvest: lease held by %s until %s; this run does nothing",
            lease.owner,
            lease.expires_at,
            extra={"event": "harvest_lease_busy"},
        )
        return run.report
    run.lease_expires_at, run.lease_margin = lease.expires_at, margin
    try:
        await run.load_contacts()
        await run.list_unfinished()
        await run.recover()
        if mode == "backfill":
            assert since is not None
            end = until if until is not None else started_at - timedelta(seconds=settings.harvest_settle_seconds)
            windows = chunks(since, end)
            await run.read_windows(windows, checkpoint=False)
            extra = {"since": since.isoformat(), "until": end.isoformat()}
        else:
            current = await asyncio.to_thread(st.read_checkpoint, store)
            run.report.checkpoint = current.through if current else None
            origin = current.through if current else started_at - timedelta(seconds=settings.harvest_start_seconds)
            start = origin - timedelta(seconds=settings.harvest_lookback_seconds)
            end = started_at - timedelta(seconds=settings.harvest_settle_seconds)
            windows = chunks(start, end)
            await run.read_windows(windows, checkpoint=True)
            if not run.report.stopped_by_deadline:
                await run.poll_unfinished()
            extra = {"since": start.isoformat(), "until": end.isoformat()}
        await run.settle()
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
        try:
            await asyncio.to_thread(st.release_lease, store, lease)
        except QcflowError as exc:  # it expires by itself
            log.warning("harvest: could not release the lease (%s); it expires at %s", exc, lease.expires_at)


async def harvest_task_ids(
    settings: Settings,
    sca: ScaClient,
    store: ObjectStore,
    task_ids: list[str],
    *,
    deadline: float,
    now: Callable[[], datetime] = _utc_now,
    ledger: Any = None,
) -> HarvestReport:
    """The callback fast path: fetch ``task_ids`` and write the finished ones, exactly once
    (no lease: the commit records make it exact against concurrent timer runs)."""
    run = _Pass(settings, sca, store, mode="tasks", deadline=deadline, now=now, progress=None, ledger=ledger)
    try:
        await run.load_contacts()
        wanted = list(dict.fromkeys(task_ids))
        try:
            async for item in run.reader.tasks(wanted, deadline=run.read_deadline):
                await run.handle([item], page=False)
        except DeadlineReached:
            run.report.stopped_by_deadline = True
        await run.seal()
        await run.settle()
        run.finish_counts()
        if run.report.files:
            await run.write_manifest({"task_ids": wanted[:100]})
        return run.report
    finally:
        await run.settle()
