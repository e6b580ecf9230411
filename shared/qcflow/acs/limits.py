"""Client-side rate limits that keep a whole run just under an API's quota."""

from __future__ import annotations

from aiolimiter import AsyncLimiter


def rate_limiter(rate_per_second: float) -> AsyncLimiter:
    """A leaky bucket allowing ``rate_per_second`` on average and at most one second's burst.

    A quota of 1000 calls / 60 s is enforced by the service over its own window; a full
    60 s bucket would let a run burst 1000 calls at once, so the bucket holds one second.
    """
    if rate_per_second <= 0:
        raise ValueError("rate_per_second must be positive")
    if rate_per_second >= 1:
        return AsyncLimiter(rate_per_second, 1.0)
    return AsyncLimiter(1, 1.0 / rate_per_second)
