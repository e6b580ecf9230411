"""How long does ``qcflow report`` take over 100,000 results, and how much memory?

``python benchmarks/report.py`` writes 100,000 results as JSONL parts into a local store in a
temp dir — sandbox results (``ScaState`` pre-loaded, read back page by page with
``GetResult``'s own answer bodies) converted by the harvest's record converter, partitioned
and rolled into parts as the harvest does, over seven days, with a share of failures and
reviews — then makes the report of them in a child process (so its peak RSS is the
report's alone) and times it end to end (interpreter start, imports, read, aggregate, page).

With them, ``--reviews`` (30,000 by default: the backlog of issue 21) review rows under
``reviews/``, as the review feed writes them: a share of finished results reviewed a few hours
to days after upload, some twice (the second an appeal's), each row the whole result after
that review (``to_record``), partitioned by review time. The report then reads every task's
latest row (``qcflow.tools.report.latest``) and draws the review block.

Goal: under 10 s. The last line is the summary:
``report_seconds=<s> records=<n> reviews=<n> peak_rss_mb=<n>``.

``--gzip`` writes ``.jsonl.gz`` parts; ``--records N`` changes the volume, ``--reviews 0`` leaves
``reviews/`` empty.
``--screenshot PATH`` instead renders a report of a smaller data set (3,000 results, a few
still running) with headless Chromium (Debian's ``/usr/bin/chromium``) and saves a
full-page PNG: docs/report.md's ``docs/report.png``.
"""

from __future__ import annotations

import argparse
import gzip as gzip_module
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `python benchmarks/<x>.py` from anywhere
from benchmarks import common  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ZONE = ZoneInfo("Asia/Shanghai")
START = datetime(2026, 11, 12, 16, 0, tzinfo=timezone.utc)  # 2026-11-13 00:00 in Asia/Shanghai
DAYS = 7
PART_RECORDS = 20_000  # QCFLOW_HARVEST_PART_MAX_RECORDS' default
CHROMIUM = os.environ.get("CHROMIUM_BIN", "/usr/bin/chromium")


def sandbox_items(count: int, *, start: datetime, days: int, seed: int = 7, failed_rate: float = 0.06,
                  reviewed_rate: float = 0.25) -> Iterator[dict[str, Any]]:
    """GetResult items as the sandbox answers them, hour window by hour window (upload order).

    A share of the items were already reviewed when harvested (their results/ row carries the
    review), as happens when a review is saved before the harvest reads the task."""
    from qcflow.config import Settings
    from qcflow.models.sca import format_sca_time
    from qcflow.tools.sandbox.options import SandboxOptions
    from qcflow.tools.sandbox.results import ScaState

    state = ScaState(SandboxOptions(seed=seed))
    end = start + timedelta(days=days)
    state.preload(count, start, end, failed_rate=failed_rate)
    fields = ",".join(Settings().harvest.required_fields)
    rng = random.Random(seed)
    hour = start
    while hour < end:
        page = 1
        while True:
            query = {"startTime": format_sca_time(hour, ZONE), "endTime": format_sca_time(hour + timedelta(seconds=3599), ZONE),
                     "pageNumber": page, "pageSize": 99, "requiredFields": fields}
            items = json.loads(state.get_result(json.dumps(query)))["Data"]["ResultInfo"]
            for item in items:
                if item.get("Status") == 1 and rng.random() < reviewed_rate:
                    item["ReviewStatus"] = 1
                    item["Reviewer"] = rng.choice(["质检员 A", "质检员 B"])
                    item["ReviewTimeLong"] = str(int(item["CreateTimeLong"]) + 3600)
                yield item
            if len(items) < 99:
                break
            page += 1
        hour += timedelta(hours=1)


def reviewed(item: dict[str, Any], rng: random.Random, *, after: int, old: Any) -> dict[str, Any]:
    """``item`` as GetResult answers after one more review, ``after`` seconds past its upload."""
    new = max(0, min(100, int(old if isinstance(old, (int, float)) else 80) + rng.choice((-15, -5, 0, 0, 5, 10))))
    at = int(item["CreateTimeLong"]) + after
    history = list((item.get("ReviewHistoryList") or {}).get("ReviewHistory") or [])
    appeal = bool(history)
    history.append({"Type": 1, "OperatorName": rng.choice(["质检员 A", "质检员 B", "质检员 C"]), "Time": at * 1000,
                    "OldScore": old, "Score": new, "ReviewResult": int(new == old),
                    **({"ComplainResult": rng.choice((0, 1))} if appeal else {})})
    return {**item, "Score": new, "ReviewStatus": 4 if appeal else 1, "ReviewResult": rng.choice((0, 1, 1, 2)),
            "Resolver": history[-1]["OperatorName"], "ReviewTimeLong": str(at), "ReviewType": 2,
            "ReviewHistoryList": {"ReviewHistory": history}}


