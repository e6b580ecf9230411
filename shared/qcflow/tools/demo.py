"""``qcflow demo``: the whole pipeline on embedded defaults, through the real handlers.

It starts the sandbox (CCC + SCA on loopback) and an FC HTTP trigger for the callback
function, writes N synthetic recordings into the store, feeds their OSS events through
``functions/push/index.py``, lets the sandbox finish the tasks (its callbacks reach
``functions/callback/index.py``), runs ``functions/harvest/index.py`` once, and counts what
landed. Before the harvest, people review a few finished tasks in the sandbox; then the
agent of one appeals, it is reviewed again, and the timer fires a second time: the harvest's
review feed writes each review to ``reviews/``, one line per review. Everything it started
is stopped on the way out, also on Ctrl-C and on error.
Not part of the layer (it needs the sandbox extra).

The numbers are this run's: its recordings' ledger outcomes, its tasks' callbacks, its
recordings' result lines — a second demo into the same store counts its own 20, not the 40 the
store holds by then. The store is ``--store`` or ``file:./qcflow-data``, never an exported
``QCFLOW_STORE``: synthetic recordings and results must not land in a real pipeline's bucket
because a shell had it set.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import secrets
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

from qcflow import layout
from qcflow.ledger import Ledger
from qcflow.store import ObjectStore, open_store
from qcflow.tools.fc_local import (
    FcCredentials,
    HttpTriggerServer,
    context_for,
    load_handler_module,
    oss_event,
    timer_event,
)
from qcflow.tools.sandbox.options import DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET, SandboxOptions
from qcflow.tools.sandbox.server import SandboxServer

DEFAULT_STORE = "file:./qcflow-data"
DEMO_BUCKET = "qcflow-demo-recordings"
CREDENTIALS = FcCredentials(DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET, "demo-sts-token")


@dataclass
class DemoSummary:
    store: str
    recordings: int
    pushed: int = 0
    push_failed: int = 0
    finished: int = 0
    failed: int = 0
    harvested: int = 0
    distinct_tasks: int = 0
    files: int = 0
    callbacks: int = 0
    #: Reviews people saved in the sandbox, and the lines the review feed wrote for them.
    reviews_saved: int = 0
    reviews: int = 0
    distinct_reviews: int = 0
    results_at: str = ""
    reviews_at: str = ""
    seconds: float = 0.0
    part_keys: list[str] = field(default_factory=list)
    #: An exported QCFLOW_STORE the demo did not use (it writes only where --store says).
    ignored_store: str | None = None
    #: Callbacks still pending when the wait gave up (0: none were missing).
    callbacks_missing: int = 0
    #: Tasks whose callbacks the function kept answering 503 until SCA gave up: the timer harvests them.
    callbacks_deferred: int = 0

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["exactly_once"] = self.exactly_once
        return data

    @property
    def exactly_once(self) -> bool:
        return self.harvested == self.distinct_tasks and self.reviews == self.distinct_reviews


@contextlib.contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the handlers (they read ``QCFLOW_*`` on their first call)."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _lines(store: ObjectStore, key: str) -> list[dict[str, Any]]:
    body = store.get(key).body
    if key.endswith(".gz"):
        body = gzip.decompress(body)
    return [json.loads(line) for line in body.splitlines() if line.strip()]


def count_results(store: ObjectStore, contacts: set[str] | None = None) -> tuple[Counter[str], Counter[str], list[str]]:
    """(lines per state, lines per result id, part keys) of every JSONL part in ``results/``;
    with ``contacts``, only those recordings' lines and the parts holding one."""
    states: Counter[str] = Counter()
    per_result: Counter[str] = Counter()
    parts = []
    for info in store.list(layout.RESULTS):
        if not info.key.endswith((".jsonl", ".jsonl.gz")):
            continue
        mine = False
        for record in _lines(store, info.key):
            if contacts is not None and record.get("contact_id") not in contacts:
                continue
            mine = True
            states[record.get("state") or "?"] += 1
            per_result[f"{record.get('task_id')}|{record.get('call_id')}"] += 1
        if mine:
            parts.append(info.key)
    return states, per_result, parts


def count_reviews(store: ObjectStore, contacts: set[str] | None = None) -> tuple[int, int]:
    """(lines, distinct reviews) in ``reviews/`` (with ``contacts``, only those recordings'):
    a review is (task, call, review time)."""
    lines = 0
    distinct: set[str] = set()
    for info in store.list(layout.REVIEWS):
        if info.key.endswith((".jsonl", ".jsonl.gz")):
            for record in _lines(store, info.key):
                if contacts is not None and record.get("contact_id") not in contacts:
                    continue
                lines += 1
                distinct.add(f"{record.get('task_id')}|{record.get('call_id')}|{record.get('review_time')}")
    return lines, len(distinct)


