"""How close does a harvest get to the GetResult quota, and how fresh is the callback path?

``python benchmarks/harvest.py`` runs, side by side, against sandboxes in their own processes
at the real quota (1000 calls / 60 s, a sliding window per access key) with 50 ms added to
every answer:

1. **qcflow, 100,000 results** spread over one day: the full ``run_harvest`` (a backfill of
   that day) into a local store in a temp dir, in a child process whose peak RSS is read;
2. **qcflow, 10,000 results** the same way: memory must not grow with the volume;
3. **naive baseline**: sequential pages of 10 parsed into models and appended to a file, as
   a first script does, on a 5,000-record subset (rates are compared, not times);
4. **freshness**: tasks uploaded with a ``callbackUrl`` (its token in the path) pointing at a
   loopback receiver that checks the token and the callback (``qcflow.callback``) and calls
   ``harvest_task_ids``, as the callback function does (without its per-instance bucket: this
   measures the path's latency, not its rate cap); freshness is the time from the callback's timestamp (the task's finish)
   to the result committed in the store.

Each scenario gets a sandbox of its own, so that one's calls never count against another's
quota window. The last line is the summary:
``harvest_efficiency=<records/s ÷ (quota calls/s × 99)> speedup_vs_naive=<x> peak_rss_mb=<n> freshness_p95_s=<s>``.
Goals: efficiency >= 0.93, speed-up >= 8, peak RSS < 150 MB and flat from 10k to 100k,
freshness p95 < 10 s.

Reading the figures: the quota is counted over a sliding 60 s window, so a run much shorter
than that may show an efficiency above 1 (the limiter's small initial burst); only the big
run says what the quota allows. Sparse windows (few results an hour) cost relatively more
calls (a partly filled last page per window), which the 10k-over-a-day line shows. The
naive rate is bound by the round trip of each call (50 ms added here), not by the quota.

``--reader-only`` replaces the full harvest by the window reader alone (pages read, records
counted, nothing written): it tells the reader's share of the cost from the writer's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import re
import secrets
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit
from urllib.request import urlopen

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `python benchmarks/<x>.py` from anywhere
from benchmarks import common  # noqa: E402

QUOTA_CALLS = 1000
QUOTA_WINDOW = 60.0
QUOTA_RECORDS_PER_SECOND = QUOTA_CALLS / QUOTA_WINDOW * 99
LATENCY = 0.05
DAY_START = datetime(2026, 11, 18, 16, 0, tzinfo=timezone.utc)  # 2026-11-19 00:00 in Asia/Shanghai
DAY_END = DAY_START + timedelta(days=1)
NAIVE_RECORDS = 5_000
FRESH_TASKS = 60
FRESH_UPLOAD_INTERVAL = 0.2


# --------------------------------------------------------------------------- processes


def start_sandbox(*args: str, stop_after: float = 400.0) -> tuple[subprocess.Popen[str], str]:
    """The sandbox at the real GetResult quota with the benchmark's added latency."""
    return common.start_sandbox("--latency", str(LATENCY), "--get-result-quota", str(QUOTA_CALLS),
                                "--quota-window-seconds", str(QUOTA_WINDOW), *args, stop_after=stop_after)


@contextlib.contextmanager
def sandbox(*args: str, stop_after: float = 400.0) -> Any:
    proc, url = start_sandbox(*args, stop_after=stop_after)
    try:
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def throttled_answers(url: str) -> int:
    """GetResult calls the sandbox refused for the quota (the limiter's headroom should keep it 0)."""
    with urlopen(f"{url}/__sandbox/stats", timeout=10) as answer:
        stats = json.load(answer)
    return sum(n for key, n in stats.get("answers", {}).items() if key.startswith("GetResult Throttling"))


def preloaded(count: int, end: datetime = DAY_END) -> tuple[str, ...]:
    return ("--preload", str(count), "--preload-start", DAY_START.isoformat(), "--preload-end", end.isoformat())


