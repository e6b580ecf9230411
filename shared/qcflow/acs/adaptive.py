"""A rate limiter that holds a whole run just under an API quota, and backs off when throttled.

Why not ``aiolimiter`` alone: the quota (GetResult: 1000 calls / 60 s) is per *account*, and
another client on the same account (a console export, a second harvester) takes part of it
without telling us. A fixed rate at the ceiling would then be throttled on and on, each
refused call retried after a backoff; the run gets slow and may run out of time. This
limiter follows TCP's congestion rule instead: additive increase while calls succeed,
multiplicative decrease when one is throttled, never above the configured ceiling.

Spacing is a GCRA (generic cell rate algorithm, a leaky bucket by arrival times): calls are
spaced ``1/rate`` apart, with a small tolerance of ``burst`` calls so that an event loop
that wakes a millisecond late does not lose the slot for good. The service counts calls in
a sliding window of W seconds; this limiter alone admits at most ``rate × W + burst`` in
any such window, so ``burst`` must fit in the headroom the ceiling leaves under the quota
(``from_settings`` makes sure it does).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from qcflow.config import QuotaSettings

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[Any]]


class AdaptiveRateLimiter:
    """``async with limiter:`` waits for a slot; ``on_throttled``/``on_success`` steer the rate.

    - ``max_rate_per_second``: the ceiling (the quota less its headroom); the rate starts there.
    - ``min_rate``: the floor of multiplicative decrease (default: a sixteenth of the ceiling).
    - ``increase``: calls/s regained per second of successful calls at the current pace
      (each success adds ``increase / rate``), default: a thirtieth of the ceiling, so a
      halved rate is back at the ceiling in about fifteen seconds.
    - ``decrease_factor``: the rate is multiplied by it on throttling, at most once per
      ``cooldown_seconds`` — the calls already in flight when the quota ran out are all
      throttled together, and that is one signal, not many.
    - ``burst``: calls allowed back to back after an idle spell (default: one second's worth,
      at least 2); keep ``burst`` below the quota's headroom in calls.
    - ``clock``/``sleep``: injectable for deterministic tests (a fake clock and a sleep that
      advances it).

    One instance is meant to be shared by every caller of one API in one process. It is not
    thread-safe: use it from one event loop.
    """

    def __init__(
        self,
        max_rate_per_second: float,
        *,
        min_rate: float | None = None,
        increase: float | None = None,
        decrease_factor: float = 0.5,
        burst: int | None = None,
        cooldown_seconds: float = 1.0,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if not max_rate_per_second > 0 or math.isinf(max_rate_per_second):
            raise ValueError("max_rate_per_second must be a positive finite number")
        if not 0 < decrease_factor < 1:
            raise ValueError("decrease_factor must be between 0 and 1 (exclusive)")
        self.max_rate = float(max_rate_per_second)
        self.min_rate = min(self.max_rate, float(min_rate) if min_rate is not None else self.max_rate / 16)
        if self.min_rate <= 0:
            raise ValueError("min_rate must be positive")
        self.increase = float(increase) if increase is not None else self.max_rate / 30
        if self.increase < 0:
            raise ValueError("increase must not be negative")
        self.decrease_factor = decrease_factor
        self.burst = max(1, int(burst)) if burst is not None else max(2, int(self.max_rate))
        self.cooldown_seconds = cooldown_seconds
        self._clock = clock
        self._sleep = sleep
        self._rate = self.max_rate
        self._tat: float | None = None  # theoretical arrival time of the next call (GCRA)
        self._last_decrease: float | None = None
        self._lock: asyncio.Lock | None = None
        #: Counters for progress and reports.
        self.acquired = 0
        self.throttled = 0
        self.decreases = 0

    @classmethod
    def from_settings(cls, quotas: QuotaSettings, **overrides: Any) -> AdaptiveRateLimiter:
        """The harvest's GetResult limiter: ``quota × (1 - headroom) / window`` calls/s, less the
        share left to callbacks (``get_result_callback_share``: a callback flood then takes at
        most that share, and the harvest never needs to back off for it).

        The burst is kept to half the headroom in calls (and at most one second's worth), so
        that this limiter alone never exceeds the service's sliding window.
        """
        quota = quotas.get_result_quota
        rate = quotas.harvest_rate_per_second
        spare = int(quota * quotas.get_result_headroom / 2)
        burst = max(1, min(spare, max(2, int(rate))))
        options: dict[str, Any] = {"burst": burst}
        options.update(overrides)
        return cls(rate, **options)

    # ------------------------------------------------------------------ state

    @property
    def rate(self) -> float:
        """The current allowed rate, calls per second."""
        return self._rate

    @property
    def interval(self) -> float:
        return 1.0 / self._rate

    def on_success(self) -> None:
        """A call went through: creep back up, ``increase`` calls/s per second of successes."""
        if self._rate < self.max_rate:
            self._rate = min(self.max_rate, self._rate + self.increase / self._rate)

    def on_throttled(self) -> None:
        """A call was throttled: someone else takes part of the quota. Halve (once per cooldown)."""
        self.throttled += 1
        now = self._clock()
        if self._last_decrease is not None and now - self._last_decrease < self.cooldown_seconds:
            return
        self._last_decrease = now
        self.decreases += 1
        self._rate = max(self.min_rate, self._rate * self.decrease_factor)
        # no saved-up burst right after a refusal: the next call waits a full (new) interval
        self._tat = max(self._tat or now, now) + self.interval

    # ------------------------------------------------------------------ waiting

    async def acquire(self) -> None:
        """Wait until a call may start. Waiters are served in arrival order."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            while True:
                now = self._clock()
                interval = self.interval
                tat = now if self._tat is None else self._tat
                # GCRA: a call may start once now >= TAT - tolerance; then TAT moves one interval on
                earliest = tat - (self.burst - 1) * interval
                if now >= earliest:
                    self._tat = max(tat, now) + interval
                    self.acquired += 1
                    return
                # the rate may change while we sleep (throttling elsewhere): look again after
                await self._sleep(earliest - now)

    async def __aenter__(self) -> AdaptiveRateLimiter:
        await self.acquire()
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    def __repr__(self) -> str:
        return f"AdaptiveRateLimiter(rate={self._rate:.3f}/s, max={self.max_rate:.3f}/s, burst={self.burst})"
