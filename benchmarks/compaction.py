"""One hour, one file (issue 23): what compaction does to a day of callback parts.

``python benchmarks/compaction.py`` lays out in a local store, in a temp dir, what callbacks
leave behind: 100,000 results over one simulated day, each its own part with its own commit
record (the writer's layout: ``results/dt=…/hour=…/part-<seq>-<run>.jsonl`` and
``state/harvest/commits/dt=…/hour=…/<seq>.json``), written straight to files so that the set-up
takes seconds. Then, each in a child process of its own (its peak RSS is its own):

1. ``qcflow report`` over the day (``make_report``), timed end to end;
2. compaction of every closed hour (``compact_range``: the harvest pass's own call);
3. the report again;
4. a separate hour of 50,000 callback parts compacted alone: its peak RSS.

Goals: files per closed hour ≤ 2; compacting the 50,000-result hour under 150 MB peak RSS.
The last line: ``files_per_closed_hour=<max> compact_peak_rss_mb=<n> report_speedup=<before/after>``.
``--records N`` and ``--big N`` change the volumes.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
ZONE = ZoneInfo("Asia/Shanghai")
DAY = datetime(2026, 11, 20, tzinfo=ZONE)


def line(i: int, upload: datetime) -> bytes:
    """A result line of realistic size (~1.2 KB) with the fields the report reads."""
    row = {
        "schema_version": 1,
        "task_id": f"T{i:07d}",
        "status": 1,
        "state": "finished" if i % 17 else "failed",
        "call_id": f"job-{i}",
        "contact_id": f"job-{i}",
        "object_key": f"recordings/{upload:%Y/%m/%d}/job-{i}.wav",
        "upload_time": upload.isoformat(),
        "score": 60 + i % 41,
        "error_message": None if i % 17 else "audio unreadable",
        "agent": {"id": f"A{i % 40}", "name": f"agent {i % 40}", "skill_group": f"group {i % 5}"},
        "recording": {"id": f"job-{i}", "name": f"job-{i}.wav", "duration": 60 + i % 300, "call_type": 1},
        "hit_result": [{"type": "rule", "name": f"rule {i % 12}", "rid": str(i % 12), "score": -5, "hits": []}],
        "asr_result": [{"role": "客服", "words": "您好，请问有什么可以帮您" * 3, "begin": 0, "end": 3000}],
        "review_status": 0,
        "review_time": None,
        "harvested_at": (upload + timedelta(minutes=2)).astimezone(timezone.utc).isoformat(),
    }
    return (json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n").encode()


def lay_out(root: Path, count: int, start: datetime, hours: int, first: int = 0) -> None:
    """``count`` results over ``hours`` hours from ``start``, one part and one commit record each."""
    per_hour = -(-count // hours)
    made = 0
    for h in range(hours):
        hour = start + timedelta(hours=h)
        partition = f"dt={hour.date().isoformat()}/hour={hour.hour:02d}"
        parts = root / "results" / partition
        commits = root / "state" / "harvest" / "commits" / partition
        parts.mkdir(parents=True, exist_ok=True)
        commits.mkdir(parents=True, exist_ok=True)
        for seq in range(1, min(per_hour, count - made) + 1):
            i = first + made
            upload = hour + timedelta(seconds=(seq * 3599) // per_hour)
            run = f"cb{i:07d}"
            key = f"results/{partition}/part-{seq:010d}-{run}.jsonl"
            (parts / f"part-{seq:010d}-{run}.jsonl").write_bytes(line(i, upload))
            record = {
                "v": 1,
                "partition": partition,
                "seq": seq,
                "run": run,
                "part": key,
                "count": 1,
                "results": [f"T{i:07d}|job-{i}"],
            }
            (commits / f"{seq:010d}.json").write_text(json.dumps(record))
            made += 1


def child(argv: list[str]) -> dict[str, float]:
    done = subprocess.run([sys.executable, __file__, *argv], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"child {argv} failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_child(args: argparse.Namespace) -> None:
    from qcflow.store import LocalStore

    store = LocalStore(args.store)
    started = time.monotonic()
    out: dict[str, float] = {}
    if args.child == "report":
        from qcflow.tools.report import make_report

        summary = make_report(store, Path(args.store).parent / "report.html", zone=ZONE)
        out["results"] = summary.counts["results"]
    else:
        from qcflow.harvest.compact import RESULTS, compact_range

        stats = compact_range(
            store,
            RESULTS,
            zone=ZONE,
            now=datetime.now(timezone.utc),
            settle_seconds=120,
            lookback_seconds=3600,
            run_id="bench",
            gzip=False,
            max_bytes=256 * 1024 * 1024,
        )
        out.update(stats.to_json())
    out["seconds"] = time.monotonic() - started
    out["peak_rss_mb"] = peak_mb()
    print(json.dumps(out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--big", type=int, default=50_000, help="results in the hour compacted alone")
    parser.add_argument("--child", choices=("report", "compact"))
    parser.add_argument("--store")
    args = parser.parse_args()
    if args.child:
        run_child(args)
        return
    from qcflow.harvest.compact import RESULTS, files_per_hour
    from qcflow.store import LocalStore

    with tempfile.TemporaryDirectory(prefix="qcflow-compact-bench-") as tmp:
        day = Path(tmp) / "day"
        started = time.monotonic()
        lay_out(day, args.records, DAY, 24)
        store = LocalStore(day)
        before_files = files_per_hour(store, RESULTS)
        print(
            f"laid out {args.records:,} callback parts over 24 hours in {time.monotonic() - started:.0f} s: "
            f"up to {max(before_files.values()):,} files per hour",
            flush=True,
        )
        report_before = child(["--child", "report", "--store", str(day)])
        print(f"report before: {report_before['seconds']:.1f} s ({report_before['results']:,.0f} results)", flush=True)
        compacted = child(["--child", "compact", "--store", str(day)])
        print(
            f"compacted {compacted['partitions']:.0f} hours in {compacted['seconds']:.1f} s "
            f"(parts {compacted['parts_before']:,.0f} -> {compacted['parts_after']:,.0f}, "
            f"peak RSS {compacted['peak_rss_mb']:.0f} MB)",
            flush=True,
        )
        after_files = files_per_hour(store, RESULTS)
        report_after = child(["--child", "report", "--store", str(day)])
        print(f"report after: {report_after['seconds']:.1f} s ({report_after['results']:,.0f} results)", flush=True)
        assert report_after["results"] == report_before["results"] == args.records, "compaction lost or doubled"
        big = Path(tmp) / "big"
        lay_out(big, args.big, DAY, 1, first=10_000_000)
        alone = child(["--child", "compact", "--store", str(big)])
        print(
            f"one hour of {args.big:,} callback parts compacted in {alone['seconds']:.1f} s, "
            f"peak RSS {alone['peak_rss_mb']:.0f} MB, {files_per_hour(LocalStore(big), RESULTS)} ",
            flush=True,
        )
        speedup = report_before["seconds"] / report_after["seconds"]
        print(
            f"files_per_closed_hour={max(after_files.values())} compact_peak_rss_mb={alone['peak_rss_mb']:.0f} "
            f"report_speedup={speedup:.2f}"
        )


if __name__ == "__main__":
    os.environ.setdefault("QCFLOW_LOG_LEVEL", "WARNING")
    main()