def _people_review(sandbox: SandboxServer, count: int = 3) -> list[str]:
    """QA staff review ``count`` finished tasks, saved a second in the past (the harvest's
    windows end at whole seconds); their taskIds."""
    sca = sandbox.app.sca
    task_ids = sca.finished_task_ids(count)
    for task_id in task_ids:
        sca.review(task_id, at=time.time() - 1)
    return task_ids


def _agent_appeals(sandbox: SandboxServer, task_id: str) -> None:
    """The agent appeals a reviewed task; a QA lead settles it (a review of its own)."""
    time.sleep(1.1)  # a later second than the first review
    sandbox.app.sca.review(task_id, at=time.time() - 1, appeal=True)


def run_demo(
    recordings: int = 20,
    *,
    store_url: str | None = None,
    task_seconds: float = 2.0,
    failure_rate: float = 0.1,
    settle_timeout: float = 60.0,
    say: Callable[[str], None] = lambda text: None,
) -> DemoSummary:
    """Run the pipeline end to end; the summary counts what each stage did in this run.

    ``store_url``: where to write (default ``file:./qcflow-data``); an exported ``QCFLOW_STORE``
    is ignored on purpose (``ignored_store`` says so)."""
    started = time.monotonic()
    exported = os.environ.get("QCFLOW_STORE")
    store_url = store_url or DEFAULT_STORE
    summary = DemoSummary(store_url, recordings)
    if exported and exported != store_url:
        summary.ignored_store = exported
        say(f"QCFLOW_STORE={exported} is ignored: the demo writes to {store_url} (--store chooses)")
    options = replace(
        SandboxOptions(),
        task_seconds=task_seconds,
        task_jitter_seconds=task_seconds / 2,
        task_failure_rate=failure_rate,
        seed=int(time.time()) % 100_000,
    )
    handlers: list[Any] = []
    with contextlib.ExitStack() as stack:
        sandbox = stack.enter_context(SandboxServer(options))
        callback = load_handler_module("callback")
        handlers.append(callback)
        trigger = stack.enter_context(HttpTriggerServer(callback.handler, CREDENTIALS))
        stack.callback(lambda: [h.app.close() for h in handlers])
        say(f"sandbox (CCC + SCA) on {sandbox.url}; callback function on {trigger.url}")
        stack.enter_context(environment(_demo_environment(store_url, sandbox.url, trigger.url)))
        store = open_store(store_url)
        folder, keys = _write_recordings(store, recordings)
        say(f"wrote {recordings} synthetic recordings under {store_url}/{folder}")

        push = load_handler_module("push")
        handlers.append(push)
        with ThreadPoolExecutor(max_workers=8) as pool:  # OSS delivers events concurrently
            list(
                pool.map(lambda key: push.handler(oss_event(DEMO_BUCKET, key), context_for("push", CREDENTIALS)), keys)
            )
        summary.pushed, summary.push_failed = _count_pushes(store, set(keys))
        say(
            f"pushed {summary.pushed} recordings to SCA ({summary.push_failed} failed); "
            f"waiting for their {summary.pushed} tasks' callbacks (at most {settle_timeout:g} s)"
        )
        summary.callbacks_missing = _wait_for_callbacks(sandbox, summary.pushed, settle_timeout)
        delivered = sandbox.app.snapshot().get("callbacks", {})
        summary.callbacks = int(delivered.get("delivered", 0))
        summary.callbacks_deferred = int(delivered.get("failed", 0))
        if summary.callbacks_missing:
            say(f"gave up waiting after {settle_timeout:g} s: {summary.callbacks_missing} callbacks still pending")
        deferred = (
            f", deferred {summary.callbacks_deferred} (503: its share of the GetResult quota was spent)"
            if summary.callbacks_deferred
            else ""
        )
        say(
            f"the callback function took {summary.callbacks} tasks' callbacks{deferred} "
            f"({trigger.calls} requests, with SCA's retries)"
        )
        reviewed = _people_review(sandbox)
        say(f"people reviewed {len(reviewed)} tasks; running the harvest function")

        harvest = load_handler_module("harvest")
        handlers.append(harvest)
        harvest.handler(timer_event(), context_for("harvest", CREDENTIALS, timeout=300))
        if reviewed:
            _agent_appeals(sandbox, reviewed[0])
            say("an agent appealed one review and it was reviewed again; the harvest timer fires again")
            harvest.handler(timer_event(), context_for("harvest", CREDENTIALS, timeout=300))
        summary.reviews_saved = sandbox.app.sca.reviews.saved
        _count_results_into(summary, store, {_contact_of(key) for key in keys})
    summary.seconds = time.monotonic() - started
    return summary


