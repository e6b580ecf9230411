"""What a feed hands its pipeline (``pipeline.py``): the parts that differ between feeds.

A *feed* reads GetResult under one AIMD limiter and writes what it reads exactly once
(``output.ResultWriter``). The harvest is one (windows by upload time, into ``results/``);
a feed of reviews (windows by last-review time, into ``reviews/``) is the next. Its
coordinator builds these and hands them to ``pipeline.Pipeline``:

- a ``ResultSource`` (a ``reader.WindowReader``): which time selects a window;
- a ``Placement``: the partition a finished result is written to (the harvest's: the upload
  hour, ``run._UploadHour``);
- ``ResultHooks``: what happens to a result met unfinished, to one met already written, and
  to a part's results once the part is visible (the harvest's:
  ``unfinished.UnfinishedResults``);
- a ``Budget``: the pass's time, shared by every phase;
- the windows (``chunks``), and what follows a window's commit (an ``after_commit`` for
  ``Pipeline.read_windows``: the harvest's timer pass advances its checkpoint).
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable
from datetime import datetime, timezone
from typing import Any, Protocol

from qcflow.harvest.reader import ReaderStats, Window

Item = dict[str, Any]
#: A blocking store write a hook asks for; it runs in a thread, and the next ``seal`` waits for it.
StoreWrite = Callable[[], None]

#: Windows are cut at whole hours (of epoch time): a checkpoint step, and one output partition.
CHUNK_SECONDS = 3600

#: Time kept at the end of a budget to commit what was read (at most a quarter of the budget).
COMMIT_MARGIN_SECONDS = 20.0


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


class Budget:
    """A pass's time on ``time.monotonic()``: it ends at ``deadline``; reading stops at
    ``read_deadline`` (``deadline`` less ``COMMIT_MARGIN_SECONDS``, at most a quarter of the
    budget) so that what was read can still be committed. ``stopped``: some phase stopped
    before its work was done (the deadline, or the lease), and the next pass goes on from there."""

    def __init__(self, deadline: float) -> None:
        self.started = time.monotonic()
        self.deadline = deadline
        self.read_deadline = deadline - min(COMMIT_MARGIN_SECONDS, max(0.0, deadline - self.started) / 4)
        self.stopped = False

    def may_read(self) -> bool:
        return time.monotonic() < self.read_deadline

    def elapsed(self) -> float:
        return time.monotonic() - self.started


class ResultSource(Protocol):
    """GetResult items by window and by taskId (``reader.WindowReader`` is one)."""

    @property
    def stats(self) -> ReaderStats: ...

    def pages(self, window: Window, *, deadline: float) -> AsyncGenerator[list[Item], None]: ...

    def tasks(self, task_ids: Iterable[str], *, deadline: float) -> AsyncIterator[Item]: ...


class Placement(Protocol):
    """Where a feed writes a finished result: the partition of the time that selects it."""

    #: The item field that time comes from (named in the log when it is missing).
    time_field: str

    def of(self, item: Item) -> str | None:
        """The partition, or ``None`` when the item lacks ``time_field``: the exactly-once key
        must not be guessed (another read of the same result could guess otherwise, and write
        it twice), so such a result is treated as unfinished and met again later."""
        ...


class ResultHooks(Protocol):
    """What a feed does about a result besides writing it."""

    def running(self, result: str, item: Item) -> StoreWrite | None:
        """``result`` is not finished (or its status is unreadable)."""
        ...

    def written_before(self, result: str) -> StoreWrite | None:
        """``result`` is listed in a commit record already (written, or recoverable)."""
        ...

    def committed(self, results: Iterable[str]) -> None:
        """A part holding ``results`` is visible (runs in the committing thread)."""
        ...
