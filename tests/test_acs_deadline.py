"""Every call has a deadline; throttling is retried until it, other faults until max_attempts.

Most tests drive the client's own clock and sleep (``AcsClient(monotonic=…, sleep=…)``) so
that counts are exact and nothing waits; the few that need real time use small deadlines and
assert only what stopped and why, never how long it took.
"""

from __future__ import annotations

import asyncio
import random
import time

import anyio
import httpx
import pytest

from qcflow.acs.client import AcsClient, RetryPolicy, client_from_settings
from qcflow.acs.limits import rate_limiter
from qcflow.ccc import CccClient
from qcflow.config import load_settings
from qcflow.credentials import Credentials
from qcflow.errors import DeadlineError, RetryableError, ServiceUnavailableError, ThrottledError, TransportError
from qcflow.models.sca import GetResultQuery
from qcflow.tools.sandbox.options import QuotaOptions
from qcflow.sca import ScaClient
from tests.sandbox.conftest import options, running_sandbox, sca_client
from tests.test_acs_client import OK_PAGE, Hooks, Script, error

pytestmark = pytest.mark.anyio
CREDS = Credentials("AKID", "SECRET", None)
THROTTLED = error(400, "Throttling.User", "REQ-T")


class FakeTime:
    """The client's clock and sleep: sleeping moves the clock, nothing waits."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class UpperBound(random.Random):
    """Full jitter drawn at its ceiling, so that the backoff sequence is exact."""

    def uniform(self, a: float, b: float) -> float:
        return b


def acs(script: Script, policy: RetryPolicy, clock: FakeTime | None = None, *, rng: random.Random | None = None, **extra: object) -> AcsClient:
    timing = {"monotonic": clock.monotonic, "sleep": clock.sleep} if clock else {}
    return AcsClient(
        "qualitycheck.cn-hangzhou.aliyuncs.com",
        "2019-01-15",
        lambda: CREDS,
        retry=policy,
        transport=httpx.MockTransport(script),
        rng=rng or random.Random(7),
        **timing,  # type: ignore[arg-type]
        **extra,  # type: ignore[arg-type]
    )


async def test_throttling_is_retried_beyond_max_attempts_while_the_deadline_allows() -> None:
    clock = FakeTime()
    script = Script(*[THROTTLED] * 6, OK_PAGE)
    limiter = Hooks()
    policy = RetryPolicy(max_attempts=2, throttle_backoff_initial_seconds=0.5, throttle_backoff_max_seconds=4.0, deadline_seconds=60)
    answer = await acs(script, policy, clock).call("GetResult", {"JsonStr": "{}"}, limiter=limiter)
    assert answer.attempts == 7 == len(script.requests) and not answer.prior_attempt_uncertain
    assert limiter.calls == ["on_throttled"] * 6 + ["on_success"]
    # exponential with full jitter: each sleep under its doubling ceiling, capped at the maximum
    assert all(0 <= s <= min(4.0, 0.5 * 2**n) for n, s in enumerate(clock.sleeps)) and len(clock.sleeps) == 6


async def test_throttling_that_outlasts_the_deadline_stops_by_the_deadline() -> None:
    clock = FakeTime()
    deadline = clock.now + 30
    script = Script(THROTTLED)
    policy = RetryPolicy(max_attempts=2, throttle_backoff_initial_seconds=1.0, throttle_backoff_max_seconds=8.0)
    with pytest.raises(ThrottledError) as info:
        await acs(script, policy, clock).call("GetResult", {"JsonStr": "{}"}, deadline=deadline)
    err = info.value
    assert err.deadline_reached and "deadline was reached" in str(err) and f"after {err.attempts} attempts" in str(err)
    assert err.attempts == len(script.requests) > policy.max_attempts
    assert clock.now < deadline, "no sleep ran past the deadline"
    assert err.code == "Throttling.User" and err.request_id == "REQ-T"


async def test_no_attempt_starts_if_its_sleep_would_end_past_the_deadline() -> None:
    # backoff drawn at its ceiling: 1, 2, 4, 4… The default deadline (the policy's 8 s) allows
    # attempts at t=0, 1, 3 and 7; the next sleep would end at 11 > 8, so the call stops there.
    clock = FakeTime()
    start = clock.now
    policy = RetryPolicy(deadline_seconds=8, throttle_backoff_initial_seconds=1, throttle_backoff_max_seconds=4)
    script = Script(THROTTLED)
    with pytest.raises(ThrottledError) as info:
        await acs(script, policy, clock, rng=UpperBound()).call("GetResult", {"JsonStr": "{}"})
    assert info.value.attempts == 4 == len(script.requests) and info.value.deadline_reached
    assert clock.sleeps == [1, 2, 4] and clock.now == start + 7


async def test_a_retry_needs_min_attempt_seconds_left_after_its_sleep() -> None:
    # sleeps 1, 2…: at t=1 a 2-s sleep would leave 0.5 s of the 3.5, under the 1.5 s an attempt needs
    clock = FakeTime()
    policy = RetryPolicy(deadline_seconds=3.5, throttle_backoff_initial_seconds=1, throttle_backoff_max_seconds=4, min_attempt_seconds=1.5)
    script = Script(THROTTLED)
    with pytest.raises(ThrottledError) as info:
        await acs(script, policy, clock, rng=UpperBound()).call("UploadAudioData", {"JsonStr": "{}"})
    assert info.value.attempts == 2 == len(script.requests) and info.value.deadline_reached and clock.sleeps == [1]


async def test_other_retryable_errors_keep_max_attempts_and_their_own_backoff() -> None:
    clock = FakeTime()
    policy = RetryPolicy(max_attempts=3, backoff_initial_seconds=0.25, backoff_max_seconds=0.4, deadline_seconds=3600,
                         throttle_backoff_initial_seconds=50, throttle_backoff_max_seconds=50)
    script = Script(error(503, "ServiceUnavailable"))
    with pytest.raises(ServiceUnavailableError) as info:
        await acs(script, policy, clock, rng=UpperBound()).call("GetResult", {"JsonStr": "{}"})
    assert info.value.attempts == 3 == len(script.requests) and not info.value.deadline_reached
    assert clock.sleeps == [0.25, 0.4]
    # throttling in between does not spend max_attempts, and backs off on its own scale
    clock = FakeTime()
    script = Script(error(503, "ServiceUnavailable"), THROTTLED, THROTTLED, error(503, "ServiceUnavailable"), OK_PAGE)
    answer = await acs(script, policy, clock, rng=UpperBound()).call("GetResult", {"JsonStr": "{}"})
    assert answer.attempts == 5 and clock.sleeps == [0.25, 50, 50, 0.4]


async def test_a_call_past_its_deadline_sends_nothing_and_spends_no_slot() -> None:
    class Counting(Hooks):
        entered = 0

        async def __aenter__(self) -> None:
            self.entered += 1

    clock = FakeTime()
    script = Script(OK_PAGE)
    limiter = Counting()
    with pytest.raises(DeadlineError) as info:
        await acs(script, RetryPolicy(), clock).call("GetResult", {"JsonStr": "{}"}, deadline=clock.now - 0.001, limiter=limiter)
    assert script.requests == [] and limiter.entered == 0 and limiter.calls == []
    assert info.value.attempts == 0 and isinstance(info.value, RetryableError)
    assert info.value.deadline_reached and "deadline" in str(info.value) and info.value.action == "GetResult"


async def test_each_attempt_timeout_is_capped_at_the_time_left() -> None:
    clock = FakeTime()
    seen: list[dict[str, float]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.extensions["timeout"])
        return error(503, "ServiceUnavailable") if len(seen) == 1 else OK_PAGE

    policy = RetryPolicy(backoff_initial_seconds=0.5, backoff_max_seconds=0.5)
    client = acs(answer, policy, clock, rng=UpperBound(), timeout=httpx.Timeout(10.0, connect=5.0))  # type: ignore[arg-type]
    await client.call("GetResult", {"JsonStr": "{}"}, deadline=clock.now + 2.5)
    assert seen[0] == {"connect": 2.5, "read": 2.5, "write": 2.5, "pool": 2.5}
    assert seen[1] == {"connect": 2.0, "read": 2.0, "write": 2.0, "pool": 2.0}, "after a 0.5-s backoff, 2 s are left"
    seen.clear()
    await client.call("GetResult", {"JsonStr": "{}"}, deadline=clock.now + 3600)
    assert seen[1] == {"connect": 5.0, "read": 10.0, "write": 10.0, "pool": 10.0}, "a far deadline leaves the configured timeouts"


async def test_a_shared_http_client_gets_the_acs_timeouts_too() -> None:
    seen: list[dict[str, float]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.extensions["timeout"])
        return OK_PAGE

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer), timeout=None) as shared:
        client = AcsClient("qualitycheck.cn-hangzhou.aliyuncs.com", "2019-01-15", lambda: CREDS, http=shared, timeout=httpx.Timeout(3.0))
        await client.call("GetResult", {"JsonStr": "{}"})
    assert seen == [{"connect": 3.0, "read": 3.0, "write": 3.0, "pool": 3.0}]


async def test_waiting_for_the_limiter_stops_at_the_deadline() -> None:
    class Closed:
        """A limiter that never grants a slot."""

        async def __aenter__(self) -> None:
            await anyio.Event().wait()

        async def __aexit__(self, *exc: object) -> None:
            return None

    script = Script(OK_PAGE)
    client = acs(script, RetryPolicy())
    with pytest.raises(DeadlineError) as info:
        await client.call("GetResult", {"JsonStr": "{}"}, limiter=Closed(), deadline=time.monotonic() + 0.05)
    assert script.requests == [] and info.value.attempts == 0 and info.value.deadline_reached


async def test_an_answer_still_coming_at_the_deadline_is_cut_and_flagged_uncertain() -> None:
    async def trickle(request: httpx.Request) -> httpx.Response:
        await anyio.sleep(30)  # the mock transport ignores httpx's timeouts: only the deadline stops it
        return OK_PAGE

    client = AcsClient("qualitycheck.cn-hangzhou.aliyuncs.com", "2019-01-15", lambda: CREDS, retry=RetryPolicy(),
                       transport=httpx.MockTransport(trickle))
    with pytest.raises(TransportError) as info:
        await client.call("UploadAudioData", {"JsonStr": "{}"}, deadline=time.monotonic() + 0.1)
    assert info.value.prior_attempt_uncertain and info.value.deadline_reached and info.value.attempts == 1


async def test_limiter_hooks_may_be_async_and_are_optional() -> None:
    class AsyncHooks(Hooks):
        async def on_throttled(self) -> None:  # type: ignore[override]
            self.calls.append("on_throttled")

        async def on_success(self) -> None:  # type: ignore[override]
            self.calls.append("on_success")

    clock = FakeTime()
    policy = RetryPolicy(throttle_backoff_initial_seconds=0.01)
    limiter = AsyncHooks()
    await acs(Script(THROTTLED, error(503, "ServiceUnavailable"), OK_PAGE), policy, clock).call("GetResult", {}, limiter=limiter)
    assert limiter.calls == ["on_throttled", "on_success"], "a server error is neither throttling nor success"
    # aiolimiter has neither hook: it still paces the call
    answer = await acs(Script(THROTTLED, OK_PAGE), policy, clock).call("GetResult", {}, limiter=rate_limiter(100))
    assert answer.attempts == 2


async def test_settings_fill_the_policy() -> None:
    settings = load_settings({}, call_deadline_seconds=12, throttle_backoff_initial_seconds=0.5, throttle_backoff_max_seconds=3,
                             max_attempts=2, backoff_initial_seconds=0.1, backoff_max_seconds=1)
    client = client_from_settings(settings.http, endpoint="http://127.0.0.1:1", version="2019-01-15", credentials=lambda: CREDS)
    assert client.retry == RetryPolicy(max_attempts=2, backoff_initial_seconds=0.1, backoff_max_seconds=1, deadline_seconds=12,
                                       throttle_backoff_initial_seconds=0.5, throttle_backoff_max_seconds=3)
    await client.aclose()
    sca = ScaClient.from_settings(settings, lambda: CREDS)
    assert sca.acs.retry.deadline_seconds == 12
    await sca.aclose()


async def test_typed_clients_pass_the_deadline_and_limiter_on() -> None:
    clock = FakeTime()
    script = Script(OK_PAGE)
    sca = ScaClient(acs(script, RetryPolicy(), clock), get_result_limiter=Hooks())
    with pytest.raises(DeadlineError):
        await sca.get_result(GetResultQuery(), deadline=clock.now)
    with pytest.raises(DeadlineError):
        await sca.get_result_page(GetResultQuery(), deadline=clock.now)
    ccc = CccClient(AcsClient("ccc.cn-shanghai.aliyuncs.com", "2020-07-01", lambda: CREDS, transport=httpx.MockTransport(script),
                              monotonic=clock.monotonic, sleep=clock.sleep))
    with pytest.raises(DeadlineError):
        await ccc.get_upload_audio_data_params("job-1", deadline=clock.now)
    assert script.requests == []
    override = Hooks()
    await sca.get_result(GetResultQuery(), limiter=override)
    await sca.get_result_page(GetResultQuery(), limiter=override)
    assert override.calls == ["on_success", "on_success"] and sca.get_result_limiter.calls == []  # type: ignore[union-attr]


async def test_against_the_sandbox_quota_throttling_is_ridden_through_within_the_deadline() -> None:
    """Real HTTP, real quota window: max_attempts=1 does not stop throttled calls; the deadline does."""
    with running_sandbox(options(quotas=QuotaOptions(get_result=2, window_seconds=0.3))) as server:
        patient = sca_client(server, retry=RetryPolicy(max_attempts=1, deadline_seconds=30, throttle_backoff_initial_seconds=0.05,
                                                       throttle_backoff_max_seconds=0.2))
        pages = await asyncio.gather(*(patient.get_result(GetResultQuery(page_size=1)) for _ in range(6)))
        assert all(page.success for page in pages) and server.app.stats["GetResult Throttling.User"] > 0
    with running_sandbox(options(quotas=QuotaOptions(get_result=0))) as server:  # every GetResult throttled
        hasty = sca_client(server, retry=RetryPolicy(max_attempts=1, deadline_seconds=1.0, throttle_backoff_initial_seconds=0.01,
                                                     throttle_backoff_max_seconds=0.05, min_attempt_seconds=0.2))
        with pytest.raises(ThrottledError) as info:
            await hasty.get_result(GetResultQuery(page_size=1))
        assert info.value.deadline_reached and "deadline" in str(info.value)
        assert info.value.attempts == server.app.stats["GetResult Throttling.User"] > 1
