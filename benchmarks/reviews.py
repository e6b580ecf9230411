"""Results and reviews under one quota: joint efficiency of a backlog, then review freshness.

``python benchmarks/reviews.py`` runs against a sandbox in its own process at the real quota
(1000 GetResult calls / 60 s, a sliding window per access key) with 50 ms added to every
answer, as ``benchmarks/harvest.py`` does (real time, real quota: nothing is scaled but the
timer period):

1. **backlog**: 100,000 finished results uploaded over the last day and 30,000 of them
   already reviewed (``--preload-reviews``). One timer pass (``run_harvest``, the timer
   function's code) reads both: the results first, then the review feed, on the pass's one
   AIMD limiter. Joint efficiency = every record read (results + reviews) ÷ (pass seconds ×
   quota calls/s × 99);
2. **freshness**: then people keep reviewing (``POST /__sandbox/review``, one every 0.5 s at
   random tasks), and timer passes run every ``TIMER_PERIOD`` seconds with a settle delay of
   ``SETTLE`` seconds; a review's freshness is the time from its save (the sandbox's review
   time) to the moment its line is in ``reviews/`` (the part's modification time).

The timer period is the one figure shortened (the deployed timer fires every 5 minutes and
settles 120 s): the bound checked, p95 <= period + settle, scales with both. The lookback is
60 s here: a pass re-reads one minute, not an hour, so that a short period is not spent
re-reading. Every line under ``reviews/`` is checked once per (task, call, review time).

The last line: ``joint_efficiency=<x> review_freshness_p95_s=<s> timer_period_s=<s> settle_s=<s>``
(goals: efficiency >= 0.93, freshness p95 <= period + settle).
"""

from __future__ import annotations

import asyncio
import json
import math
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.request import Request, urlopen

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `python benchmarks/<x>.py` from anywhere
from benchmarks import common  # noqa: E402

QUOTA_CALLS = 1000
QUOTA_WINDOW = 60.0
QUOTA_RECORDS_PER_SECOND = QUOTA_CALLS / QUOTA_WINDOW * 99
LATENCY = 0.05
RESULTS = 100_000
REVIEWS = 30_000
TIMER_PERIOD = 60.0
SETTLE = 10.0
LOOKBACK = 60.0
FRESH_PASSES = 3
REVIEW_INTERVAL = 0.5


def _settings(url: str, store_dir: Path) -> Any:
    from qcflow.config import load_settings

    # the environment is ignored on purpose: the benchmark's figures must not depend on it
    return load_settings(
        {},
        sca_endpoint=url,
        store=f"file:{store_dir}",
        log_level="WARNING",
        # measured against the whole quota, like benchmarks/harvest.py (the callbacks' share is theirs)
        get_result_callback_share=0,
        harvest_settle_seconds=SETTLE,
        harvest_lookback_seconds=LOOKBACK,
        harvest_start_seconds=86_400 + 600,
    )


def _sca(settings: Any) -> Any:
    from qcflow.credentials import Credentials
    from qcflow.sca import ScaClient
    from qcflow.tools.sandbox.options import DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET

    creds = Credentials(DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET)
    return ScaClient.from_settings(settings, lambda: creds)


async def one_pass(settings: Any, store_dir: Path, budget: float) -> Any:
    from qcflow.harvest.run import run_harvest
    from qcflow.store import LocalStore

    sca = _sca(settings)
    try:
        return await run_harvest(settings, sca, LocalStore(store_dir), deadline=time.monotonic() + budget)
    finally:
        await sca.aclose()


def finished_task_ids(url: str, settings: Any, count: int) -> list[str]:
    """Some pre-loaded task ids, read with one GetResult call outside the passes."""

    async def read() -> list[str]:
        from qcflow.models.sca import GetResultQuery

        sca = _sca(settings)
        try:
            now = datetime.now(timezone.utc).astimezone(settings.zone)
            query = GetResultQuery(page_size=count, required_fields="taskId,status",
                                   start_time=(now - timedelta(days=1)).strftime("%Y-%m-%d %H:%M:%S"),
                                   end_time=now.strftime("%Y-%m-%d %H:%M:%S"))
            ids: list[str] = []
            for number in range(1, 4):  # a few pages: reviews spread over many tasks
                page = await sca.get_result_page(query.model_copy(update={"page_number": number}))
                ids += [item["TaskId"] for item in page.items]
            return ids
        finally:
            await sca.aclose()

    return asyncio.run(read())


class People(threading.Thread):
    """Reviews a random known task every ``REVIEW_INTERVAL`` s; remembers each save (ms)."""

    def __init__(self, url: str, task_ids: list[str]) -> None:
        super().__init__(daemon=True)
        self.url, self.task_ids = url, task_ids
        self.saved: dict[tuple[str, int], float] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        n = 0
        while not self.stop.wait(REVIEW_INTERVAL):
            task_id = self.task_ids[(n * 7919) % len(self.task_ids)]
            n += 1
            body = json.dumps({"taskId": task_id}).encode()
            request = Request(f"{self.url}/__sandbox/review", data=body, headers={"content-type": "application/json"})
            with urlopen(request, timeout=10) as answer:
                for review in json.load(answer)["Reviews"]:
                    self.saved[(task_id, int(review["ReviewTimeMs"]))] = review["ReviewTimeMs"] / 1000


