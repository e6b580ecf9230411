"""Sandbox servers on free loopback ports; each stops when its test (or the session) ends."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from qcflow.acs.client import AcsClient, RetryPolicy
from qcflow.ccc import CccClient
from qcflow.credentials import Credentials
from qcflow.tools.sandbox.options import DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET, PreloadOptions, SandboxOptions
from qcflow.tools.sandbox.server import SandboxServer
from qcflow.sca import ScaClient

CREDS = Credentials(DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET)
FAST = RetryPolicy(max_attempts=1)
PRELOAD_END = datetime(2026, 11, 20, 0, 0, tzinfo=timezone.utc)
PRELOAD_START = PRELOAD_END - timedelta(hours=10)


class FakeClock:
    """A clock shared by a sandbox and its clients, moved by the test."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start

    def __call__(self) -> float:
        return self.now

    def utc(self) -> datetime:
        return datetime.fromtimestamp(self.now, timezone.utc)

    def advance(self, seconds: float) -> None:
        self.now += seconds


@contextlib.contextmanager
def running_sandbox(options: SandboxOptions | None = None, clock: FakeClock | None = None) -> Iterator[SandboxServer]:
    server = SandboxServer(options or SandboxOptions(), clock=clock or time.time)
    with server:
        yield server


def sca_client(server: SandboxServer, *, creds: Credentials = CREDS, retry: RetryPolicy = FAST, clock: FakeClock | None = None) -> ScaClient:
    extra = {"clock": clock.utc} if clock else {}
    return ScaClient(AcsClient(server.url, "2019-01-15", lambda: creds, retry=retry, **extra))


def ccc_client(server: SandboxServer, *, creds: Credentials = CREDS, retry: RetryPolicy = FAST, clock: FakeClock | None = None) -> CccClient:
    extra = {"clock": clock.utc} if clock else {}
    return CccClient(AcsClient(server.url, "2020-07-01", lambda: creds, retry=retry, **extra), instance_id="ccc-test")


@pytest.fixture(scope="session")
def sandbox() -> Iterator[SandboxServer]:
    """Shared: 2,000 finished results pre-loaded over ten hours, quick task completion."""
    options = SandboxOptions(task_seconds=0.3, task_jitter_seconds=0.1, preload=PreloadOptions(count=2000, start=PRELOAD_START, end=PRELOAD_END))
    with running_sandbox(options) as server:
        yield server


def options(**changes: object) -> SandboxOptions:
    return replace(SandboxOptions(), **changes)  # type: ignore[arg-type]
