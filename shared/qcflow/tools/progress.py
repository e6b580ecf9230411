"""Progress bars for long CLI runs (push, replay, harvest), on rich, with numbers that hold.

What the first bars got wrong, and the rule here instead:

- a rate of *results per second since the start* is not a rate of API calls: 16 calls in the
  first tenth of a second showed as 209.7 calls/s, "1297 % of the quota". The rate here is of
  the real calls the run's limiter granted (``acquired``), over a sliding window (20 s);
- a share of the quota is calls made *within the quota's window* (the last 60 s) against the
  calls it allows there — nothing sent is 0 %, 16 calls are 1.6 % of 1000/60 s;
- the ETA is the work left at the windowed rate of finished items, and none while that rate is
  unknown (the first second, or a total nobody knows);
- the final counts on the bar are the summary's: ``finish`` sets them from the run's report.

Rich refreshes the bar in its own thread; the columns sample the counters when they render,
so the rate moves while the run waits on the quota, not only when an item finishes.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Column
from rich.text import Text

Clock = Callable[[], float]

#: Seconds of history behind a rate: long enough to smooth batches and retries, short enough to
#: show a slowdown (a throttled quota) within a few seconds.
RATE_WINDOW_SECONDS = 20.0
#: A rate needs at least this much history; before, it is unknown (shown as "-").
MIN_SPAN_SECONDS = 1.0


class Meter:
    """A cumulative counter sampled over time: its rate over a sliding window, and how much it
    grew within the last N seconds. Thread-safe (sampled from rich's refresh thread)."""

    def __init__(self, read: Callable[[], int], *, keep_seconds: float = 60.0, clock: Clock = time.monotonic) -> None:
        self._read = read
        self._clock = clock
        self._keep = keep_seconds
        self._lock = threading.Lock()
        self.started = clock()
        self._base = read()
        self._samples: deque[tuple[float, int]] = deque([(self.started, self._base)])

    def sample(self) -> int:
        """Read the counter now; returns its growth since the meter started."""
        now, value = self._clock(), self._read()
        with self._lock:
            self._samples.append((now, value))
            # keep one sample older than the horizon: it is where a window's count starts
            while len(self._samples) > 2 and self._samples[1][0] <= now - self._keep:
                self._samples.popleft()
        return value - self._base

    def _at(self, moment: float) -> tuple[float, int]:
        """The last sample at or before ``moment`` (the first one if none is that old)."""
        found = self._samples[0]
        for sample in self._samples:
            if sample[0] > moment:
                break
            found = sample
        return found

    def within(self, seconds: float) -> int:
        """How much the counter grew in the last ``seconds`` (since the start, if younger)."""
        self.sample()
        with self._lock:
            now, value = self._samples[-1]
            return value - self._at(now - seconds)[1]

    def rate(self, window: float = RATE_WINDOW_SECONDS) -> float | None:
        """Per second over the last ``window`` seconds (less at the start); None before
        ``MIN_SPAN_SECONDS`` of history."""
        self.sample()
        with self._lock:
            now, value = self._samples[-1]
            then, before = self._at(now - window)
        span = now - then
        if span < MIN_SPAN_SECONDS:
            return None
        return (value - before) / span


@dataclass(frozen=True)
class Quota:
    """An API's quota: ``calls`` per ``window_seconds`` (the service counts over that window)."""

    name: str
    calls: int
    window_seconds: float


class _CallsColumn(ProgressColumn):
    """``12.3 calls/s · 20% of upload quota`` (windowed rate; the share is the calls made within
    the quota's window, e.g. the last 60 s, against the calls it allows there)."""

    def __init__(self, bar: RunBar) -> None:
        super().__init__(table_column=Column(no_wrap=True))
        self.bar = bar

    def render(self, task: Task) -> Text:
        return Text(self.bar.calls_text(), style="progress.data.speed")


class _EtaColumn(ProgressColumn):
    """The work left at the windowed rate of finished items; ``ETA -`` while unknown."""

    def __init__(self, bar: RunBar) -> None:
        super().__init__(table_column=Column(no_wrap=True))
        self.bar = bar

    def render(self, task: Task) -> Text:
        return Text(self.bar.eta_text(), style="progress.remaining")


class _CountColumn(ProgressColumn):
    """``done/total``, or ``done`` when the total is unknown."""

    def render(self, task: Task) -> Text:
        done = int(task.completed)
        text = f"{done:,}/{int(task.total):,}" if task.total is not None else f"{done:,}"
        return Text(text, style="progress.download")


class RunBar:
    """One bar of a run: items done (and total when known), a free text, the calls counter's rate
    and quota share, elapsed time and an honest ETA."""

    def __init__(
        self,
        progress: Progress,
        task: TaskID,
        *,
        calls: Callable[[], int] | None,
        quota: Quota | None,
        window: float,
        clock: Clock,
    ) -> None:
        self.progress = progress
        self.task = task
        self.quota = quota
        self.window = window
        keep = max(window, quota.window_seconds if quota else 0.0) + 1.0
        self.calls = Meter(calls, keep_seconds=keep, clock=clock) if calls is not None else None
        self.items = Meter(lambda: int(self._task().completed), keep_seconds=window + 1.0, clock=clock)

    def _task(self) -> Task:
        return next(task for task in self.progress.tasks if task.id == self.task)

    # ---------------------------------------------------------------- updates (the run's thread)
    def advance(self, amount: int = 1, *, text: str | None = None) -> None:
        fields: dict[str, Any] = {} if text is None else {"extra": text}
        self.progress.update(self.task, advance=amount, **fields)

    def update(self, *, completed: int | None = None, total: int | None = None, text: str | None = None) -> None:
        fields: dict[str, Any] = {} if text is None else {"extra": text}
        if total is not None:
            fields["total"] = total
        self.progress.update(self.task, completed=completed, **fields)

    def finish(self, *, completed: int, text: str, total: int | None = None) -> None:
        """The run's final numbers (the summary's), then one last render."""
        task = self._task()
        self.progress.update(
            self.task, completed=completed, total=total if total is not None else task.total, extra=text
        )
        self.progress.refresh()

    # ---------------------------------------------------------------- texts (rich's refresh thread)
    def calls_text(self) -> str:
        if self.calls is None:
            return ""
        rate = self.calls.rate(self.window)
        shown = "- calls/s" if rate is None else f"{rate:.1f} calls/s"
        if self.quota is None:
            return shown
        used = self.calls.within(self.quota.window_seconds)
        share = used / self.quota.calls if self.quota.calls else 0.0
        shown_share = "<1%" if 0 < share < 0.01 else f"{share:.0%}"
        return f"{shown} · {shown_share} of {self.quota.name}"

    def eta_text(self) -> str:
        return "ETA " + format_eta(self.eta())

    def eta(self) -> float | None:
        """Seconds left: what is left at the windowed rate of finished items; None when unknown."""
        task = self._task()
        if task.total is None or task.finished:
            return None if task.total is None else 0.0
        rate = self.items.rate(self.window)
        if not rate:
            return None
        return max(0.0, (task.total - task.completed) / rate)


def format_eta(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


@contextmanager
def run_bar(
    description: str,
    total: int | None,
    *,
    console: Console,
    calls: Callable[[], int] | None = None,
    quota: Quota | None = None,
    window: float = RATE_WINDOW_SECONDS,
    clock: Clock = time.monotonic,
    enabled: bool = True,
) -> Iterator[RunBar]:
    """A bar on ``console`` (stderr: stdout stays for results) for the block's lifetime.

    ``calls``: reads the run's count of real API calls (a limiter's ``acquired``); ``quota``:
    what those calls are measured against.
    """
    columns: list[ProgressColumn] = [
        TextColumn("[bold]{task.description}", table_column=Column(no_wrap=True, min_width=len(description))),
        BarColumn(bar_width=20),
        _CountColumn(table_column=Column(no_wrap=True)),
    ]
    progress = Progress(*columns, console=console, transient=False, disable=not enabled)
    task = progress.add_task(description, total=total, extra="")
    bar = RunBar(progress, task, calls=calls, quota=quota, window=window, clock=clock)
    progress.columns = (
        *columns,
        TextColumn("{task.fields[extra]}", table_column=Column(no_wrap=True)),
        _CallsColumn(bar),
        TimeElapsedColumn(),
        _EtaColumn(bar),
    )
    with progress:
        yield bar