def write_results(store: Any, items: Iterator[dict[str, Any]], *, gzip: bool = False,
                  part_records: int = PART_RECORDS, reviews: int = 0, seed: int = 11) -> tuple[int, int]:
    """JSONL parts as the harvest lays them out: ``results/dt=…/hour=…/part-<seq>-<run>.jsonl``,
    and ``reviews`` review rows under ``reviews/`` (partitioned by review time). Returns how many
    results and reviews were written."""
    from qcflow.harvest.records import Partitioner, encode_line, to_record, utc_now_text

    partitioner = Partitioner(ZONE)
    harvested_at = utc_now_text()
    buffers: dict[str, list[bytes]] = {}
    seqs: dict[str, int] = {}
    written = reviews_written = 0
    rng = random.Random(seed)

    def flush(partition: str) -> None:
        lines = buffers.pop(partition, [])
        if not lines:
            return
        seqs[partition] = seqs.get(partition, 0) + 1
        body = b"".join(lines)
        key = f"{partition}/part-{seqs[partition]:010d}-bench.jsonl" + (".gz" if gzip else "")
        store.put(key, gzip_module.compress(body, 6) if gzip else body)

    current: str | None = None
    for item in items:
        partition = "results/" + partitioner.of(item)
        if partition != current and current is not None:
            flush(current)  # items come in upload order: the previous hour is complete
        current = partition
        buffers.setdefault(partition, []).append(encode_line(to_record(item, ZONE, harvested_at)))
        written += 1
        if len(buffers[partition]) >= part_records:
            flush(partition)
        if reviews_written < reviews and item.get("Status") == 1 and rng.random() < 0.35:
            after = rng.randint(3_600, 3 * 86_400)
            times = 2 if rng.random() < 0.2 else 1
            for _ in range(min(times, reviews - reviews_written)):
                item = reviewed(item, rng, after=after, old=item.get("Score"))
                review_partition = "reviews/" + partitioner.of_seconds(int(item["ReviewTimeLong"]))
                buffers.setdefault(review_partition, []).append(encode_line(to_record(item, ZONE, harvested_at)))
                reviews_written += 1
                after += rng.randint(3_600, 86_400)
    for partition in list(buffers):
        flush(partition)
    return written, reviews_written


def remember_running(store: Any, count: int, *, day_start: datetime) -> None:
    """Markers of results still running (as the harvest leaves them), on the last day."""
    from qcflow.harvest.state import remember_unfinished

    for i in range(count):
        upload = (day_start + timedelta(minutes=7 * i)).timestamp()
        remember_unfinished(store, f"RUNNING-{i:04d}|job-{9_000_000 + i}", first_seen=upload + 60, upload_time=upload,
                            owner="bench")


def run_child(store_dir: Path, out: Path) -> dict[str, float]:
    """``make_report`` in a fresh interpreter: wall time from the parent, peak RSS from the child."""
    code = (
        "import json, sys\n"
        "from zoneinfo import ZoneInfo\n"
        "from qcflow.tools.report import make_report\n"
        "from qcflow.store import LocalStore\n"
        "s = make_report(LocalStore(sys.argv[1]), sys.argv[2], zone=ZoneInfo('Asia/Shanghai'))\n"
        "from benchmarks.common import peak_rss_kib\n"
        "print(json.dumps({'records': s.counts['results'], 'rss_kib': peak_rss_kib()}))\n"
    )
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code, str(store_dir), str(out)], capture_output=True, text=True, check=True,
                          cwd=ROOT)
    seconds = time.perf_counter() - started
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    return {"seconds": seconds, "records": figures["records"], "peak_rss_mb": figures["rss_kib"] / 1024}


def screenshot(path: Path, *, records: int = 3_000) -> None:
    """A report of a small, realistic store, rendered by headless Chromium into ``path``."""
    from playwright.sync_api import sync_playwright

    from qcflow.tools.report import make_report
    from qcflow.store import LocalStore

    with tempfile.TemporaryDirectory(prefix="qcflow-report-shot-") as tmp:
        store = LocalStore(Path(tmp) / "store", url="file:./qcflow-data")  # the URL the page shows: as a user's would read
        write_results(store, sandbox_items(records, start=START, days=DAYS), reviews=records // 3)
        remember_running(store, 37, day_start=START + timedelta(days=DAYS - 1, hours=8))
        page_path = Path(tmp) / "report.html"
        make_report(store, page_path, zone=ZONE, now=START + timedelta(days=DAYS, hours=1))
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
            try:
                page = browser.new_page(viewport={"width": 1360, "height": 900}, device_scale_factor=1)
                page.goto(page_path.as_uri())
                page.wait_for_selector("body[data-rendered='true']", timeout=60_000)
                path.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(path), full_page=True)
            finally:
                browser.close()
    print(f"screenshot: {path}")


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--gzip", action="store_true", help="write .jsonl.gz parts")
    parser.add_argument("--reviews", type=int, default=30_000, help="review rows to write under reviews/")
    parser.add_argument("--screenshot", type=Path, default=None, help="save a screenshot of a small report here instead")
    args = parser.parse_args(argv)
    if args.screenshot is not None:
        screenshot(args.screenshot)
        return {}
    from qcflow.store import LocalStore

    with tempfile.TemporaryDirectory(prefix="qcflow-bench-report-") as tmp:
        store_dir = Path(tmp) / "store"
        started = time.perf_counter()
        written, reviews = write_results(LocalStore(store_dir), sandbox_items(args.records, start=START, days=DAYS),
                                         gzip=args.gzip, reviews=args.reviews)
        size = sum(f.stat().st_size for f in store_dir.rglob("part-*"))
        files = sum(1 for _ in store_dir.rglob("part-*"))
        print(f"wrote {written:,} results and {reviews:,} reviews in {files} parts ({size / 1e6:,.0f} MB"
              f"{', gzip' if args.gzip else ''}) in {time.perf_counter() - started:.1f} s", flush=True)
        result = run_child(store_dir, Path(tmp) / "report.html")
        assert result["records"] == written, (result, written)
    own = common.peak_rss_kib() / 1024
    print(f"report of {int(result['records']):,} results and {reviews:,} reviews: {result['seconds']:.2f} s end to end "
          f"(goal < 10 s), peak RSS {result['peak_rss_mb']:.0f} MB (the generator's own: {own:.0f} MB)")
    result["reviews"] = reviews
    print(f"report_seconds={result['seconds']:.2f} records={int(result['records'])} reviews={reviews} "
          f"peak_rss_mb={result['peak_rss_mb']:.0f}")
    return result


if __name__ == "__main__":
    main()
