"""SCA's task callbacks, sent by the sandbox when a task reaches its final status.

SCA calls an upload's ``callbackUrl`` with
``taskId``, ``timestamp`` (ms), ``aliUid``, ``signature`` and ``event=TaskComplete`` in the
query (``../shared/reference/alibaba-apis.md`` §2a). Tasks in the sandbox finish by the
clock, not by requests, so callbacks need their own timekeeper: ``CallbackSender`` runs an
asyncio loop on one daemon thread that sleeps until the next finish time, sends each due
callback with a bounded total timeout, retries a failed one a bounded number of times and
stops (cancelling what is in flight) when the server stops. It never touches the request
path: ``schedule`` only pushes onto a heap.

What is modelled and what is not (the real service documents neither):
- the retry policy: ``callback_max_attempts`` attempts, ``callback_retry_seconds`` doubled
  between them; a new timestamp (and signature) per attempt;
- an upload with several recordings shares one taskId (as in the sandbox's UploadAudioData):
  one callback per taskId, once the last of its recordings is final;
- success is any 2xx answer; redirects are not followed;
- the HTTP method (``callback_method``): POST carries the same query and an empty body.

Only loopback hosts are called unless ``callback_allow_remote``: the sandbox stays offline.
The real service refuses a ``callbackUrl`` with an IP address; the sandbox accepts it (tests
listen on 127.0.0.1) and logs a warning once.
"""

from __future__ import annotations

import asyncio
import heapq
import ipaddress
import itertools
import logging
import math
import random
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

import httpx

from qcflow.callback import callback_signature
from qcflow.tools.sandbox.options import SandboxOptions

EVENT = "TaskComplete"
#: The longest single wait of the timekeeper. It sleeps until the next finish time, but the
#: sandbox's clock may be one it does not own (a test's fake clock moved forward), so it
#: looks again at least this often.
POLL_SECONDS = 0.25
#: Of a receiver's answer, at most this much is read (the status is what counts).
MAX_ANSWER_BYTES = 64 * 1024
#: Delays (finish time → callback answered) kept for percentiles.
RECENT_DELAYS = 1000

log = logging.getLogger("qcflow.tools.sandbox")


@dataclass(frozen=True)
class CallbackJob:
    """One task's callback: where to, and when the task became final (sandbox clock, ms)."""

    task_id: str
    url: str
    finish_ms: int
    failed: bool = False


@dataclass(order=True)
class _Due:
    due_ms: int
    seq: int
    job: CallbackJob = field(compare=False)
    attempt: int = field(compare=False, default=1)


def callback_url(base: str, task_id: str, timestamp_ms: int, ali_uid: str, signature: str) -> str:
    """``base`` with SCA's parameters appended (its own query kept, its fragment dropped)."""
    parts = urlsplit(base)
    params = urlencode(
        [
            ("taskId", task_id),
            ("timestamp", str(timestamp_ms)),
            ("aliUid", ali_uid),
            ("signature", signature),
            ("event", EVENT),
        ],
        quote_via=quote,
    )
    query = f"{parts.query}&{params}" if parts.query else params
    return urlunsplit((parts.scheme, parts.netloc, parts.path or "/", query, ""))


