"""The review feed: GetResult by last-review time into ``reviews/``, one line per review saved.

An inspection is not final when SCA finishes it: QA staff review it (``ReviewStatus``, a new
``Score``, ``Resolver``, ``Comments``…), agents appeal, it is reviewed again. The harvest
writes a result once, when it finishes; this feed writes the result *again after every
review*, so that the lake holds what the console shows. What differs from the harvest is
handed to the same ``pipeline.Pipeline`` (``feed.py``), never switched on a flag:

- the reader selects windows by ``reviewStartTime``/``reviewEndTime`` (the time the *last*
  review was saved), with the same paging, splitting and 10,000 rule (``WindowReader(by=
  "review")``), under the **same** AIMD limiter as the pass's results (one quota per account);
- a review's identity is ``<TaskId>|<Recording.Id>|<review ms>`` (``review_id``: the last
  review's ``ReviewTimeLong``, seconds or milliseconds, told by magnitude), and its partition
  the review hour in ``QCFLOW_SCA_TIME_ZONE`` (``ReviewHour``): the exactly-once writer's
  commit records (``output.REVIEWS_ROOM``, under ``state/reviews/commits/``) make every
  review land once across overlapping passes, crashes, retries, backfills and callbacks;
- its checkpoint is its own (``state/reviews/checkpoint/``): never backwards, advanced to a
  window's end only once the window is committed; a first pass starts
  ``QCFLOW_HARVEST_START_SECONDS`` ago and saves that start as the checkpoint at once, like
  the harvest's (``state.origin``); each pass re-reads
  ``QCFLOW_HARVEST_LOOKBACK_SECONDS`` before it and stops ``QCFLOW_HARVEST_SETTLE_SECONDS``
  before now (the harvest's settings: a review is indexed like an upload);
- nothing is "unfinished": a reviewed result is finished. A result met in a review window
  without ``ReviewTimeLong`` is logged and skipped (it has no identity to be written under).

What GetResult cannot give: a task reviewed twice *between two reads* shows only its last
review, so one line is written for both (its ``review_history`` still lists each, with old
and new scores). A review read while the pass pages its window and then reviewed again moves
to a later window: both lines are written (the re-read of a window whose ``Count`` changed
drops nothing already read).

The share of a pass (``run.py``): results are read first, but the review feed always keeps
at least ``QCFLOW_HARVEST_REVIEWS_MIN_SHARE`` of the pass's time: the results stop reading
at ``deadline - share × budget``, and the reviews read from when the results are done to the
pass's deadline — all of it when the results have no backlog. The two never run at once, so
together they never exceed the one limiter's pace.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from qcflow import layout
from qcflow.config import Settings
from qcflow.harvest import records as rec
from qcflow.harvest import state as st
from qcflow.harvest.feed import Budget, Item, StoreWrite, chunks
from qcflow.harvest.fields import required_fields
from qcflow.harvest.join import TaskIdJoin
from qcflow.harvest.output import REVIEWS_ROOM, ResultWriter, Spill
from qcflow.harvest.pipeline import Pipeline
from qcflow.harvest.reader import Window, WindowReader
from qcflow.harvest.recovery import recover
from qcflow.pii import Redactor
from qcflow.sca import ScaClient
from qcflow.store import ObjectStore

log = logging.getLogger("qcflow.harvest")


def review_millis(item: Item) -> int | None:
    """When the item's last review was saved (epoch ms), from ``ReviewTimeLong`` — seconds or
    milliseconds, told by magnitude (the page's example is in seconds) — or ``None``."""
    seconds = rec.epoch_seconds(item.get("ReviewTimeLong"))
    return None if seconds is None else int(round(seconds * 1000))


def is_reviewed(item: Item) -> bool:
    return review_millis(item) is not None


def review_id(item: Item) -> str | None:
    """A review's exactly-once identity: ``<TaskId>|<Recording.Id>|<review ms>``."""
    result = rec.result_id(item)
    millis = review_millis(item)
    return None if result is None or millis is None else f"{result}|{millis}"


class ReviewHour:
    """The reviews' partitions: the review hour in SCA's zone, from ``ReviewTimeLong``."""

    time_field = "ReviewTimeLong"

    def __init__(self, zone: ZoneInfo) -> None:
        self._hours = rec.Partitioner(zone)

    def of(self, item: Item) -> str | None:
        millis = review_millis(item)
        return None if millis is None else self._hours.of_seconds(millis / 1000)


class ReviewHooks:
    """Nothing to remember: a result in a review window is finished; one without a review
    time (no identity) is left to the next review of it."""

    def running(self, result: str, item: Item) -> StoreWrite | None:
        return None

    def written_before(self, result: str) -> StoreWrite | None:
        return None

    def committed(self, results: Iterable[str]) -> None:
        return None


class ReviewFeed:
    """One pass's review feed: its reader (by review time, on the pass's limiter), its
    pipeline into ``reviews/`` and its own budget; the checkpoint moves after each commit."""

    def __init__(
        self,
        settings: Settings,
        sca: ScaClient,
        store: ObjectStore,
        *,
        limiter: Any,
        run_id: str,
        deadline: float,
        now: Callable[[], datetime],
        grace_seconds: float,
        redactor: Redactor | None = None,
        raw_store: ObjectStore | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        #: ``QCFLOW_PII``, as for the results (the pass hands its own); ``QCFLOW_PII_RAW_STORE``'s
        #: ``reviews/`` gets the unredacted review rows through the same writer.
        self.redactor = redactor if redactor is not None else Redactor.from_settings(settings.pii)
        self.raw_store = raw_store if self.redactor.active else None
        self.run_id = run_id
        self.now = now
        self.started_at = now()
        self.grace_seconds = grace_seconds
        self.budget = Budget(deadline)
        self.checkpoint: datetime | None = None
        self.recovered: list[str] = []
        zone = settings.zone
        reader = WindowReader(
            sca, limiter, zone=zone, required_fields=required_fields(settings.harvest, reviews=True), by="review"
        )
        self.pipeline = Pipeline(
            reader,
            limiter,
            self._writer,
            placement=ReviewHour(zone),
            hooks=ReviewHooks(),
            join=TaskIdJoin(None),
            zone=zone,
            now=now,
            budget=self.budget,
            identity=review_id,
            redactor=self.redactor,
            make_raw_writer=self._raw_writer if self.raw_store is not None else None,
        )

    def wall(self) -> float:
        return self.now().timestamp()

    def _raw_writer(self) -> ResultWriter:
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
            room=REVIEWS_ROOM,
        )

    async def recover(self) -> None:
        """Parts of ``reviews/`` lost by a crash between commit record and upload."""
        written = await recover(
            self.store,
            self.pipeline.source,
            grace=self.grace_seconds,
            zone=self.settings.zone,
            now=self.now,
            budget=self.budget,
            room=REVIEWS_ROOM,
            identity=review_id,
            redactor=self.redactor,
        )
        self.recovered = [w.key for w in written]
        if self.raw_store is not None:  # the raw copy's lost parts, unredacted
            await recover(
                self.raw_store,
                self.pipeline.source,
                grace=self.grace_seconds,
                zone=self.settings.zone,
                now=self.now,
                budget=self.budget,
                room=REVIEWS_ROOM,
                identity=review_id,
                redactor=Redactor("off"),
            )

    async def incremental(self, lease_holds: Callable[[], bool]) -> dict[str, Any]:
        """From the review checkpoint (less the lookback) to ``now - settle``."""
        harvest = self.settings.harvest
        first = self.started_at - timedelta(seconds=harvest.start_seconds)
        current = await asyncio.to_thread(
            st.origin, self.store, first, owner=self.run_id, now=self.wall(), prefix=layout.REVIEW_CHECKPOINT
        )
        self.checkpoint = current.through
        start = current.through - timedelta(seconds=harvest.lookback_seconds)
        end = self.started_at - timedelta(seconds=harvest.settle_seconds)
        await self.pipeline.read_windows(chunks(start, end), lease_holds=lease_holds, after_commit=self.advance)
        return {"reviews_since": start.isoformat(), "reviews_until": end.isoformat()}

    async def backfill(
        self, since: datetime, until: datetime | None, lease_holds: Callable[[], bool]
    ) -> dict[str, Any]:
        """Reviews saved in ``[since, until)`` (``until``: ``now - settle``); no checkpoint moved."""
        end = until if until is not None else self.started_at - timedelta(seconds=self.settings.harvest.settle_seconds)
        await self.pipeline.read_windows(chunks(since, end), lease_holds=lease_holds)
        return {"reviews_since": since.isoformat(), "reviews_until": end.isoformat()}

    async def advance(self, window: Window) -> None:
        saved = await asyncio.to_thread(
            st.advance_checkpoint,
            self.store,
            window.end,
            owner=self.run_id,
            now=self.wall(),
            prefix=layout.REVIEW_CHECKPOINT,
        )
        self.checkpoint = saved.through

    async def take(self, item: Item) -> None:
        """An item fetched by taskId elsewhere (the callback's fetch): a review row if reviewed."""
        if is_reviewed(item):
            await self.pipeline.handle([item], page=False)

    def counts(self) -> dict[str, Any]:
        stats, writer = self.pipeline.stats, self.pipeline.writer.stats
        return {
            "reviews_windows": stats.windows,
            "reviews_seen": stats.records_seen,
            "reviews_written": writer.written,
            "reviews_duplicates_skipped": writer.duplicates_skipped,
            "reviews_recovered": len(self.recovered),
            "review_checkpoint": self.checkpoint.isoformat() if self.checkpoint else None,
            "reviews_stopped_by_deadline": self.budget.stopped,
        }

    def files(self) -> list[str]:
        return self.recovered + [w.key for w in self.pipeline.writer.stats.files]
