"""A chaos world: the sandbox with faults, real stores, real FC handlers, crashing children.

Everything runs the real code paths: ``functions/push``, ``functions/harvest`` and
``functions/callback`` loaded as FC loads them (one module per FC instance), the sandbox as
CCC and SCA on loopback, local folders (or OSS on moto) as the stores. Crashes are real
processes killed with SIGKILL (``tests/chaos/child.py``). The only stand-ins are FC itself
(``qcflow.tools.fc_local``: contexts, events, the async retry of a failed invocation) and a
callback relay — SCA's callbacks land on a loopback server of this module that hands them
to the callback function at once, or holds them to deliver later (late, twice, or among
forged ones).

``ChaosWorld.run()`` executes the plan's steps, then ``settle()`` lets the storm pass
(faults off, FC's retries and held callbacks delivered, ``qcflow replay`` an hour later for
what FC's retries could not settle, a last harvest — one "six minutes later", which recovers
parts whose writer died) and ``violations()`` checks the invariants:

1. every good recording has exactly one SCA task, and the ledger says submitted (with that
   taskId once harvest has run); every recording that cannot be pushed has a recorded
   failure and no task; keys that are not recordings left nothing in the ledger; SCA holds
   no task that no recording explains;
2. every final task (finished or failed) is in the JSONL exactly once, with its final state,
   and nothing else is; no pending write, no unfinished marker is left behind;
3. no child process and no handler raised anything but a qcflow error; no secret in any
   child's output.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import http.server
import itertools
import json
import os
import random
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from qcflow.callback import callback_signature
from qcflow.errors import QcflowError
from qcflow.tools.fc_local import FcCredentials, context_for, http_event, load_handler_module, oss_event, timer_event
from qcflow.ledger import Ledger, LedgerEntry, recording_id
from qcflow.push import object_location
from qcflow.tools.sandbox.options import (
    DEFAULT_ACCESS_KEY_ID,
    DEFAULT_ACCESS_KEY_SECRET,
    DEFAULT_ALI_UID,
    FaultOptions,
    QuotaOptions,
    SandboxOptions,
)
from qcflow.tools.sandbox.server import SandboxServer
from qcflow.store import LocalStore, ObjectStore
from tests.chaos import plan as p

REPO = Path(__file__).resolve().parents[2]
BUCKET = "recordings"
STS_TOKEN = "sts-token-of-the-role"
FC_CREDS = FcCredentials(DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET, STS_TOKEN)
#: What no output may contain.
SECRETS = (DEFAULT_ACCESS_KEY_SECRET, STS_TOKEN)
PUSH_TIMEOUT = 15
HARVEST_TIMEOUT = 30
CALLBACK_TIMEOUT = 10
#: The callback token push puts in callbackUrl's path (the relay forwards the path as it came).
CALLBACK_TOKEN = "chaos-callback-token-0123456789abcdef"
CALLBACK_PATH = f"/sca-callback/{CALLBACK_TOKEN}"
#: FC retries a failed async invocation this many times (then the dead-letter queue).
FC_RETRIES = 3
#: How far behind a crashing child's clock runs when its claim must have expired.
CLOCK_SHIFT_SECONDS = 120.0
CHILD_TIMEOUT_SECONDS = 60.0
#: Client read timeout in the world: latency spikes go past it.
HTTP_TIMEOUT_SECONDS = 0.6
#: Long enough that a run is never cut by its own lease (a crashed run's lease blocks the
#: timer until it expires, as it would in FC; the last pass runs "later" anyway).
LEASE_SECONDS = 60.0


def world_env(store_url: str, recordings_url: str, sandbox_url: str, callback_url: str, *, lookback: int = 3600) -> dict[str, str]:
    """The functions' settings: fast retries, a short read timeout, no client-side pacing
    that would cost wall time, small parts (several commits per window), a short lease."""
    return {
        "QCFLOW_STORE": store_url,
        "QCFLOW_RECORDINGS_URL": recordings_url,
        "QCFLOW_CCC_ENDPOINT": sandbox_url,
        "QCFLOW_SCA_ENDPOINT": sandbox_url,
        "QCFLOW_CCC_INSTANCE_ID": "ccc-chaos",
        "QCFLOW_RECORDING_PREFIX": "ccc/",
        "QCFLOW_MAX_ATTEMPTS": "4",
        "QCFLOW_BACKOFF_INITIAL_SECONDS": "0.01",
        "QCFLOW_BACKOFF_MAX_SECONDS": "0.05",
        "QCFLOW_THROTTLE_BACKOFF_INITIAL_SECONDS": "0.02",
        "QCFLOW_THROTTLE_BACKOFF_MAX_SECONDS": "0.2",
        "QCFLOW_HTTP_TIMEOUT_SECONDS": str(HTTP_TIMEOUT_SECONDS),
        "QCFLOW_HTTP_CONNECT_TIMEOUT_SECONDS": "1",
        "QCFLOW_CCC_RATE_PER_SECOND": "1000",
        "QCFLOW_UPLOAD_RATE_PER_SECOND": "1000",
        "QCFLOW_GET_RESULT_QUOTA": "60000",
        "QCFLOW_HARVEST_SETTLE_SECONDS": "0",
        "QCFLOW_HARVEST_LOOKBACK_SECONDS": str(lookback),
        "QCFLOW_HARVEST_START_SECONDS": "3600",
        "QCFLOW_HARVEST_LEASE_SECONDS": str(LEASE_SECONDS),
        "QCFLOW_HARVEST_PART_MAX_RECORDS": "7",
        "QCFLOW_PUSH_CALLBACK_URL": callback_url,
        "QCFLOW_CALLBACK_TOKEN": CALLBACK_TOKEN,
        "QCFLOW_LOG_LEVEL": "INFO",
        "ALIBABA_CLOUD_ACCESS_KEY_ID": DEFAULT_ACCESS_KEY_ID,
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": DEFAULT_ACCESS_KEY_SECRET,
    }


def sandbox_options(plan: p.Plan) -> SandboxOptions:
    f = plan.faults
    return SandboxOptions(
        task_seconds=0.3, task_jitter_seconds=0.3, task_failure_rate=plan.task_failure_rate,
        quotas=QuotaOptions(get_result=None, upload_audio_data=None, get_upload_audio_data_params=None),
        faults=FaultOptions(server_error_rate=f.server_error_rate, throttle_rate=f.throttle_rate,
                            business_failure_rate=f.business_failure_rate, drop_rate=f.drop_rate,
                            lost_answer_rate=f.lost_answer_rate, seed=plan.seed),
        seed=plan.seed, callback_retry_seconds=0.1, callback_max_attempts=3, callback_timeout_seconds=5.0,
        callback_forge_rate=0.05, callback_stale_rate=0.05,
    )


# ------------------------------------------------------------------------------ callbacks


class CallbackRelay:
    """SCA's callbacks arrive here (loopback). Live: handed to the callback function at once
    and answered with its status — or, at ``loss_rate``, accepted and lost (the timer harvest
    is the backstop). Holding: accepted (200) and queued for later."""

    def __init__(self, deliver: Any, *, loss_rate: float = 0.0, seed: int = 0) -> None:
        relay = self
        self._deliver = deliver
        self.loss_rate = loss_rate
        self._rng = random.Random(seed)
        self.lost = 0
        self.hold = False
        self.held: list[tuple[str, str, dict[str, str]]] = []
        self.seen: list[tuple[str, str, dict[str, str]]] = []
        self.lock = threading.Lock()
        self.in_flight = 0

        class _Handler(http.server.BaseHTTPRequestHandler):
            def _serve(self) -> None:
                parts = urlsplit(self.path)
                query = dict(parse_qsl(parts.query, keep_blank_values=True))
                path = parts.path or "/"  # forwarded as it came: the callback token is its last segment
                length = min(int(self.headers.get("content-length") or 0), 1 << 16)
                if length:
                    self.rfile.read(length)
                with relay.lock:
                    relay.seen.append((self.command, path, query))
                    holding = relay.hold
                    lost = not holding and relay._rng.random() < relay.loss_rate
                    if holding:
                        relay.held.append((self.command, path, query))
                    elif lost:
                        relay.lost += 1
                    else:
                        relay.in_flight += 1
                status = 200
                if not holding and not lost:
                    try:
                        status = relay._deliver(self.command, path, query)
                    finally:
                        with relay.lock:
                            relay.in_flight -= 1
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            do_GET = _serve
            do_POST = _serve

            def log_message(self, *args: Any) -> None:
                return

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/sca-callback"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="chaos-callback-relay", daemon=True)

    def start(self) -> CallbackRelay:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def take_held(self) -> list[tuple[str, str, dict[str, str]]]:
        with self.lock:
            held, self.held = self.held, []
            return held

    def idle(self) -> bool:
        with self.lock:
            return self.in_flight == 0


# ------------------------------------------------------------------------------ the world


@dataclass
class _Retry:
    """FC's async retry of a failed invocation: the same request id, the same event."""

    keys: tuple[str, ...]
    request_id: str
    left: int
    due: int


