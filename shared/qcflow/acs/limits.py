"""Client-side rate limits that keep a whole run just under an API's quota, and the callback's
bucket that refuses instead of waiting."""

from __future__ import annotations

import time
from collections.abc import Callable

from aiolimiter import AsyncLimiter

from qcflow.errors import LimitReachedError


class CountingLimiter(AsyncLimiter):
    """An ``AsyncLimiter`` that counts the slots it granted: ``acquired`` is the number of real
    API calls (attempts, retries included) made through it, which a progress bar turns into a
    rate and a share of the quota (counting results instead would miss retries and batches)."""

    def __init__(self, max_rate: float, time_period: float = 60) -> None:
        super().__init__(max_rate, time_period)
        self.acquired = 0

    async def acquire(self, amount: float = 1) -> None:
        await super().acquire(amount)
        self.acquired += 1


def rate_limiter(rate_per_second: float) -> CountingLimiter:
    """A leaky bucket allowing ``rate_per_second`` on average and at most one second's burst.

    A quota of 1000 calls / 60 s is enforced by the service over its own window; a full
    60 s bucket would let a run burst 1000 calls at once, so the bucket holds one second.
    """
    if rate_per_second <= 0:
        raise ValueError("rate_per_second must be positive")
    if rate_per_second >= 1:
        return CountingLimiter(rate_per_second, 1.0)
    return CountingLimiter(1, 1.0 / rate_per_second)


class TokenBucket:
    """A bucket that never waits: a call takes a token or is refused (``LimitReachedError``).

    For the callback function: a flood of callbacks must not queue behind a limiter (each
    queued invocation holds an instance, and SCA would time out and call again) nor spend more
    than its share of the GetResult quota, so a call over the rate is answered "later" at once.
    ``rate_per_second`` tokens are added continuously up to ``capacity``; the bucket starts full.
    ``async with bucket:`` takes one (the ``RateLimiter`` shape ``AcsClient`` expects). Not
    thread-safe: one per event loop (FC's instance loop serves every invocation of the instance).
    """

    def __init__(self, rate_per_second: float, capacity: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        if rate_per_second < 0 or capacity < 1:
            raise ValueError("rate_per_second must not be negative and capacity must be at least 1")
        self.rate = float(rate_per_second)
        self.capacity = int(capacity)
        self.max_rate = self.rate  # the name progress reports read
        self._clock = clock
        self._tokens = float(capacity) if self.rate > 0 else 0.0
        self._at = clock()
        #: Tokens taken (calls let through) and calls refused, for reports and tests.
        self.acquired = 0
        self.refused = 0

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(float(self.capacity), self._tokens + (now - self._at) * self.rate)
        self._at = now

    def available(self) -> bool:
        """Would a call be let through now? (Nothing is taken.)"""
        self._refill()
        return self._tokens >= 1.0

    def take(self) -> None:
        """Take a token, or raise ``LimitReachedError``."""
        self._refill()
        if self._tokens < 1.0:
            self.refused += 1
            raise LimitReachedError("the callback's share of the GetResult quota is spent for now", action="GetResult")
        self._tokens -= 1.0
        self.acquired += 1

    async def __aenter__(self) -> TokenBucket:
        self.take()
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None
