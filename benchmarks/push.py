"""Push burst: 3,000 recordings through the push use case by 32 simulated FC instances.

The sandbox runs in its own process at the real quotas (UploadAudioData 3000/60 s per
account; CCC unlimited, as CCC publishes no figure). Each simulated instance has its own
clients and its own client-side limiter — nothing shared, as separate FC instances — and
takes OSS events one at a time from a common queue, through the same ``push_oss_event`` the
handler calls. State and recordings live in local stores in a temp folder.

The physical limit is the quota: 3,000 uploads need 60 s at 50/s in steady state, so the
figure is total time ÷ 60 s. The sandbox's quota is a sliding window, as the service's
appears to be, so a fresh account can burst a whole window at once: for 3,000 recordings the
quota does not bind and the ratio is below 1. A second scenario pushes twice the quota
(6,000): the first window's worth goes as fast as the instances can send it, the rest must
ride the throttling while the window slides, so its physical limit is the time the first
quota took plus one window, and its ratio tells how quickly throttled instances resume
(``push_2x_quota_ratio``).
Last line: ``push_time_ratio=… tasks=… duplicates=… missing=… throttled=…``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `python benchmarks/<x>.py` from anywhere
from benchmarks import common  # noqa: E402

import httpx

from qcflow.config import load_settings
from qcflow.credentials import Credentials
from qcflow.tools.fc_local import oss_event
from qcflow.models.sca import GetResultQuery, format_sca_time
from qcflow.triggers import push_oss_event
from qcflow.tools.sandbox.options import DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET
from qcflow.services import build_services
from qcflow.store import LocalStore

CREDS = Credentials(DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET, "sts-token")
QUOTA_WINDOW = 60.0
UPLOAD_QUOTA = 3000
#: When the first window's quota was used up (perf_counter), for the 2x scenario's bound.
MARKS: dict[str, float] = {}


def start_sandbox(stop_after: float) -> tuple[subprocess.Popen[str], str]:
    """The sandbox at the real UploadAudioData quota, CCC unlimited."""
    return common.start_sandbox("--upload-quota", str(UPLOAD_QUOTA), "--ccc-quota", "0", "--task-seconds", "5",
                                stop_after=stop_after)


async def instance(number: int, queue: asyncio.Queue[str], settings, statuses: Counter[str]) -> None:  # type: ignore[no-untyped-def]
    services = await build_services(lambda: CREDS, settings)
    try:
        while True:
            try:
                key = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            for attempt in range(10):  # FC's async retry of a failed invocation
                deadline = time.monotonic() + 300
                try:
                    summary = await push_oss_event(oss_event("recordings", key), services.pusher,
                                                   token=f"fc-{number}-{key}-{attempt}", deadline=deadline)
                except Exception as exc:  # noqa: BLE001 - counted, retried like FC would
                    statuses[f"raised {type(exc).__name__}"] += 1
                    await asyncio.sleep(1.0)
                    continue
                for status, count in summary.items():
                    if status != "records":
                        statuses[status] += count
                if statuses["submitted"] >= UPLOAD_QUOTA and "quota_full_at" not in MARKS:
                    MARKS["quota_full_at"] = time.perf_counter()  # the window's last admitted upload, about
                break
    finally:
        await services.aclose()


async def count_tasks(url: str, contacts: set[str], since: datetime) -> tuple[int, int, int]:
    from qcflow.acs.client import AcsClient, RetryPolicy
    from qcflow.sca import ScaClient

    sca = ScaClient(AcsClient(url, "2019-01-15", lambda: CREDS, retry=RetryPolicy(max_attempts=10)))
    zone = load_settings().zone
    seen: Counter[str] = Counter()
    try:
        page_number = 1
        while True:
            page = await sca.get_result_page(GetResultQuery(
                page_number=page_number, page_size=99, required_fields="taskId,status,recording",
                start_time=format_sca_time(since - timedelta(minutes=1), zone),
                end_time=format_sca_time(datetime.now(timezone.utc) + timedelta(minutes=1), zone)))
            for item in page.items:
                seen[(item.get("Recording") or {}).get("Id")] += 1
            if len(page.items) < 99:
                break
            page_number += 1
    finally:
        await sca.aclose()
    tasks = sum(seen.values())
    duplicates = sum(n - 1 for n in seen.values() if n > 1)
    missing = len(contacts - set(seen))
    return tasks, duplicates, missing


def scenario(recordings: int, instances: int) -> dict[str, float]:
    """Push ``recordings`` through ``instances`` against a fresh sandbox; the figures."""
    proc, url = start_sandbox(stop_after=900)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            store = LocalStore(Path(tmp, "recordings"))
            keys = [f"ccc/2026/11/20/job-{500000 + i}.mkv" for i in range(recordings)]
            for key in keys:
                store.put(key, b"\x1aE\xdf\xa3")
            settings = load_settings(
                {}, store=f"file:{tmp}/store", recordings_url=f"file:{tmp}/recordings", ccc_endpoint=url, sca_endpoint=url,
                ccc_instance_id="ccc-bench", log_level="ERROR", call_deadline_seconds=300,
            )
            queue: asyncio.Queue[str] = asyncio.Queue()
            for key in keys:
                queue.put_nowait(key)
            statuses: Counter[str] = Counter()
            MARKS.clear()
            since = datetime.now(timezone.utc)
            started = time.perf_counter()

            async def run() -> None:
                await asyncio.gather(*(instance(i, queue, settings, statuses) for i in range(instances)))

            asyncio.run(run())
            elapsed = time.perf_counter() - started
            contacts = {k.rsplit("/", 1)[1].removesuffix(".mkv") for k in keys}
            tasks, duplicates, missing = asyncio.run(count_tasks(url, contacts, since))
            stats = httpx.get(f"{url}/__sandbox/stats").json()["answers"]
            throttled = sum(v for k, v in stats.items() if k.startswith("UploadAudioData Throttling"))
    finally:
        proc.terminate()
        proc.wait(10)
    # the physical limit. Up to one quota: the steady-state rate (60 s for 3,000). Beyond: the
    # sliding window frees each slot one window after it was used, so the second quota cannot
    # finish before the first was used up plus one window.
    if recordings <= UPLOAD_QUOTA:
        ideal = recordings / UPLOAD_QUOTA * QUOTA_WINDOW
    else:
        ideal = MARKS.get("quota_full_at", started) - started + QUOTA_WINDOW * (-(-recordings // UPLOAD_QUOTA) - 1)
    print(f"== push burst: {recordings} recordings, {instances} instances, own clients, no shared limiter ==")
    print(f"  total {elapsed:.1f} s (physical limit {ideal:.0f} s); outcomes {dict(statuses)}")
    print(f"  sandbox answers: {json.dumps(stats, sort_keys=True)}")
    return {"ratio": elapsed / ideal, "tasks": tasks, "duplicates": duplicates, "missing": missing, "throttled": throttled}


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--recordings", type=int, default=3000)
    parser.add_argument("--instances", type=int, default=32)
    parser.add_argument("--no-contended", action="store_true", help="skip the 2x-quota scenario")
    args = parser.parse_args(argv)
    if not args.no_contended:
        # twice the quota: the second half must wait for the window to slide and ride the throttling
        two = scenario(2 * UPLOAD_QUOTA, args.instances)
        print(f"push_2x_quota_ratio={two['ratio']:.3f} push_2x_duplicates={two['duplicates']} "
              f"push_2x_missing={two['missing']} push_2x_throttled={two['throttled']}")
    one = scenario(args.recordings, args.instances)
    line = (f"push_time_ratio={one['ratio']:.3f} tasks={one['tasks']} duplicates={one['duplicates']} "
            f"missing={one['missing']} throttled={one['throttled']}")
    print(line)
    return line


if __name__ == "__main__":
    main()
