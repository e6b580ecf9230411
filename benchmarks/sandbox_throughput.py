"""Is the sandbox ever the bottleneck? GetResult pages/s with quotas lifted, server in its own process.

The server runs as ``qcflow sandbox serve`` in a separate process (one core), pre-loaded with
100,000 finished results over ten hours; the client runs beside it (the other core). Windows
of one hour (10,000 results: the most that can be paged in parallel) are read with 99-record
pages of the default fields. Reported against the real GetResult quota (1000/60 s = 16.7
pages/s) and against a naive client that reads one page at a time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import httpx

from qcflow.acs.client import AcsClient, RetryPolicy
from qcflow.credentials import Credentials
from qcflow.models.sca import GetResultQuery, format_sca_time
from qcflow.tools.sandbox.options import DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET
from qcflow.sca import ScaClient

QUOTA_PAGES_PER_SECOND = 1000 / 60
PRELOAD = 100_000
HOURS = 10
END = datetime(2026, 11, 20, 0, 0, tzinfo=timezone.utc)
START = END - timedelta(hours=HOURS)
ZONE = ZoneInfo("Asia/Shanghai")


def cpu_seconds(pid: int) -> float:
    """User+system CPU time of a process so far (Linux /proc)."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_server(stop_after: float) -> tuple[subprocess.Popen[str], str, float]:
    exe = os.path.join(os.path.dirname(sys.executable), "qcflow")
    started = time.perf_counter()
    proc = subprocess.Popen(
        [exe, "sandbox", "serve", "--port", "0", "--get-result-quota", "0", "--upload-quota", "0", "--preload", str(PRELOAD),
         "--preload-start", START.isoformat(), "--preload-end", END.isoformat(), "--stop-after", str(stop_after)],
        stdout=subprocess.PIPE, text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    ready = time.perf_counter() - started
    match = re.search(r"(http://[\d.]+:\d+)", line)
    if not match:
        proc.kill()
        raise RuntimeError(f"sandbox did not start: {line!r}")
    return proc, match.group(1), ready


def hour_windows() -> list[tuple[str, str]]:
    windows = []
    for h in range(HOURS):
        lo = START + timedelta(hours=h)
        windows.append((format_sca_time(lo, ZONE), format_sca_time(lo + timedelta(hours=1) - timedelta(seconds=1), ZONE)))
    return windows


def page_jobs(pages_per_window: int) -> list[tuple[str, str, int]]:
    return [(lo, hi, n) for lo, hi in hour_windows() for n in range(1, pages_per_window + 1)]


async def run_client(url: str, jobs: list[tuple[str, str, int]], concurrency: int, parse: bool) -> tuple[float, int, int]:
    """Fetch every job's page; returns (seconds, pages, records)."""
    creds = Credentials(DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET)
    acs = AcsClient(url, "2019-01-15", lambda: creds, retry=RetryPolicy(max_attempts=3))
    sca = ScaClient(acs)
    queue: asyncio.Queue[tuple[str, str, int]] = asyncio.Queue()
    for job in jobs:
        queue.put_nowait(job)
    records = 0

    async def worker() -> None:
        nonlocal records
        while not queue.empty():
            lo, hi, number = queue.get_nowait()
            query = GetResultQuery(start_time=lo, end_time=hi, page_number=number, page_size=99)
            if parse:
                page = await sca.get_result(query)
                records += len(page.results)
            else:  # signed request, body read whole but not parsed: what the server delivers
                assert acs.http is not None
                response = await acs.http.send(acs.build_request("GetResult", {"JsonStr": query.to_json_str()}))
                assert response.status_code == 200, response.text[:200]
                records += response.content.count(b'"LastDataId"')

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    seconds = time.perf_counter() - start
    await acs.aclose()
    return seconds, len(jobs), records


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pages-per-window", type=int, default=40, help="pages read per one-hour window (max 102)")
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args(argv)
    proc, url, ready = start_server(stop_after=600)
    try:
        stats_before = httpx.get(f"{url}/__sandbox/stats").json()
        jobs = page_jobs(args.pages_per_window)
        naive_jobs = jobs[: max(20, len(jobs) // 10)]
        results = {}
        for label, job_list, concurrency, parse in (
            ("naive: one page at a time, parsed", naive_jobs, 1, True),
            ("qcflow client, parsed into models", jobs, args.concurrency, True),
            ("minimal client (bytes, not parsed)", jobs, args.concurrency, False),
        ):
            server_cpu = cpu_seconds(proc.pid)
            seconds, pages, records = asyncio.run(run_client(url, job_list, concurrency, parse))
            busy = (cpu_seconds(proc.pid) - server_cpu) / seconds
            results[label] = (pages / seconds, records / seconds, pages, records, seconds, busy)
        stats_after = httpx.get(f"{url}/__sandbox/stats").json()
    finally:
        proc.terminate()
        proc.wait(10)
    print(f"== sandbox GetResult throughput (server process + client process, {os.cpu_count()} cores) ==")
    print(f"  pre-load of {PRELOAD:,} results until the server answered: {ready:.2f} s (process start included)")
    print(f"  tasks held: {stats_before['tasks']:,}; answers served: {sum(stats_after['answers'].values()):,}")
    naive_rate = results["naive: one page at a time, parsed"][0]
    summary = {"preload_seconds": ready}
    for label, (pages_s, records_s, pages, records, seconds, busy) in results.items():
        print(
            f"  {label:36s} {pages_s:6.1f} pages/s {records_s:7.0f} records/s ({pages} pages in {seconds:.2f} s) "
            f"= {pages_s / QUOTA_PAGES_PER_SECOND:4.1f}x quota, {pages_s / naive_rate:4.1f}x naive; "
            f"server CPU {busy:4.0%} -> capacity ~{pages_s / max(busy, 1e-6):.0f} pages/s"
        )
        summary[label] = pages_s
        summary[label + " server capacity"] = pages_s / max(busy, 1e-6)
    print(f"  real quota: {QUOTA_PAGES_PER_SECOND:.1f} pages/s = {QUOTA_PAGES_PER_SECOND * 99:.0f} records/s; target >= 10x = {10 * QUOTA_PAGES_PER_SECOND:.0f} pages/s")
    print(json.dumps({k: round(v, 2) for k, v in summary.items()}))
    return summary


if __name__ == "__main__":
    main(sys.argv[1:])