def harvest_in_child(url: str, store_dir: Path, until: datetime, *, reader_only: bool) -> dict[str, Any]:
    """One harvest of ``[DAY_START, until)`` in a child process; its JSON report (with peak RSS)."""
    command = [sys.executable, os.path.abspath(__file__), "_child", url, str(store_dir), until.isoformat()]
    if reader_only:
        command.append("--reader-only")
    done = subprocess.run(command, capture_output=True, text=True, timeout=360)
    if done.returncode != 0:
        raise RuntimeError(f"harvest child failed ({done.returncode}): {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- the child


def _settings(url: str, store_dir: Path) -> Any:
    from qcflow.config import load_settings

    # the environment is ignored on purpose: the benchmark's figures must not depend on it. The
    # callbacks' share is 0: efficiency is measured against the whole quota (with the default share
    # of 0.1 the harvest's own ceiling is 90 % of it; benchmarks/callback_flood.py runs with it)
    # QCFLOW_BENCH_PII: the redaction mode (benchmarks/pii.py compares them; default: qcflow's, mask)
    return load_settings(
        {}, sca_endpoint=url, store=f"file:{store_dir}", log_level="WARNING", get_result_callback_share=0,
        pii=os.environ.get("QCFLOW_BENCH_PII", "mask"),
    )


def _sca(settings: Any) -> Any:
    from qcflow.credentials import Credentials
    from qcflow.tools.sandbox.options import DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET
    from qcflow.sca import ScaClient

    creds = Credentials(DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET)
    return ScaClient.from_settings(settings, lambda: creds)


async def _child_harvest(url: str, store_dir: Path, until: datetime) -> dict[str, Any]:
    from qcflow.harvest.run import run_harvest
    from qcflow.store import LocalStore

    settings = _settings(url, store_dir)
    sca = _sca(settings)
    try:
        started = time.perf_counter()
        report = await run_harvest(
            settings, sca, LocalStore(store_dir), since=DAY_START, until=until, deadline=time.monotonic() + 300
        )
        seconds = time.perf_counter() - started
    finally:
        await sca.aclose()
    return {"seconds": seconds, "records": report.written, "calls": report.calls, "pages": report.pages,
            "seen": report.records_seen, "duplicates": report.duplicates_skipped, "files": len(report.files),
            "stopped_by_deadline": report.stopped_by_deadline, "windows": report.windows}


async def _child_reader(url: str, store_dir: Path, until: datetime) -> dict[str, Any]:
    """The reader alone over the same hour windows the harvest reads (nothing written)."""
    from qcflow.acs.adaptive import AdaptiveRateLimiter
    from qcflow.harvest.reader import WindowReader
    from qcflow.harvest.fields import required_fields
    from qcflow.harvest.feed import chunks

    settings = _settings(url, store_dir)
    sca = _sca(settings)
    limiter = AdaptiveRateLimiter.from_settings(settings.quotas)
    reader = WindowReader(sca, limiter, zone=settings.zone, required_fields=required_fields(settings.harvest))
    deadline = time.monotonic() + 300
    try:
        started = time.perf_counter()
        for window in chunks(DAY_START, until):
            async with contextlib.aclosing(reader.pages(window, deadline=deadline)) as pages:
                async for _ in pages:
                    pass  # counted by the reader; nothing kept (memory is measured)
        seconds = time.perf_counter() - started
    finally:
        await sca.aclose()
    stats = reader.stats
    return {"seconds": seconds, "records": stats.records, "calls": stats.calls, "pages": stats.pages, "seen": stats.records,
            "duplicates": 0, "files": 0, "stopped_by_deadline": False, "windows": len(chunks(DAY_START, until))}


def child_main(url: str, store_dir: str, until: str, reader_only: bool) -> None:
    run = _child_reader if reader_only else _child_harvest
    result = asyncio.run(run(url, Path(store_dir), datetime.fromisoformat(until)))
    result["peak_rss_mb"] = common.peak_rss_kib() / 1024
    print(json.dumps(result))


# --------------------------------------------------------------------------- checking the output


def count_results(store_dir: Path) -> tuple[int, int]:
    """(lines, distinct results) of every JSONL part under ``results/``."""
    pattern = re.compile(rb'"task_id":\s*"([^"]*)"')
    call = re.compile(rb'"call_id":\s*"([^"]*)"')
    lines = 0
    seen: set[bytes] = set()
    root = store_dir / "results"
    if not root.exists():
        return 0, 0
    for path in root.rglob("*.jsonl"):
        with path.open("rb") as handle:
            for line in handle:
                if not line.strip():
                    continue
                lines += 1
                task = pattern.search(line)
                who = call.search(line)
                seen.add((task.group(1) if task else b"") + b"|" + (who.group(1) if who else b""))
    return lines, len(seen)


# --------------------------------------------------------------------------- naive baseline


async def naive(url: str, out: Path) -> tuple[int, float]:
    """Sequential pages of 10, each parsed into models and appended to a JSONL file."""
    from qcflow.config import load_settings
    from qcflow.models.sca import GetResultQuery, format_sca_time

    settings = load_settings({}, sca_endpoint=url)
    sca = _sca(settings)
    zone = settings.zone
    start = DAY_START
    end = DAY_START + (DAY_END - DAY_START) * NAIVE_RECORDS // 10_000  # the first half of a 10k day
    records = 0
    started = time.perf_counter()
    try:
        with out.open("w", encoding="utf-8") as sink:
            number = 1
            while True:
                query = GetResultQuery(
                    start_time=format_sca_time(start, zone), end_time=format_sca_time(end - timedelta(seconds=1), zone),
                    page_number=number, page_size=10, required_fields=",".join(settings.harvest.required_fields),
                )
                page = await sca.get_result(query)
                for result in page.results:
                    sink.write(result.model_dump_json() + "\n")
                records += len(page.results)
                if len(page.results) < 10:
                    break
                number += 1
    finally:
        await sca.aclose()
    return records, time.perf_counter() - started


# --------------------------------------------------------------------------- freshness


async def freshness(url: str, store_dir: Path) -> dict[str, Any]:
    """Tasks with a callbackUrl; the receiver writes each through ``harvest_task_ids``."""
    from qcflow.callback import InvalidCallbackError, parse_callback, verify_callback
    from qcflow.callback_handler import token_matches
    from qcflow.harvest.run import harvest_task_ids
    from qcflow.models.sca import UploadAudioDataJson
    from qcflow.store import LocalStore

    settings = _settings(url, store_dir)
    sca = _sca(settings)
    store = LocalStore(store_dir)
    delays: list[float] = []
    written: dict[str, int] = {}
    refused: list[str] = []
    token = secrets.token_urlsafe(32)  # in callbackUrl's path, as push sends it

    async def receive(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        status = b"200 OK"
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            request_line, *header_lines = head.decode("latin-1").split("\r\n")
            method, target, _ = request_line.split(" ", 2)
            headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines if h)}
            length = int(headers.get("content-length") or 0)
            body = await reader.readexactly(length) if length else b""
            query = dict(parse_qsl(urlsplit(target).query, keep_blank_values=True))
            if not token_matches(urlsplit(target).path, (token,)):
                raise ValueError("no valid token")  # answered 400 below; the real edge answers 404
            try:
                hint, signature = parse_callback(query, body if method == "POST" else None, headers.get("content-type"))
                verify_callback(hint, signature, now_ms=int(time.time() * 1000), max_age_seconds=settings.callback.max_age_seconds)
            except InvalidCallbackError as exc:
                refused.append(exc.reason)
                status = b"400 Bad Request"
            else:
                report = await harvest_task_ids(settings, sca, store, [hint.task_id], deadline=time.monotonic() + 30)
                delays.append(time.time() - hint.timestamp_ms / 1000)
                written[hint.task_id] = written.get(hint.task_id, 0) + report.written
        except (asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError):
            status = b"400 Bad Request"
        with contextlib.suppress(ConnectionError):
            writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(receive, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    callback_url = f"http://127.0.0.1:{port}/sca-callback/{token}"
    uploaded: list[str] = []
    try:
        for index in range(FRESH_TASKS):
            job = f"job-{9_100_000_000_000 + index}"
            request = UploadAudioDataJson(
                call_list=[{"voice_file_url": f"http://127.0.0.1:1/{job}.wav", "call_id": job, "file_name": f"rec/{job}.wav",
                            "call_uuid": f"bench-{os.getpid()}-{index}"}],
                callback_url=callback_url,
            )
            uploaded.append((await sca.upload_audio_data(request)).task_id)
            await asyncio.sleep(FRESH_UPLOAD_INTERVAL)
        waited = time.monotonic() + 30
        while len(written) < len(uploaded) and time.monotonic() < waited:
            await asyncio.sleep(0.1)
    finally:
        server.close()
        await server.wait_closed()
        await sca.aclose()
    lines, distinct = count_results(store_dir)
    ordered = sorted(delays)
    p95 = ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)] if ordered else float("nan")
    return {"tasks": len(uploaded), "callbacks": len(delays), "refused": len(refused), "lines": lines, "distinct": distinct,
            "written_once": sum(1 for n in written.values() if n == 1), "p50": ordered[len(ordered) // 2] if ordered else float("nan"),
            "p95": p95, "max": ordered[-1] if ordered else float("nan")}


# --------------------------------------------------------------------------- main


def efficiency(records: int, seconds: float) -> float:
    return records / seconds / QUOTA_RECORDS_PER_SECOND


def main(argv: list[str] | None = None) -> dict[str, float]:
    global LATENCY
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reader-only", action="store_true", help="time the window reader alone (nothing written)")
    parser.add_argument("--records", type=int, default=100_000, help="results in the big run (default 100,000)")
    parser.add_argument("--latency", type=float, default=LATENCY, help=f"seconds added to every answer (default {LATENCY})")
    args = parser.parse_args(argv)
    LATENCY = args.latency
    small = max(1, args.records // 10)
    what = "WindowReader alone (nothing written)" if args.reader_only else "run_harvest (backfill of one day) into a local store"
    print(f"== harvest at the real GetResult quota ({QUOTA_CALLS}/{QUOTA_WINDOW:.0f} s = {QUOTA_RECORDS_PER_SECOND:.0f} records/s "
          f"at 99 a page), {LATENCY * 1000:.0f} ms added latency, {os.cpu_count()} cores ==")
    print(f"   qcflow: {what}, one child process per run")
    with tempfile.TemporaryDirectory(prefix="qcflow-bench-harvest-") as tmp:
        root = Path(tmp)
        # 1. the big day; 2. a tenth of it at the same density (same windows, same parallelism:
        # only the volume differs, which is what "flat" is about); 3. a tenth spread over the
        # day (small windows: less parallelism, more partial pages)
        dense_until = DAY_START + (DAY_END - DAY_START) * small // args.records
        plan = [("big", args.records, DAY_END), ("dense", small, dense_until), ("sparse", small, DAY_END)]
        runs: dict[str, dict[str, Any]] = {}
        for name, count, until in plan:
            with sandbox(*preloaded(count, until)) as url:
                store_dir = root / f"store-{name}"
                result = harvest_in_child(url, store_dir, until, reader_only=args.reader_only)
                result["throttled"] = throttled_answers(url)
            if not args.reader_only:
                result["lines"], result["distinct"] = count_results(store_dir)
            runs[name] = result
            rate = result["records"] / result["seconds"]
            check = "" if args.reader_only else f", {result['lines']:,} lines / {result['distinct']:,} distinct in the store"
            hours = (until - DAY_START).total_seconds() / 3600
            print(f"   qcflow {count:>7,} results over {hours:4.1f} h: {result['seconds']:6.1f} s, {rate:6.0f} records/s, "
                  f"{result['calls']} calls ({result['calls'] / result['seconds']:.2f}/s), "
                  f"efficiency {efficiency(result['records'], result['seconds']):.3f}, peak RSS {result['peak_rss_mb']:.0f} MB, "
                  f"{result['throttled']} throttled{check}")
        with sandbox(*preloaded(10_000)) as url:
            naive_records, naive_seconds = asyncio.run(naive(url, root / "naive.jsonl"))
        naive_rate = naive_records / naive_seconds
        print(f"   naive   {naive_records:>7,} results: {naive_seconds:6.1f} s, {naive_rate:6.0f} records/s (sequential pages of 10)")
        with sandbox("--task-seconds", "2", "--task-jitter-seconds", "1") as url:
            fresh = asyncio.run(freshness(url, root / "fresh"))
        print(f"   freshness via callbacks: {fresh['callbacks']}/{fresh['tasks']} tasks written on their callback "
              f"({fresh['written_once']} exactly once, {fresh['lines']} lines / {fresh['distinct']} distinct in the store), "
              f"task finish -> committed: p50 {fresh['p50']:.2f} s, p95 {fresh['p95']:.2f} s, max {fresh['max']:.2f} s")
    big, dense, sparse = runs["big"], runs["dense"], runs["sparse"]
    big_rate = big["records"] / big["seconds"]
    summary = {
        "harvest_efficiency": efficiency(big["records"], big["seconds"]),
        "speedup_vs_naive": big_rate / naive_rate,
        "peak_rss_mb": max(run["peak_rss_mb"] for run in runs.values()),
        "freshness_p95_s": fresh["p95"],
    }
    print(f"   memory: peak RSS {dense['peak_rss_mb']:.0f} MB at {small:,} vs {big['peak_rss_mb']:.0f} MB at {args.records:,} "
          f"results of the same density ({big['peak_rss_mb'] - dense['peak_rss_mb']:+.0f} MB); "
          f"{sparse['peak_rss_mb']:.0f} MB at {small:,} spread over the day")
    print("   goals: efficiency >= 0.93, speed-up >= 8, peak RSS < 150 MB and flat, freshness p95 < 10 s")
    print(f"harvest_efficiency={summary['harvest_efficiency']:.3f} speedup_vs_naive={summary['speedup_vs_naive']:.1f} "
          f"peak_rss_mb={summary['peak_rss_mb']:.0f} freshness_p95_s={summary['freshness_p95_s']:.2f}")
    return summary


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_child":
        child_main(sys.argv[2], sys.argv[3], sys.argv[4], "--reader-only" in sys.argv[5:])
    else:
        main(sys.argv[1:])
