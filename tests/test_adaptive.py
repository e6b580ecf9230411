"""The adaptive GetResult limiter: spacing under a sliding-window quota, and AIMD steering.

Time is a fake clock here, moved by the limiter's own (injected) sleep: the tests count
calls per simulated window, they never measure wall-clock time.
"""

from __future__ import annotations

import asyncio
from collections import deque

import pytest

from qcflow.acs.adaptive import AdaptiveRateLimiter
from qcflow.config import load_settings

pytestmark = pytest.mark.anyio


class FakeTime:
    """A clock and a sleep that advances it: the limiter's waits cost no real time."""

    def __init__(self) -> None:
        self.now = 1000.0

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += max(0.0, seconds)
        await asyncio.sleep(0)


def limiter(fake: FakeTime, rate: float, **options: object) -> AdaptiveRateLimiter:
    return AdaptiveRateLimiter(rate, clock=fake.clock, sleep=fake.sleep, **options)  # type: ignore[arg-type]


def max_in_window(times: list[float], window: float) -> int:
    """The most calls in any sliding window of ``window`` seconds (as the service counts)."""
    best, recent = 0, deque[float]()
    for moment in times:
        recent.append(moment)
        while recent and recent[0] <= moment - window:
            recent.popleft()
        best = max(best, len(recent))
    return best


async def test_settings_keep_a_whole_run_under_the_sliding_window_quota() -> None:
    settings = load_settings({})
    fake = FakeTime()
    gate = AdaptiveRateLimiter.from_settings(settings.quotas, clock=fake.clock, sleep=fake.sleep)
    # the ceiling less the callbacks' share (QCFLOW_GET_RESULT_CALLBACK_SHARE, 0.1 by default)
    assert gate.rate == pytest.approx(1000 * 0.97 / 60 * 0.9)
    assert gate.burst <= 1000 * 0.03  # the burst fits in the headroom
    times = []
    for _ in range(3000):  # three minutes of calls at full pace, as fast as the limiter allows
        async with gate:
            times.append(fake.now)
    assert max_in_window(times, 60.0) <= 1000
    # and it does use what it is given: 3000 calls take little more than 3000 / rate seconds
    assert times[-1] - times[0] <= 3000 / gate.rate + 0.01


async def test_burst_is_bounded_and_then_calls_are_spaced() -> None:
    fake = FakeTime()
    gate = limiter(fake, 10.0, burst=3)
    times = []
    for _ in range(23):
        async with gate:
            times.append(fake.now)
    assert times[:3] == [1000.0] * 3  # the burst
    gaps = [b - a for a, b in zip(times[3:], times[4:])]
    assert all(gap == pytest.approx(0.1) for gap in gaps)
    assert max_in_window(times, 1.0) <= 10 + 3


async def test_an_idle_spell_earns_at_most_one_burst() -> None:
    fake = FakeTime()
    gate = limiter(fake, 10.0, burst=4)
    async with gate:
        pass
    fake.now += 3600.0  # an hour idle
    times = []
    for _ in range(10):
        async with gate:
            times.append(fake.now)
    assert sum(1 for t in times if t < times[0] + 1e-6) == 4
    assert max_in_window(times, 1.0) <= 10 + 4


async def test_throttling_halves_the_rate_once_per_cooldown_with_a_floor() -> None:
    fake = FakeTime()
    gate = limiter(fake, 16.0, min_rate=1.5, cooldown_seconds=1.0)
    gate.on_throttled()
    assert gate.rate == 8.0
    for _ in range(10):  # the other calls in flight, refused by the same full window
        gate.on_throttled()
    assert gate.rate == 8.0 and gate.throttled == 11 and gate.decreases == 1
    for _ in range(5):
        fake.now += 1.0
        gate.on_throttled()
    assert gate.rate == 1.5  # 4, 2, then the floor


async def test_successes_recover_additively_and_never_pass_the_ceiling() -> None:
    fake = FakeTime()
    gate = limiter(fake, 16.0, increase=0.5)
    gate.on_throttled()
    assert gate.rate == 8.0
    rates = []
    seconds = 0.0
    while gate.rate < 16.0 and seconds < 60:
        async with gate:
            pass
        seconds += gate.interval
        gate.on_success()
        rates.append(gate.rate)
    # about +0.5 calls/s per second: linear, not a jump back to the ceiling
    assert rates == sorted(rates) and rates[0] < 8.1
    assert 14 <= seconds <= 18
    for _ in range(100):
        gate.on_success()
    assert gate.rate == 16.0


async def test_a_decrease_applies_to_calls_already_waiting() -> None:
    fake = FakeTime()
    gate = limiter(fake, 10.0, burst=1)
    times: list[float] = []

    async def call(index: int) -> None:
        async with gate:
            times.append(fake.now)
            if index == 2:
                gate.on_throttled()  # the third call's answer: throttled

    await asyncio.gather(*(call(i) for i in range(6)))
    assert times == sorted(times)
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert gaps[0] == pytest.approx(0.1) and gaps[1] == pytest.approx(0.1)
    # after the refusal: a full new interval (0.2 s at 5/s) plus the one already owed, then 0.2 s
    assert all(gap >= 0.2 - 1e-9 for gap in gaps[2:])


async def test_aimd_shares_a_quota_with_another_client_without_starving() -> None:
    """A second client takes 6 of 16.67 calls/s; the limiter converges under the rest.

    The service is simulated by a sliding-window counter (the sandbox's rule); a refused
    call is retried after one second, as the client's throttle backoff would.
    """
    fake = FakeTime()
    quota, window = 1000, 60.0
    gate = limiter(fake, quota * 0.97 / window, burst=8)
    admitted: deque[float] = deque()
    other_next = fake.now
    ours_ok = refused = 0

    def admit(moment: float) -> bool:
        while admitted and admitted[0] <= moment - window:
            admitted.popleft()
        if len(admitted) >= quota:
            return False
        admitted.append(moment)
        return True

    while fake.now < 1000.0 + 600:  # ten simulated minutes
        async with gate:
            pass
        while other_next <= fake.now:  # the competitor: 6 calls/s, steady, no limiter
            admit(other_next)
            other_next += 1 / 6
        if admit(fake.now):
            ours_ok += 1
            gate.on_success()
        else:
            refused += 1
            gate.on_throttled()
            fake.now += 1.0
    share = ours_ok / 600
    assert share > 0.6 * (quota / window - 6)  # gets a fair part of what is left
    assert refused < ours_ok * 0.05  # mostly slowed down, rarely refused
    assert gate.decreases >= 1


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError):
        AdaptiveRateLimiter(0)
    with pytest.raises(ValueError):
        AdaptiveRateLimiter(10, decrease_factor=1.0)
    with pytest.raises(ValueError):
        AdaptiveRateLimiter(10, increase=-1)