def review_lines(store_dir: Path) -> tuple[list[dict[str, Any]], dict[tuple[str, int], float]]:
    """Every line under ``reviews/``, and (task, review second) → when its part landed."""
    lines: list[dict[str, Any]] = []
    landed: dict[tuple[str, int], float] = {}
    root = store_dir / "reviews"
    if not root.exists():
        return lines, landed
    for path in root.rglob("*.jsonl"):
        mtime = path.stat().st_mtime
        for raw in path.read_bytes().splitlines():
            if raw.strip():
                line = json.loads(raw)
                lines.append(line)
                second = int(datetime.fromisoformat(line["review_time"]).timestamp())
                landed[(line["task_id"], second)] = mtime
    return lines, landed


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(share * len(ordered)) - 1))] if ordered else float("nan")


def main() -> dict[str, float]:
    now = datetime.now(timezone.utc)
    start, end = now - timedelta(days=1), now - timedelta(seconds=SETTLE + 5)
    proc, url = common.start_sandbox(
        "--latency", str(LATENCY), "--get-result-quota", str(QUOTA_CALLS), "--quota-window-seconds", str(QUOTA_WINDOW),
        "--preload", str(RESULTS), "--preload-start", start.isoformat(), "--preload-end", end.isoformat(),
        "--preload-reviews", str(REVIEWS), stop_after=900.0,
    )
    try:
        with tempfile.TemporaryDirectory(prefix="qcflow-bench-reviews-") as tmp:
            store_dir = Path(tmp) / "store"
            settings = _settings(url, store_dir)
            print(f"1. backlog: {RESULTS:,} results and {REVIEWS:,} reviews, one timer pass at the real quota")
            started = time.perf_counter()
            report = asyncio.run(one_pass(settings, store_dir, budget=600.0))
            seconds = time.perf_counter() - started
            read = report.records_seen + report.reviews["reviews_seen"]
            joint = read / (seconds * QUOTA_RECORDS_PER_SECOND)
            print(f"   {report.records_seen:,} results + {report.reviews['reviews_seen']:,} reviews read in {seconds:.1f} s "
                  f"({report.calls:,} calls; written {report.written:,} + {report.reviews['reviews_written']:,}); "
                  f"joint efficiency {joint:.3f}")
            assert report.written == RESULTS and report.reviews["reviews_written"] == REVIEWS, report.summary()

            print(f"2. freshness: a review every {REVIEW_INTERVAL} s, a timer pass every {TIMER_PERIOD:.0f} s, "
                  f"settle {SETTLE:.0f} s")
            people = People(url, finished_task_ids(url, settings, 99))
            people.start()
            first = time.monotonic()
            for n in range(FRESH_PASSES):
                time.sleep(max(0.0, first + n * TIMER_PERIOD - time.monotonic()))
                asyncio.run(one_pass(settings, store_dir, budget=TIMER_PERIOD))
            people.stop.set()
            people.join(15)
            time.sleep(max(0.0, first + FRESH_PASSES * TIMER_PERIOD - time.monotonic()))
            asyncio.run(one_pass(settings, store_dir, budget=TIMER_PERIOD))  # the last reviews' pass
            lines, landed = review_lines(store_dir)
            keys = [(line["task_id"], line["call_id"], line["review_time"]) for line in lines]
            assert len(keys) == len(set(keys)), "a review written twice"
            fresh = [landed[(task, ms // 1000)] - saved for (task, ms), saved in people.saved.items()
                     if (task, ms // 1000) in landed]
            # a task reviewed twice between two reads shows only its last review: one line for both
            print(f"   {len(people.saved)} reviews saved, {len(fresh)} lines written for them "
                  f"(a task reviewed again before a pass read it gives one line), {len(lines):,} review lines in all, "
                  f"each once; freshness p50 {percentile(fresh, 0.5):.1f} s, p95 {percentile(fresh, 0.95):.1f} s, "
                  f"max {max(fresh):.1f} s")
    finally:
        proc.terminate()
        proc.wait(10)
    summary = {"joint_efficiency": joint, "review_freshness_p95_s": percentile(fresh, 0.95),
               "timer_period_s": TIMER_PERIOD, "settle_s": SETTLE}
    print(f"   goals: joint efficiency >= 0.93, review freshness p95 <= {TIMER_PERIOD + SETTLE:.0f} s (period + settle)")
    print(f"joint_efficiency={joint:.3f} review_freshness_p95_s={summary['review_freshness_p95_s']:.1f} "
          f"timer_period_s={TIMER_PERIOD:.0f} settle_s={SETTLE:.0f}")
    return summary


if __name__ == "__main__":
    main()
