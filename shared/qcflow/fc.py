"""Function Compute glue: the one module that knows FC's ``context``; handlers stay one screen.

- **One event loop per instance**, in a daemon thread: the async HTTP clients (connection
  pools) are bound to a loop, and a warm instance reuses them across invocations. Each
  invocation submits its coroutine to that loop, so concurrent invocations of one instance
  (FC3 instance concurrency > 1) are served side by side.
- **Credentials per invocation**: the function role's STS credentials come from
  ``context.credentials`` (python3.9/3.10) or the ``ALIBABA_CLOUD_*`` variables (python3.12);
  they expire, so every invocation hands in the current ones and every request reads them.
- **A deadline per invocation**, as ``time.monotonic()``: from
  ``context.get_remaining_time_in_milliseconds()`` where the runtime offers it, otherwise from
  ``context.function.timeout`` and the handler's start (FC's Python context has no
  remaining-time call), minus a safety margin so state is saved before FC stops the instance.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar

from qcflow.credentials import Credentials, credentials_from_env, credentials_from_fc_context

T = TypeVar("T")

#: Seconds kept free before FC's timeout: writing outcomes and state must fit in it.
SAFETY_MARGIN_SECONDS = 5.0
#: Used when the context says nothing about the function's timeout.
DEFAULT_TIMEOUT_SECONDS = 60.0


@dataclass(frozen=True)
class Invocation:
    """What a use case needs of one FC invocation."""

    request_id: str
    deadline: float  # time.monotonic()
    credentials: Credentials

    def remaining(self) -> float:
        return self.deadline - time.monotonic()


def invocation_from_context(
    context: Any, *, started: float | None = None, environ: dict[str, str] | None = None
) -> Invocation:
    """Request id, deadline and credentials of the invocation ``context`` describes."""
    started = time.monotonic() if started is None else started
    remaining_ms = getattr(context, "get_remaining_time_in_milliseconds", None)
    if callable(remaining_ms):
        remaining = float(remaining_ms()) / 1000.0
        base = time.monotonic()
    else:
        function = getattr(context, "function", None)
        timeout = getattr(function, "timeout", None)
        remaining = float(timeout) if isinstance(timeout, (int, float)) and timeout > 0 else DEFAULT_TIMEOUT_SECONDS
        base = started
    margin = min(SAFETY_MARGIN_SECONDS, remaining * 0.1)
    request_id = str(
        getattr(context, "request_id", None) or getattr(context, "requestId", None) or f"local-{os.urandom(6).hex()}"
    )
    credentials = credentials_from_fc_context(context, environ)
    return Invocation(request_id, base + remaining - margin, credentials)


class CredentialsHolder:
    """A credentials provider fed by each invocation (the role's current STS credentials)."""

    def __init__(self) -> None:
        self._current: Credentials | None = None

    def set(self, credentials: Credentials) -> None:
        self._current = credentials

    def __call__(self) -> Credentials:
        return self._current if self._current is not None else credentials_from_env()


class LoopThread:
    """An asyncio loop in a daemon thread; ``run`` blocks the calling thread until done."""

    def __init__(self, name: str = "qcflow-loop") -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result()

    def close(self) -> None:
        if self._loop.is_closed():
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        if not self._loop.is_running():
            self._loop.close()


class FunctionApp:
    """Per-instance state of one function: built lazily by ``build`` on the first invocation
    (inside the loop, so async clients belong to it) and reused by warm invocations."""

    def __init__(self, build: Callable[[CredentialsHolder], Coroutine[Any, Any, T]]) -> None:
        self._build = build
        self._services: Any = None
        self._lock = threading.Lock()
        self.credentials = CredentialsHolder()
        self._loop: LoopThread | None = None

    def _loop_thread(self) -> LoopThread:
        with self._lock:
            if self._loop is None:
                self._loop = LoopThread()
            return self._loop

    def services(self) -> Any:
        loop = self._loop_thread()
        with self._lock:
            if self._services is None:
                self._services = loop.run(self._build(self.credentials))
            return self._services

    def invoke(self, context: Any, work: Callable[[Any, Invocation], Coroutine[Any, Any, T]]) -> T:
        """Run ``work(services, invocation)`` on the instance's loop."""
        started = time.monotonic()
        invocation = invocation_from_context(context, started=started)
        self.credentials.set(invocation.credentials)
        services = self.services()
        return self._loop_thread().run(work(services, invocation))

    def close(self) -> None:
        """For tests and the demo: close the clients (``services.aclose()``) and stop the loop."""
        loop = self._loop
        if loop is None:
            return
        closer = getattr(self._services, "aclose", None)
        if closer is not None:
            loop.run(closer())
        loop.close()
        self._loop = None
        self._services = None
