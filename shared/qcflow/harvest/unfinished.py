"""Results met unfinished: remembered until written, polled by taskId, reported when stuck.

A window is read once (its checkpoint then moves past it), but its running results finish
later. So a result met running gets a marker in ``state/harvest/unfinished/`` (``state.py``)
before its window's checkpoint moves (the pipeline's ``seal`` waits for the marker); the marker
is deleted once the result is written — by any run: a part becoming visible (``committed``), or
a result met already listed in a commit record (``written_before``). Each timer pass polls, by
taskId, the remembered results its windows did not meet (``poll``); one still running past
``harvest_unfinished_max_age_seconds`` is reported stuck (``state/harvest/stuck/``) and polled
no more.

``UnfinishedResults`` is the harvest's ``feed.ResultHooks``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from qcflow.harvest import records as rec
from qcflow.harvest import state as st
from qcflow.store import ObjectStore

if TYPE_CHECKING:
    from qcflow.harvest.feed import StoreWrite
    from qcflow.harvest.pipeline import Pipeline

log = logging.getLogger("qcflow.harvest")


class UnfinishedResults:
    """One pass's unfinished bookkeeping, and its counts (bumped from committing threads too)."""

    def __init__(
        self, store: ObjectStore, *, run_id: str, zone: ZoneInfo, wall: Callable[[], float], max_age: float
    ) -> None:
        self.store = store
        self.run_id = run_id
        self.zone = zone
        self.wall = wall
        self.max_age = max_age
        #: Remembered unfinished results (listed at the start; ``None``: not listed, e.g. callbacks).
        self.listed: set[str] | None = None
        #: Remembered results met running in this pass (→ their upload time), and markers this
        #: pass created (too young to be stuck).
        self.running_upload: dict[str, float | None] = {}
        self.fresh: set[str] = set()
        self.remembered = 0
        self.resolved = 0
        self.stuck_results: list[str] = []
        self._count_lock = threading.Lock()

    async def load(self) -> None:
        """Read the remembered results (a timer pass does, before its windows)."""
        self.listed = set(await asyncio.to_thread(lambda: list(st.unfinished_results(self.store))))

    # ------------------------------------------------------------------ the pipeline's hooks
    def running(self, result: str, item: dict[str, Any]) -> StoreWrite | None:
        """A running result: make sure a marker remembers it (before the checkpoint moves)."""
        upload = rec.upload_seconds(item, self.zone)
        if self.listed is not None and result in self.listed:
            self.running_upload[result] = upload
            return None
        if self.listed is not None:
            self.listed.add(result)
            self.fresh.add(result)
        first_seen = self.wall()

        def remember() -> None:
            if st.remember_unfinished(self.store, result, first_seen=first_seen, upload_time=upload, owner=self.run_id):
                with self._count_lock:
                    self.remembered += 1

        return remember

    def written_before(self, result: str) -> StoreWrite | None:
        """A remembered result met as already written: its marker is stale."""
        if self.listed is not None and result in self.listed:
            self.listed.discard(result)
            return functools.partial(self._forget, result)
        return None

    def committed(self, results: Iterable[str]) -> None:
        """A part holding ``results`` is visible (in the committing thread): their markers go."""
        for result in results:
            if self.listed is None:
                # not listed (the callback path): a marker may exist; one delete is cheap
                st.forget_unfinished(self.store, result)
            elif result in self.listed:
                self.listed.discard(result)
                self._forget(result)

    def _forget(self, result: str) -> None:
        st.forget_unfinished(self.store, result)
        with self._count_lock:
            self.resolved += 1

    # ------------------------------------------------------------------ polling
    async def poll(self, pipeline: Pipeline) -> None:
        """Fetch (by taskId, through ``pipeline``) the remembered results the windows did not
        meet; report the ones stuck.

        A result is checked for age only once this pass has looked at it (met it running, or
        fetched its task and found it running or absent), and its marker is read only when
        its upload time cannot rule "stuck" out (first seen is never before the upload)."""
        assert self.listed is not None
        to_fetch = sorted(self.listed - self.fresh - set(self.running_upload))
        looked_at = set(self.running_upload)
        if to_fetch and pipeline.budget.may_read():
            if await pipeline.read_tasks(sorted({rec.task_of(r) for r in to_fetch})):
                looked_at.update(to_fetch)  # found running, found finished (resolved), or not found
        elif to_fetch:
            pipeline.budget.stopped = True
        await self.report_stuck((looked_at & self.listed) - self.fresh)

    async def report_stuck(self, results: Iterable[str]) -> None:
        """Mark stuck those of ``results`` unfinished for longer than ``max_age``."""
        max_age = self.max_age
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
        self.stuck_results.extend(stuck)