def _host_kind(url: str) -> str:
    """``loopback``, ``ip`` (a non-loopback address) or ``remote`` (a name)."""
    host = (urlsplit(url).hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return "loopback"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return "remote"
    return "loopback-ip" if address.is_loopback else "ip"


def _percentile(ordered: list[int], share: float) -> int:
    """Nearest-rank percentile of a sorted, non-empty list."""
    return ordered[min(len(ordered) - 1, max(0, math.ceil(share * len(ordered)) - 1))]


class CallbackSender:
    """Sends scheduled callbacks on time from one daemon thread; ``start``/``stop`` with the server."""

    def __init__(self, options: SandboxOptions, clock: Callable[[], float] = time.time) -> None:
        self.options = options
        self.clock = clock
        self._lock = threading.Lock()
        self._heap: list[_Due] = []
        self._seq = itertools.count()
        self._stats: Counter[str] = Counter()
        self._delays: deque[int] = deque(maxlen=RECENT_DELAYS)
        self._warned: set[str] = set()
        self._faults = random.Random(options.seed + 2)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._stopping = False
        self._ready = threading.Event()

    # ------------------------------------------------------------------ scheduling (any thread)

    def schedule(self, job: CallbackJob) -> None:
        """Send ``job``'s callback at its finish time (cheap: called while an upload is answered)."""
        kind = _host_kind(job.url)
        if kind == "ip":
            self._warn_once("ip", "callbackUrl uses an IP address; the real SCA refuses it (a domain name is required)")
        if kind in ("ip", "remote") and not self.options.callback_allow_remote:
            self._warn_once(
                "remote", "callbackUrl is not a loopback host; the sandbox calls loopback only (callback_allow_remote)"
            )
            with self._lock:
                self._stats["skipped"] += 1
            return
        if kind == "loopback-ip":
            self._warn_once("ip", "callbackUrl uses an IP address; the real SCA refuses it (a domain name is required)")
        with self._lock:
            heapq.heappush(self._heap, _Due(job.finish_ms, next(self._seq), job))
            self._stats["scheduled"] += 1
        self._poke()

    def _warn_once(self, kind: str, message: str) -> None:
        with self._lock:
            if kind in self._warned:
                return
            self._warned.add(kind)
        log.warning(message)  # the URL is not logged: a callbackUrl may carry its receiver's token

    def _poke(self) -> None:
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            try:
                loop.call_soon_threadsafe(wake.set)
            except RuntimeError:  # the loop has just closed
                pass

    def _take_due(self, now_ms: int) -> tuple[list[_Due], float]:
        """The callbacks due by ``now_ms``, and how long to sleep before the next one."""
        with self._lock:
            due = []
            while self._heap and self._heap[0].due_ms <= now_ms:
                due.append(heapq.heappop(self._heap))
            wait = (self._heap[0].due_ms - now_ms) / 1000 if self._heap else POLL_SECONDS
        return due, min(max(wait, 0.001), POLL_SECONDS)

    # ------------------------------------------------------------------ life cycle

    def start(self, timeout: float = 5.0) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(
            target=asyncio.run, args=(self._main(),), name="qcflow-sandbox-callbacks", daemon=True
        )
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError("sandbox callback sender did not start")

    def stop(self, timeout: float = 10.0) -> None:
        """Stop sending; callbacks in flight are cancelled, those not yet due are dropped."""
        self._stopping = True
        self._poke()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._ready.set()
        limit = asyncio.Semaphore(max(1, self.options.callback_workers))
        in_flight: set[asyncio.Task[None]] = set()
        step = self.options.callback_timeout_seconds
        try:
            async with httpx.AsyncClient(timeout=httpx.Timeout(step), follow_redirects=False, trust_env=False) as http:
                try:
                    while not self._stopping:
                        self._wake.clear()  # before looking: a poke from now on ends the wait below
                        due, wait = self._take_due(int(self.clock() * 1000))
                        for item in due:
                            task = asyncio.create_task(self._deliver(http, limit, item))
                            in_flight.add(task)
                            task.add_done_callback(in_flight.discard)
                        if due:
                            continue
                        try:
                            await asyncio.wait_for(self._wake.wait(), wait)
                        except asyncio.TimeoutError:
                            pass
                finally:
                    for task in list(in_flight):
                        task.cancel()
                    await asyncio.gather(*in_flight, return_exceptions=True)
        finally:
            self._loop = None

    # ------------------------------------------------------------------ sending

    async def _deliver(self, http: httpx.AsyncClient, limit: asyncio.Semaphore, item: _Due) -> None:
        job = item.job
        async with limit:
            now_ms = int(self.clock() * 1000)
            timestamp, signature = now_ms, None
            options = self.options
            roll = self._faults.random
            if options.callback_stale_rate and roll() < options.callback_stale_rate:
                timestamp = now_ms - int(options.callback_stale_seconds * 1000)
                self._count("stale")
            if options.callback_forge_rate and roll() < options.callback_forge_rate:
                signature = callback_signature(job.task_id, str(timestamp + 1), options.ali_uid)  # well-formed, wrong
                self._count("forged")
            signature = signature or callback_signature(job.task_id, str(timestamp), options.ali_uid)
            url = callback_url(job.url, job.task_id, timestamp, options.ali_uid, signature)
            self._count("sent")
            try:
                ok = await asyncio.wait_for(self._send(http, url), options.callback_timeout_seconds)
            except asyncio.TimeoutError:
                ok = False
            except Exception as exc:  # an answer httpx cannot take (a bad URL…): a failed attempt
                log.debug("sandbox callback attempt failed: %s", type(exc).__name__)
                ok = False
        if ok:
            with self._lock:
                self._stats["delivered"] += 1
                self._stats["delivered_for_failed_tasks"] += int(job.failed)
                self._delays.append(int(self.clock() * 1000) - job.finish_ms)
            return
        if item.attempt < options.callback_max_attempts and not self._stopping:
            pause_ms = int(options.callback_retry_seconds * 1000 * 2 ** (item.attempt - 1))
            with self._lock:
                heapq.heappush(
                    self._heap, _Due(int(self.clock() * 1000) + pause_ms, next(self._seq), job, item.attempt + 1)
                )
                self._stats["retried"] += 1
            if self._wake is not None:
                self._wake.set()  # (on the sender's own loop) the timekeeper looks at the new due time
            return
        self._count("failed")

    async def _send(self, http: httpx.AsyncClient, url: str) -> bool:
        """True when the receiver answered 2xx; the answer's body is read up to a bound."""
        try:
            async with http.stream(
                self.options.callback_method, url, content=b"" if self.options.callback_method == "POST" else None
            ) as answer:
                read = 0
                async for chunk in answer.aiter_raw():
                    read += len(chunk)
                    if read > MAX_ANSWER_BYTES:
                        break
                return 200 <= answer.status_code < 300
        except httpx.HTTPError:
            return False

    def _count(self, name: str) -> None:
        with self._lock:
            self._stats[name] += 1

    # ------------------------------------------------------------------ stats

    def snapshot(self) -> dict[str, Any]:
        """Counts, and delays from a task's finish time to its callback being answered (ms)."""
        with self._lock:
            stats: dict[str, Any] = {
                name: self._stats[name]
                for name in (
                    "scheduled",
                    "sent",
                    "delivered",
                    "delivered_for_failed_tasks",
                    "retried",
                    "failed",
                    "skipped",
                    "forged",
                    "stale",
                )
            }
            stats["pending"] = len(self._heap)
            ordered = sorted(self._delays)
            recent = list(self._delays)[-20:]
        stats["delay_ms"] = {
            "count": len(ordered),
            "p50": _percentile(ordered, 0.50) if ordered else None,
            "p95": _percentile(ordered, 0.95) if ordered else None,
            "max": ordered[-1] if ordered else None,
            "recent": recent,
        }
        return stats