@dataclass
class ChildRun:
    point: str | None
    returncode: int
    note: dict[str, Any] | None
    result: dict[str, Any] | None
    output: str

    @property
    def crashed(self) -> bool:
        return self.returncode == -9


@dataclass
class ChaosWorld:
    plan: p.Plan
    root: Path
    store: ObjectStore
    store_url: str
    server: SandboxServer
    relay: CallbackRelay
    env: dict[str, str]
    stats: Counter[str] = field(default_factory=Counter)
    trace: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    _instances: dict[str, list[ModuleType]] = field(default_factory=dict)
    _all_modules: list[ModuleType] = field(default_factory=list)
    _retries: list[_Retry] = field(default_factory=list)
    _step: int = 0
    _rng: random.Random = field(default_factory=random.Random)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _round_robin: Any = field(default_factory=lambda: itertools.count())
    _recordings: LocalStore | None = None
    started_at: float = field(default_factory=time.time)

    # ---------------------------------------------------------------- set-up
    @classmethod
    @contextlib.contextmanager
    def open(cls, plan: p.Plan, root: Path, monkeypatch: Any, *, store_url: str | None = None,
             store: ObjectStore | None = None, extra_env: dict[str, str] | None = None) -> Any:
        """The world for ``plan``: a local state store under ``root``, or ``store`` at
        ``store_url`` (e.g. OSS, with ``extra_env`` saying where its endpoint is)."""
        recordings_dir = root / "recordings"
        if store is None:
            store = LocalStore(root / "store")
            store_url = f"file:{root / 'store'}"
        assert store_url is not None
        world_ref: list[ChaosWorld] = []
        relay = CallbackRelay(lambda method, path, query: world_ref[0].deliver_callback(method, query, path),
                              loss_rate=plan.callback_loss_rate, seed=plan.seed)
        with SandboxServer(sandbox_options(plan)) as server:
            relay.start()
            env = world_env(store_url, f"file:{recordings_dir}", server.url, relay.url, lookback=plan.lookback_seconds)
            env.update(extra_env or {})
            for name, value in env.items():
                monkeypatch.setenv(name, value)
            world = cls(plan, root, store, store_url, server, relay, env, _rng=random.Random(plan.seed + 1))
            world._recordings = LocalStore(recordings_dir)
            world_ref.append(world)
            for spec in plan.recordings:
                world._recordings.put(spec.key, b"\x1aE\xdf\xa3matroska-" + spec.key.encode(), content_type="video/x-matroska",
                                      metadata=spec.metadata)
            try:
                yield world
            finally:
                relay.stop()
                for module in world._all_modules:
                    with contextlib.suppress(Exception):
                        module.app.close()

    def _note(self, text: str) -> None:
        with self._lock:
            self.trace.append(f"[{time.time() - self.started_at:7.2f}s step {self._step}] {text}")

    def _count(self, name: str, by: int = 1) -> None:
        with self._lock:
            self.stats[name] += by

    def instance(self, function: str, index: int = 0) -> ModuleType:
        with self._lock:
            pool = self._instances.setdefault(function, [])
            while len(pool) <= index:
                module = load_handler_module(function)
                pool.append(module)
                self._all_modules.append(module)
            return pool[index]

    def cold_start(self, function: str, index: int) -> None:
        with self._lock:
            pool = self._instances.setdefault(function, [])
            if index < len(pool):
                old = pool[index]
                pool[index] = load_handler_module(function)
                self._all_modules.append(pool[index])
            else:
                old = None
        if old is not None:
            old.app.close()
        self._count("cold_starts")

    def set_faults(self, faults: FaultOptions) -> None:
        app = self.server.app
        app.options = replace(app.options, faults=faults)

    # ---------------------------------------------------------------- push
    def deliver(self, keys: tuple[str, ...], request_id: str, instance: int = 0, *, retries_left: int = FC_RETRIES) -> str:
        """One OSS event to a push instance; a failure queues FC's retry (same request id)."""
        module = self.instance("push", instance)
        self._count("push.invocations")
        try:
            summary = module.handler(oss_event(BUCKET, *keys), context_for("push", FC_CREDS, timeout=PUSH_TIMEOUT,
                                                                           request_id=request_id))
        except QcflowError as exc:
            self._count("push.raised")
            self._note(f"push {request_id} {keys} raised {type(exc).__name__}: {str(exc)[:160]}")
            self._queue_retry(keys, request_id, retries_left)
            return "raised"
        except Exception as exc:  # noqa: BLE001 - a bug: recorded, and FC would retry it
            self.problems.append(f"push {request_id} raised a non-qcflow error {type(exc).__name__}: {exc!r}"[:400])
            self._queue_retry(keys, request_id, retries_left)
            return "crashed"
        for status, count in summary.items():
            if status not in ("records", "error"):
                self._count(f"push.{status}", count)
        self._note(f"push {request_id} {keys} -> {summary}")
        return "ok"

    def _queue_retry(self, keys: tuple[str, ...], request_id: str, left: int) -> None:
        if left <= 0:
            self._count("push.fc_gave_up")
            return
        with self._lock:
            self._retries.append(_Retry(keys, request_id, left - 1, self._step + self._rng.randint(1, 3)))

    def run_due_retries(self, *, all_of_them: bool = False) -> None:
        with self._lock:
            due = [r for r in self._retries if all_of_them or r.due <= self._step]
            self._retries = [r for r in self._retries if not (all_of_them or r.due <= self._step)]
        for retry in due:
            self._count("push.fc_retries")
            self.deliver(retry.keys, retry.request_id, self._rng.randrange(p.PUSH_INSTANCES), retries_left=retry.left)

    def burst(self, events: tuple[p.Event, ...], concurrent: bool) -> None:
        if not concurrent:
            for event in events:
                self.deliver(event.keys, event.request_id, event.instance)
            return
        threads = [threading.Thread(target=self.deliver, args=(e.keys, e.request_id, e.instance), daemon=True) for e in events]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(PUSH_TIMEOUT * 3)
            if thread.is_alive():
                self.problems.append("a push invocation did not return within 3x its FC timeout")

    # ---------------------------------------------------------------- harvest
    def harvest(self, runs: int = 1, backfill: bool = False) -> list[dict[str, Any]]:
        reports: list[dict[str, Any]] = []

        def one(index: int) -> None:
            payload = None
            if backfill and index == 0:
                since = datetime.fromtimestamp(self.started_at - 3600, timezone.utc).isoformat()
                payload = {"since": since}
            module = self.instance("harvest", index)
            self._count("harvest.invocations")
            try:
                report = module.handler(timer_event(payload), context_for("harvest", FC_CREDS, timeout=HARVEST_TIMEOUT))
            except QcflowError as exc:
                self._count("harvest.raised")
                self._note(f"harvest raised {type(exc).__name__}: {str(exc)[:160]}")
                return
            except Exception as exc:  # noqa: BLE001
                self.problems.append(f"harvest raised a non-qcflow error {type(exc).__name__}: {exc!r}"[:400])
                return
            with self._lock:
                reports.append(report)
            self._count("harvest.lease_busy" if report.get("lease_busy") else "harvest.ran")
            self._count("harvest.written", int(report.get("written") or 0))
            self._count("harvest.duplicates_skipped", int(report.get("duplicates_skipped") or 0))
            self._count("harvest.recovered", int(report.get("recovered") or 0))
            self._note(f"harvest {report.get('mode')} busy={report.get('lease_busy')} written={report.get('written')} "
                       f"skipped={report.get('duplicates_skipped')} recovered={report.get('recovered')} "
                       f"deadline={report.get('stopped_by_deadline')}")

        threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(runs)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(HARVEST_TIMEOUT * 4)
            if thread.is_alive():
                self.problems.append("a harvest invocation did not return within 4x its FC timeout")
        if runs > 1:
            self._count("harvest.overlapping_sets")
        return reports

    # ---------------------------------------------------------------- callbacks
    def deliver_callback(self, method: str, query: dict[str, str], path: str = CALLBACK_PATH) -> int:
        index = next(self._round_robin) % 2
        module = self.instance("callback", index)
        self._count("callbacks.delivered")
        try:
            answer = module.handler(http_event(method, path, query),
                                    context_for("callback", FC_CREDS, timeout=CALLBACK_TIMEOUT))
        except Exception as exc:  # noqa: BLE001 - the handler must answer, never raise
            self.problems.append(f"callback handler raised {type(exc).__name__}: {exc!r}"[:400])
            return 502
        status = int(answer.get("statusCode", 0))
        self._count(f"callbacks.http_{status}")
        return status

    def callbacks(self, step: p.Callbacks) -> None:
        held = self.relay.take_held()
        for method, path, query in held:
            self.deliver_callback(method, query, path)
        seen = list(self.relay.seen)
        for method, path, query in self._rng.sample(seen, min(step.duplicates, len(seen))):
            self._count("callbacks.duplicated")
            self.deliver_callback(method, query, path)
        now_ms = int(time.time() * 1000)
        running = self._running_task_ids()
        for i in range(step.forged):
            task_id = running[i % len(running)] if running and i % 2 == 0 else f"forged-{uuid.uuid4().hex[:12]}"
            query = {"taskId": task_id, "timestamp": str(now_ms), "aliUid": DEFAULT_ALI_UID,
                     "signature": callback_signature(task_id, str(now_ms), DEFAULT_ALI_UID), "event": "TaskComplete"}
            self._count("callbacks.forged")
            if i % 4 == 3:  # without the token (the URL did not leak): refused before any lookup
                if self.deliver_callback("GET", query, "/sca-callback/forged-token-0123456789abcdef") != 404:
                    self.problems.append(f"a callback without the token was not answered 404: {query}")
            else:  # with it (the URL leaked): a well-signed hint, checked against GetResult
                self.deliver_callback("GET", query)
        for i in range(step.refused):
            task_id = running[0] if running else "T-unknown"
            kind = i % 3
            if kind == 0:
                query = {"taskId": task_id, "timestamp": str(now_ms), "aliUid": DEFAULT_ALI_UID,
                         "signature": "AAAAAAAAAAAAAAAAAAAAAA==", "event": "TaskComplete"}
            elif kind == 1:
                old = str(now_ms - 3_600_000)
                query = {"taskId": task_id, "timestamp": old, "aliUid": DEFAULT_ALI_UID,
                         "signature": callback_signature(task_id, old, DEFAULT_ALI_UID)}
            else:
                query = {"taskId": "../../state/push", "timestamp": "x" * 600, "aliUid": "", "signature": "%00"}
            self._count("callbacks.junk")
            if self.deliver_callback("GET", query) != 400:
                self.problems.append(f"a refused callback was not answered 400: {query}")
        self._note(f"callbacks: {len(held)} held delivered, {step.duplicates} duplicated, {step.forged} forged, {step.refused} refused")

    def _running_task_ids(self) -> list[str]:
        now_ms = int(time.time() * 1000)
        sca = self.server.app.sca
        with sca._lock:
            return sorted({t.task_id for t in sca._tasks if t.finish_ms > now_ms})

    # ---------------------------------------------------------------- sandbox knobs
    def amnesia(self) -> None:
        """Two hours pass for SCA's callUuid check: it forgets every callUuid."""
        sca = self.server.app.sca
        with sca._lock:
            sca._call_uuids.clear()
        self._count("amnesia")
        self._note("SCA forgot every callUuid (2 hours passed)")

    def spike(self, seconds: float) -> None:
        faults = self.server.app.options.faults
        self.set_faults(replace(faults, latency_seconds=0.0, latency_jitter_seconds=seconds))
        if seconds:
            self._count("latency_spikes")
        self._note(f"latency jitter {seconds} s")

    def wait_tasks_final(self, limit: float = 10.0) -> None:
        """Until every task SCA holds is final, and the second of the last upload has passed
        (a window ends at a whole second before now: an upload in the current second is the
        next window's)."""
        sca = self.server.app.sca
        end = time.monotonic() + limit
        while time.monotonic() < end:
            with sca._lock:
                last = max((t.finish_ms for t in sca._tasks), default=0) / 1000
                uploaded = max((t.upload_ms for t in sca._tasks), default=0) // 1000 + 1.05
            wait = max(last, uploaded) - time.time()
            if wait <= 0:
                return
            time.sleep(min(0.1, max(0.01, wait)))

    # ---------------------------------------------------------------- crashing children
    def child(self, spec: dict[str, Any]) -> ChildRun:
        index = self.stats["children"]
        self._count("children")
        spec_path = self.root / f"child-{index}.json"
        note_path = self.root / f"child-{index}.note.json"
        spec = {**spec, "note": str(note_path)}
        spec_path.write_text(json.dumps(spec), encoding="utf-8")
        env = {**os.environ, **self.env, "ALIBABA_CLOUD_SECURITY_TOKEN": STS_TOKEN, "PYTHONUNBUFFERED": "1"}
        done = subprocess.run([sys.executable, "-m", "tests.chaos.child", str(spec_path)], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=CHILD_TIMEOUT_SECONDS, check=False)
        output = done.stdout + done.stderr
        note = json.loads(note_path.read_text()) if note_path.exists() else None
        result = None
        for line in reversed(done.stdout.splitlines()):
            if line.startswith('{"child_result"'):
                result = json.loads(line)
                break
        for secret in SECRETS:
            if secret in output:
                self.problems.append(f"child {index} ({spec.get('point')}) printed a secret")
        run = ChildRun(spec.get("point"), done.returncode, note, result, output)
        if not run.crashed and not (run.returncode == 0 or (result or {}).get("qcflow_error")):
            self.problems.append(f"child {index} ({spec.get('point')}) failed (rc {done.returncode}): {output[-1500:]}")
        point = spec.get("point") or "none"
        self._count(f"crash.{point}.{'reached' if run.crashed else 'missed'}")
        self._note(f"child {index} {spec['kind']} point={point} rc={done.returncode} note={note} result={result}")
        return run

    def crash_push(self, step: p.CrashPush) -> ChildRun:
        spec = {"kind": "push", "keys": list(step.keys), "bucket": BUCKET, "request_id": step.request_id,
                "timeout": PUSH_TIMEOUT, "point": step.point,
                "clock_shift": -CLOCK_SHIFT_SECONDS if step.shifted else 0}
        run = self.child(spec)
        if run.crashed or run.result is None or run.result.get("child_result") is None:
            # FC retries the invocation that died or failed (same request id)...
            self._queue_retry(step.keys, step.request_id, FC_RETRIES)
            if step.duplicate:  # ...and OSS may deliver the event again
                self._queue_retry(step.keys, f"{step.request_id}-dup", FC_RETRIES)
        return run

    def crash_harvest(self, step: p.CrashHarvest) -> ChildRun:
        if step.via == "callback":
            task_id = self._unwritten_final_task()
            if task_id is None:
                self._count(f"crash.{step.point}.missed")
                self._note("no finished task left unwritten for a crashing callback")
                return ChildRun(step.point, 0, None, None, "")
            return self.child({"kind": "callback", "task_id": task_id, "timeout": CALLBACK_TIMEOUT, "point": step.point})
        return self.child({"kind": "harvest", "timeout": HARVEST_TIMEOUT, "point": step.point})

    def _unwritten_final_task(self) -> str | None:
        written = {line["task_id"] for line in read_results(self.store)}
        now_ms = int(time.time() * 1000)
        sca = self.server.app.sca
        with sca._lock:
            for task in sca._tasks:
                if task.finish_ms <= now_ms and task.task_id not in written:
                    return task.task_id
        return None

    # ---------------------------------------------------------------- running a plan
    def run(self) -> None:
        for step in self.plan.steps:
            self._step += 1
            began = time.monotonic()
            self.run_due_retries()
            self._count("seconds.retries", time.monotonic() - began)  # type: ignore[arg-type]
            began = time.monotonic()
            self.do(step)
            self._count(f"seconds.{step.op}", time.monotonic() - began)  # type: ignore[arg-type]
        self._step += 1
        self.run_due_retries()

    def do(self, step: p.Step) -> None:
        if isinstance(step, p.Deliver):
            self._count("duplicate_events", sum(1 for e in step.events if "-dup-" in e.request_id or "-late-" in e.request_id))
            self.burst(step.events, step.concurrent)
        elif isinstance(step, p.CrashPush):
            self.crash_push(step)
        elif isinstance(step, p.CrashHarvest):
            self.crash_harvest(step)
        elif isinstance(step, p.Harvest):
            self.harvest(step.runs, step.backfill)
        elif isinstance(step, p.Callbacks):
            self.callbacks(step)
        elif isinstance(step, p.Hold):
            self.relay.hold = step.on
        elif isinstance(step, p.Amnesia):
            self.amnesia()
        elif isinstance(step, p.Spike):
            self.spike(step.seconds)
        elif isinstance(step, p.WaitTasks):
            self.wait_tasks_final()
        elif isinstance(step, p.Pause):
            time.sleep(step.seconds)
        elif isinstance(step, p.ColdStart):
            self.cold_start("push", step.instance)
        else:  # pragma: no cover - a plan step without an executor is a bug of this suite
            raise AssertionError(f"unknown step {step!r}")

    # ---------------------------------------------------------------- the storm passes
    def settle(self) -> None:
        """The storm passes: faults off, FC's pending retries and held callbacks delivered, FC
        retrying each invocation that still holds an unsettled claim; what that does not settle
        is left to ``qcflow replay`` an hour later; then the last harvests."""
        self.set_faults(FaultOptions())
        self.relay.hold = False
        self.run_due_retries(all_of_them=True)
        for _ in range(3):
            pending = self._unsettled()
            if not pending:
                break
            for spec, entry in pending:
                claim = entry.latest_claim
                holder = claim.token[3:] if claim is not None and claim.token.startswith("fc-") else f"drain-{uuid.uuid4().hex[:8]}"
                self._count("push.drain")
                self.deliver((spec.key,), holder, 0, retries_left=0)
            self.run_due_retries(all_of_them=True)
        if self._unsettled():
            self.operator_replay()
        for spec, _ in self._unsettled():
            self.problems.append(f"{spec.key}: still unsettled after the storm passed")
        self.wait_tasks_final()
        self._drain_callbacks()
        self.harvest(1)
        self.final_harvest()

    def operator_replay(self) -> None:
        """``qcflow replay`` an hour later (the push use case, its clock an hour ahead: every
        claim of the storm has expired): what FC's retries left unsettled — claims abandoned by
        a kill or by FC giving up — and the recorded failures are pushed again."""
        from qcflow.credentials import credentials_from_env
        from qcflow.push import Pusher
        from qcflow.services import build_services

        async def main() -> list[Any]:
            services = await build_services(credentials_from_env)
            try:
                base = services.pusher()
                pusher = Pusher(services.settings.push, zone=services.settings.zone, ccc=services.ccc, sca=services.sca, store=services.store,
                                recordings=base.recordings, clock=lambda: time.time() + 3600, callback_token=CALLBACK_TOKEN)
                return await pusher.replay(token=f"replay-{uuid.uuid4().hex[:8]}", deadline=time.monotonic() + 30)
            finally:
                await services.aclose()

        results = asyncio.run(main())
        self._count("push.replayed", len(results))
        self._note(f"qcflow replay an hour later: {[(r.key, r.status) for r in results]}")

    def _drain_callbacks(self, limit: float = 15.0) -> None:
        end = time.monotonic() + limit
        callbacks = self.server.app.callbacks
        while time.monotonic() < end:
            for method, path, query in self.relay.take_held():
                self.deliver_callback(method, query, path)
            if callbacks.snapshot()["pending"] == 0 and self.relay.idle() and not self.relay.held:
                return
            time.sleep(0.05)

    def final_harvest(self) -> None:
        """A timer pass "six minutes later" (its clock past the recovery grace): parts whose
        writer died are rewritten from GetResult; everything else is skipped."""
        from qcflow.credentials import credentials_from_env
        from qcflow.harvest.run import recovery_grace_seconds, run_harvest
        from qcflow.services import build_services

        async def main() -> dict[str, Any]:
            services = await build_services(credentials_from_env)
            try:
                grace = recovery_grace_seconds(services.settings.http)
                later = lambda: datetime.now(timezone.utc) + timedelta(seconds=grace + 60)  # noqa: E731
                report = await run_harvest(services.settings, services.sca, services.store, deadline=time.monotonic() + 60,
                                           now=later, ledger=Ledger(services.store))
                return report.to_json()
            finally:
                await services.aclose()

        report = asyncio.run(main())
        self._count("harvest.recovered", int(report.get("recovered") or 0))
        self._count("harvest.written", int(report.get("written") or 0))
        self._note(f"final harvest (clock +grace): {report}")
        if report.get("lease_busy") or report.get("stopped_by_deadline"):
            self.problems.append(f"the final harvest did not complete: {report}")

    # ---------------------------------------------------------------- invariants
    def entry(self, key: str) -> LedgerEntry:
        location = object_location(self.env["QCFLOW_RECORDINGS_URL"], key)
        return Ledger(self.store).read(recording_id(location))

    def _unsettled(self) -> list[tuple[p.RecordingSpec, LedgerEntry]]:
        out = []
        for spec in self.plan.recordings:
            if spec.kind == "not_recording":
                continue
            entry = self.entry(spec.key)
            outcome = entry.outcome
            if entry.submitted is None and not (outcome is not None and outcome.state == "failed"):
                out.append((spec, entry))
        return out

    def violations(self) -> list[str]:
        found = list(self.problems)
        sca = self.server.app.sca
        with sca._lock:
            tasks = list(sca._tasks)
        by_contact: dict[str, list[Any]] = {}
        for task in tasks:
            by_contact.setdefault((task.call or {}).get("callId"), []).append(task)
        expected_contacts = set()
        for spec in self.plan.recordings:
            entry = self.entry(spec.key)
            if spec.kind == "good":
                expected_contacts.add(spec.contact)
                mine = by_contact.get(spec.contact, [])
                if len(mine) != 1:
                    found.append(f"{spec.key}: {len(mine)} SCA tasks {[t.task_id for t in mine]} (exactly one expected)")
                if entry.submitted is None:
                    outcome = entry.outcome
                    found.append(f"{spec.key}: not recorded as submitted (claims {sorted(entry.claims)}, "
                                 f"outcome {outcome.state + ' ' + str(outcome.code) if outcome else None})")
                elif len(mine) == 1 and entry.task_id != mine[0].task_id:
                    found.append(f"{spec.key}: the ledger's taskId {entry.task_id} is not SCA's {mine[0].task_id} "
                                 f"(via {entry.submitted.via})")
            elif spec.kind in ("no_contact", "unknown_contact"):
                outcome = entry.outcome
                if outcome is None or outcome.state != "failed" or not outcome.code:
                    found.append(f"{spec.key}: no recorded failure (outcome {outcome})")
                contact = (spec.metadata or {}).get("contact-id")
                if contact and by_contact.get(contact):
                    found.append(f"{spec.key}: has SCA tasks though it cannot be pushed")
            else:
                if entry.claims or entry.outcomes:
                    found.append(f"{spec.key}: not a recording, yet in the ledger")
        strays = [t.task_id for t in tasks if (t.call or {}).get("callId") not in expected_contacts]
        if strays:
            found.append(f"SCA holds tasks no recording explains: {strays[:5]}")
        # the JSONL: every final task once, with its final state; nothing else
        lines = read_results(self.store)
        written: Counter[tuple[str, str | None]] = Counter((line["task_id"], line["call_id"]) for line in lines)
        twice = [k for k, n in written.items() if n > 1]
        if twice:
            found.append(f"written more than once: {twice[:5]}")
        now_ms = int(time.time() * 1000)
        final = {(t.task_id, (t.call or {}).get("callId")): t for t in tasks if t.finish_ms <= now_ms}
        missing = sorted(set(final) - set(written))
        if missing:
            found.append(f"{len(missing)} final task(s) missing from the JSONL: {missing[:5]}")
        extra = sorted(set(written) - set(final))
        if extra:
            found.append(f"written but not a final task: {extra[:5]}")
        for line in lines:
            task = final.get((line["task_id"], line["call_id"]))
            if task is not None:
                state = "finished" if task.final_status == 1 else "failed"
                if line["state"] != state or line["status"] != task.final_status:
                    found.append(f"{line['task_id']}: written as {line['state']}/{line['status']}, SCA says {state}")
        if len(final) != len(tasks):
            found.append(f"{len(tasks) - len(final)} SCA task(s) still running at the end (the check waited for them)")
        for prefix, what in (("state/harvest/pending/", "pending write"), ("state/harvest/unfinished/", "unfinished marker")):
            left = [info.key for info in self.store.list(prefix)]
            if left:
                found.append(f"{len(left)} {what}(s) left behind: {left[:3]}")
        return found

    # ---------------------------------------------------------------- the report
    def faults_seen(self) -> Counter[str]:
        """Injected faults by kind, as the sandbox counted its answers (a dropped connection
        and a lost answer are both "dropped" there: the client sees the same thing)."""
        snapshot = self.server.app.snapshot()
        kinds = {"ServiceUnavailable": "5xx", "Throttling.User": "throttling", "InternalError": "success_false",
                 "dropped": "dropped_or_lost"}
        out: Counter[str] = Counter()
        for name, count in snapshot["answers"].items():
            action, _, code = name.rpartition(" ")
            if code in kinds:
                out[kinds[code]] += count
        callbacks = snapshot["callbacks"]
        out["callback_forged"] += callbacks.get("forged", 0)
        out["callback_stale"] += callbacks.get("stale", 0)
        out["callback_lost"] += self.relay.lost
        out["latency_spikes"] += self.stats["latency_spikes"]
        out["amnesia"] += self.stats["amnesia"]
        return out


def read_results(store: ObjectStore) -> list[dict[str, Any]]:
    lines: list[dict[str, Any]] = []
    for info in store.list("results/"):
        body = store.get(info.key).body
        if info.key.endswith(".gz"):
            body = gzip.decompress(body)
        lines.extend(json.loads(line) for line in body.splitlines() if line.strip())
    return lines


def replay_hint(seed: int) -> str:
    return (f"replay: QCFLOW_CHAOS_SEED={seed} QCFLOW_CHAOS_SEEDS=1 .venv/bin/python -m pytest -p no:cacheprovider "
            f"tests/chaos -k 'schedule and seed{seed}-'")


__all__ = ["ChaosWorld", "read_results", "replay_hint"]
