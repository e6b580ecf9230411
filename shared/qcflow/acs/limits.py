"""Client-side rate limits that keep a whole run just under an API's quota."""

from __future__ import annotations

from aiolimiter import AsyncLimiter


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
