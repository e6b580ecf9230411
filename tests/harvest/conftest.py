"""Fixtures for the harvest suite: both store adapters, a sandbox on a fake clock, settings.

The OSS store is the real adapter against moto's server behind the OSS dialect shim
(``tests/store/conftest.py``); the local store is a fresh directory. ``FaultyStore`` is a
test double of the *store* (I/O), used to inject a crash at a chosen call.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest

from qcflow.acs.client import AcsClient, RetryPolicy
from qcflow.config import Settings, load_settings
from qcflow.models.sca import GetResultQuery
from qcflow.tools.sandbox.options import QuotaOptions, SandboxOptions
from qcflow.tools.sandbox.server import SandboxServer
from qcflow.sca import ScaClient
from qcflow.store import LocalStore, ObjectStore

from tests.sandbox.conftest import CREDS, FakeClock, running_sandbox
from tests.store.conftest import moto_oss, store  # noqa: F401 - fixtures: each harvest test taking `store` runs on both adapters

#: The harvest's fake "now": results are pre-loaded relative to it.
NOW = datetime(2026, 11, 20, 12, 0, 0, tzinfo=timezone.utc)
RETRY = RetryPolicy(max_attempts=4, backoff_initial_seconds=0.01, backoff_max_seconds=0.05, deadline_seconds=30,
                    throttle_backoff_initial_seconds=0.01, throttle_backoff_max_seconds=0.05)


def harvest_settings(**overrides: Any) -> Settings:
    """Settings for tests: a GetResult ceiling high enough that pacing costs no wall time
    (the sandbox's own quota is lifted), everything else as deployed unless overridden."""
    values: dict[str, Any] = dict(get_result_quota=60_000, get_result_quota_window_seconds=60.0)
    values.update(overrides)
    return load_settings(environ={}, **values)


def sandbox_options(**changes: Any) -> SandboxOptions:
    base = SandboxOptions(quotas=QuotaOptions(get_result=None, upload_audio_data=None), task_seconds=60.0, task_jitter_seconds=0.0)
    return replace(base, **changes)


@dataclass
class RequestLog(httpx.AsyncBaseTransport):
    """An httpx transport (the I/O seam of ``AcsClient``) that records every GetResult
    ``JsonStr`` on its way to the real sandbox."""

    inner: httpx.AsyncBaseTransport = field(default_factory=httpx.AsyncHTTPTransport)
    queries: list[dict[str, Any]] = field(default_factory=list)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.headers.get("x-acs-action") == "GetResult":
            self.queries.append(json.loads(request.url.params.get("JsonStr") or "{}"))
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def make_sca(server: SandboxServer, clock: FakeClock, transport: httpx.AsyncBaseTransport | None = None) -> ScaClient:
    return ScaClient(AcsClient(server.url, "2019-01-15", lambda: CREDS, retry=RETRY, clock=clock.utc, transport=transport))


@dataclass
class Env:
    """A sandbox on a fake clock, a client on it, and the harvest's ``now``."""

    server: SandboxServer
    clock: FakeClock
    sca: ScaClient
    log: RequestLog

    def now(self) -> datetime:
        return self.clock.utc()

    @property
    def state(self) -> Any:
        return self.server.app.sca

    def preload(self, count: int, start: datetime, end: datetime, failed_rate: float = 0.0) -> None:
        self.state.preload(count, start, end, failed_rate)

    async def count(self, start: datetime, end: datetime) -> int:
        """GetResult's own ``Count`` for ``[start, end)``."""
        zone = self.state.zone
        query = GetResultQuery(start_time=start.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S"),
                               end_time=(end - timedelta(seconds=1)).astimezone(zone).strftime("%Y-%m-%d %H:%M:%S"),
                               page_size=1, required_fields="taskId,status")
        page = await self.sca.get_result_page(query)
        assert page.count is not None
        return page.count

    async def upload(self, *call_ids: str, callback_url: str | None = None) -> str:
        """One UploadAudioData of these recordings (one taskId for all, as the service does)."""
        from qcflow.models.sca import UploadAudioDataJson

        calls = [{"voice_file_url": f"http://127.0.0.1/{c}.mkv", "call_id": c, "file_name": f"rec/{c}.mkv",
                  "call_uuid": f"uuid-{c}"} for c in call_ids]
        answer = await self.sca.upload_audio_data(UploadAudioDataJson(call_list=calls, callback_url=callback_url))
        return answer.task_id


@contextlib.contextmanager
def sandbox_env(options: SandboxOptions | None = None, *, start: datetime = NOW) -> Iterator[Env]:
    clock = FakeClock(start.timestamp())
    log = RequestLog()
    with running_sandbox(options or sandbox_options(), clock) as server:
        yield Env(server, clock, make_sca(server, clock, log), log)


@pytest.fixture
def env() -> Iterator[Env]:
    with sandbox_env() as value:
        yield value


def twin(store: ObjectStore) -> ObjectStore:
    """A second store object on the same place: what another FC instance would hold (its
    own caches), so that races between "processes" go through the store."""
    if isinstance(store, LocalStore):
        return LocalStore(store.root)
    from qcflow.store.oss import OssStore

    assert isinstance(store, OssStore)
    return OssStore(store._client, store.bucket, store.prefix)


def far_deadline(seconds: float = 120.0) -> float:
    return time.monotonic() + seconds


# ------------------------------------------------------------------ reading the output


def part_keys(store: ObjectStore) -> list[str]:
    return [info.key for info in store.list("results/")]


def read_lines(store: ObjectStore) -> list[dict[str, Any]]:
    """Every JSONL line of every part (gzip or not)."""
    lines: list[dict[str, Any]] = []
    for key in part_keys(store):
        body = store.get(key).body
        if key.endswith(".gz"):
            body = gzip.decompress(body)
        lines.extend(json.loads(line) for line in body.splitlines() if line)
    return lines


def identities(lines: list[dict[str, Any]]) -> list[tuple[str, str | None]]:
    return [(line["task_id"], line["call_id"]) for line in lines]


def assert_once(lines: list[dict[str, Any]]) -> None:
    ids = identities(lines)
    duplicates = {i for i in ids if ids.count(i) > 1} if len(ids) < 3000 else _dupes(ids)
    assert not duplicates, f"written more than once: {sorted(duplicates)[:5]}"


def _dupes(ids: list[Any]) -> set[Any]:
    seen: set[Any] = set()
    dupes: set[Any] = set()
    for i in ids:
        (dupes if i in seen else seen).add(i)
    return dupes


# ------------------------------------------------------------------ fault injection


class Crash(Exception):
    """The injected crash (not a qcflow error: nothing may catch and absorb it)."""


class FaultyStore:
    """Delegates to a real store; at the first call that ``when(method, key)`` matches, once,
    raises ``Crash`` — or, with ``action``, runs it first (e.g. another writer slipping in)
    and goes on. A test double of I/O: qcflow's own code runs unchanged."""

    def __init__(self, inner: ObjectStore, when: Callable[[str, str], bool], action: Callable[[], None] | None = None) -> None:
        self._inner = inner
        self._when = when
        self._action = action
        self._lock = threading.Lock()
        self.fired = False
        self.url = inner.url

    def _check(self, method: str, key: str) -> None:
        with self._lock:
            if self.fired or not self._when(method, key):
                return
            self.fired = True
        if self._action is None:
            raise Crash(f"injected crash at {method} {key}")
        self._action()

    def get(self, key: str) -> Any:
        self._check("get", key)
        return self._inner.get(key)

    def head(self, key: str) -> Any:
        self._check("head", key)
        return self._inner.head(key)

    def put(self, key: str, data: bytes, **kw: Any) -> Any:
        self._check("put", key)
        return self._inner.put(key, data, **kw)

    def create_if_absent(self, key: str, data: bytes, **kw: Any) -> bool:
        self._check("create_if_absent", key)
        return self._inner.create_if_absent(key, data, **kw)

    def list(self, prefix: str = "", **kw: Any) -> Any:
        self._check("list", prefix)
        return self._inner.list(prefix, **kw)

    def delete(self, key: str) -> None:
        self._check("delete", key)
        self._inner.delete(key)

    def open_writer(self, key: str, **kw: Any) -> Any:
        self._check("open_writer", key)
        return self._inner.open_writer(key, **kw)

    def signed_get_url(self, key: str, expires: timedelta) -> str:
        return self._inner.signed_get_url(key, expires)

