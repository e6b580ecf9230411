"""Issue 25's cheap path: a per-instance bucket that refuses instead of waiting, one GetResult
attempt with a short deadline and no throttle retry, and the harvest leaving the callbacks' share."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import pytest

from qcflow.acs.adaptive import AdaptiveRateLimiter
from qcflow.acs.limits import TokenBucket
from qcflow.callback_handler import bucket_for
from qcflow.config import load_settings
from qcflow.errors import LimitReachedError
from qcflow.tools.fc_local import context_for, http_event, load_handler_module
from qcflow.tools.sandbox.options import FaultOptions, SandboxOptions
from tests.push.conftest import FC_CREDS, push_world
from tests.test_callback_function import PATH, TOKEN, _query


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_bucket_refuses_at_once_when_empty_and_refills_at_its_rate() -> None:
    clock = Clock()
    bucket = TokenBucket(0.5, 3, clock=clock)
    for _ in range(3):
        bucket.take()
    assert not bucket.available()
    with pytest.raises(LimitReachedError):
        bucket.take()
    clock.now += 2.0  # one token at 0.5/s
    bucket.take()
    with pytest.raises(LimitReachedError):
        bucket.take()
    clock.now += 1000
    assert [bucket.take() for _ in range(3)] and not bucket.available(), "never more than its capacity"
    assert bucket.acquired == 7 and bucket.refused == 2


def test_the_callbacks_share_is_split_over_the_instances_and_left_by_the_harvest() -> None:
    settings = load_settings({})
    ceiling = 1000 * 0.97 / 60
    assert AdaptiveRateLimiter.from_settings(settings.quotas).max_rate == pytest.approx(ceiling * 0.9)
    bucket = bucket_for(settings)
    assert bucket.rate == pytest.approx(ceiling * 0.1 / 4)
    assert bucket.capacity * 4 <= 1000 * 0.03 / 2, "all instances' bursts fit in half the headroom"
    alone = load_settings({}, get_result_callback_share=0)
    assert AdaptiveRateLimiter.from_settings(alone.quotas).max_rate == pytest.approx(ceiling)
    assert bucket_for(alone).rate == 0 and not bucket_for(alone).available(), "share 0: callbacks never call"


def _get_results(world) -> int:  # type: ignore[no-untyped-def]
    return sum(n for key, n in world.server.app.snapshot()["answers"].items() if key.startswith("GetResult"))


def test_a_throttled_lookup_is_not_retried_and_answers_503(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    options = replace(SandboxOptions(), faults=FaultOptions(throttle_rate=1.0, actions=frozenset({"GetResult"})))
    with push_world(tmp_path, monkeypatch, options, QCFLOW_CALLBACK_TOKEN=TOKEN) as world:
        callback = load_handler_module("callback")
        world.modules.append(callback)
        began = time.monotonic()
        answer = callback.handler(
            http_event("GET", PATH, _query("T-1", int(time.time() * 1000))), context_for("callback", FC_CREDS)
        )
        assert answer["statusCode"] == 503 and json.loads(answer["body"]) == {"error": "retry later"}
        assert _get_results(world) == 1, "one attempt, no throttle retry"
        assert time.monotonic() - began < 2


def test_a_slow_lookup_ends_at_the_callback_deadline_with_503(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    options = replace(SandboxOptions(), faults=FaultOptions(latency_seconds=3.0, actions=frozenset({"GetResult"})))
    with push_world(
        tmp_path, monkeypatch, options, QCFLOW_CALLBACK_TOKEN=TOKEN, QCFLOW_CALLBACK_GET_RESULT_SECONDS="0.5"
    ) as world:
        callback = load_handler_module("callback")
        world.modules.append(callback)
        began = time.monotonic()
        answer = callback.handler(
            http_event("GET", PATH, _query("T-1", int(time.time() * 1000))), context_for("callback", FC_CREDS)
        )
        assert answer["statusCode"] == 503
        assert time.monotonic() - began < 2, "the short deadline, not the invocation's"


def test_over_the_bucket_a_callback_answers_503_without_a_lookup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with push_world(tmp_path, monkeypatch, QCFLOW_CALLBACK_TOKEN=TOKEN) as world:
        callback = load_handler_module("callback")
        world.modules.append(callback)
        statuses = [
            callback.handler(
                http_event("GET", PATH, _query(f"T-{i}", int(time.time() * 1000))), context_for("callback", FC_CREDS)
            )["statusCode"]
            for i in range(8)
        ]
        assert statuses[:3] == [200, 200, 200] and statuses[3:] == [503] * 5, statuses
        assert _get_results(world) == 3, "the bucket is the instance's, shared by its invocations"