def _demo_environment(store_url: str, sandbox_url: str, callback_url: str) -> dict[str, str]:
    """What the handlers read on their first call: the sandbox for CCC and SCA, short harvest delays."""
    return {
        "QCFLOW_STORE": store_url,
        # recordings and results share the store: push ignores its own prefixes
        "QCFLOW_RECORDINGS_URL": store_url,
        "QCFLOW_RECORDING_PREFIX": "ccc/",
        "QCFLOW_CCC_ENDPOINT": sandbox_url,
        "QCFLOW_SCA_ENDPOINT": sandbox_url,
        "QCFLOW_CCC_INSTANCE_ID": "ccc-demo",
        "QCFLOW_PUSH_CALLBACK_URL": callback_url,
        # a fresh token per run, as a deployment generates one (push puts it in callbackUrl's path)
        "QCFLOW_CALLBACK_TOKEN": secrets.token_urlsafe(32),
        # one callback instance here: its bucket holds the callbacks' whole share of the quota
        "QCFLOW_CALLBACK_MAX_INSTANCES": "1",
        "QCFLOW_HARVEST_SETTLE_SECONDS": "0",
        "QCFLOW_HARVEST_LOOKBACK_SECONDS": "600",
        "QCFLOW_HARVEST_START_SECONDS": "3600",
        "QCFLOW_LOG_LEVEL": os.environ.get("QCFLOW_LOG_LEVEL", "WARNING"),
        "ALIBABA_CLOUD_ACCESS_KEY_ID": DEFAULT_ACCESS_KEY_ID,
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": DEFAULT_ACCESS_KEY_SECRET,
    }


def _write_recordings(store: ObjectStore, count: int) -> tuple[str, list[str]]:
    """``count`` synthetic recordings in today's folder ``ccc/YYYY/MM/DD/``, named ``job-<n>.mkv`` (the
    ContactId): (the folder, their keys)."""
    folder = datetime.now(timezone.utc).strftime("ccc/%Y/%m/%d/")
    base = int(time.time() * 1000) % 10**12
    keys = [f"{folder}job-{base + i}.mkv" for i in range(count)]
    for key in keys:
        store.put(key, b"\x1aE\xdf\xa3 synthetic recording", content_type="video/x-matroska")
    return folder, keys


def _contact_of(key: str) -> str:
    """``ccc/2026/12/05/job-17.mkv`` → ``job-17``: the ContactId the demo's recordings carry."""
    return key.rsplit("/", 1)[-1].rsplit(".", 1)[0]


def _count_pushes(store: ObjectStore, keys: set[str]) -> tuple[int, int]:
    """(submitted, failed) outcomes of this run's recordings (``keys``) in the push ledger."""
    pushed = failed = 0
    for entry in Ledger(store).entries():
        outcome = entry.outcome
        if outcome is None or outcome.key not in keys:
            continue
        if outcome.state == "submitted":
            pushed += 1
        else:
            failed += 1
    return pushed, failed


def _wait_for_callbacks(sandbox: SandboxServer, pushed: int, timeout: float) -> int:
    """Until the sandbox delivered (or gave up on) a callback per pushed task, at most ``timeout`` s:
    how many were still missing then (0: all came). The sandbox is this run's own, so its
    counts are this run's tasks."""
    deadline = time.monotonic() + timeout
    while True:
        callbacks = sandbox.app.snapshot().get("callbacks", {})
        done = callbacks.get("delivered", 0) + callbacks.get("failed", 0)
        if done >= pushed and callbacks.get("pending", 0) == 0:
            return 0
        if time.monotonic() >= deadline:
            return max(pushed - done, int(callbacks.get("pending", 0)), 1)
        time.sleep(0.2)


def _count_results_into(summary: DemoSummary, store: ObjectStore, contacts: set[str]) -> None:
    states, per_result, parts = count_results(store, contacts)
    summary.finished = states.get("finished", 0)
    summary.failed = states.get("failed", 0)
    summary.harvested = sum(states.values())
    summary.distinct_tasks = len(per_result)
    summary.files = len(parts)
    summary.part_keys = parts
    summary.results_at = _results_location(summary.store)
    summary.reviews_at = _results_location(summary.store, "reviews")
    summary.reviews, summary.distinct_reviews = count_reviews(store, contacts)


def _results_location(store_url: str, tree: str = "results") -> str:
    if store_url.startswith("file:"):
        from qcflow.store import parse_store_url

        _, path, _ = parse_store_url(store_url)
        return os.path.join(os.path.abspath(os.path.expanduser(path)), tree)
    return store_url.rstrip("/") + "/" + tree
