"""Operator commands as an operator sees them (issue 22 #3, #5, #6, #7, #8): the demo's per-run numbers and
store, progress bars whose numbers hold, stdout for results only, failed inspections in status, one time rule.

Real processes against the sandbox on loopback (stopped by the fixture), stores in tmp folders."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from rich.console import Console

from qcflow.acs.limits import rate_limiter
from qcflow.config import load_settings
from qcflow.store import LocalStore
from qcflow.tools.demo import count_results, run_demo
from qcflow.tools.progress import Meter, Quota, format_eta, run_bar
from qcflow.tools.sandbox.options import (
    DEFAULT_ACCESS_KEY_ID,
    DEFAULT_ACCESS_KEY_SECRET,
    PreloadOptions,
    SandboxOptions,
)
from qcflow.tools.sandbox.server import SandboxServer
from qcflow.tools.status import status
from qcflow.tools.timerange import TimeRange, TimeRangeError, parse_moment

QCFLOW = str(Path(sys.executable).with_name("qcflow"))
SHANGHAI = ZoneInfo("Asia/Shanghai")
REPO = Path(__file__).resolve().parents[1]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# ---------------------------------------------------------------- #8 the one time rule


def test_a_time_without_offset_is_in_scas_zone_and_a_date_until_includes_the_whole_day() -> None:
    assert parse_moment("2026-12-04", "--since", zone=SHANGHAI) == datetime(2026, 12, 3, 16, tzinfo=timezone.utc)
    assert parse_moment("2026-12-04", "--until", zone=SHANGHAI, end=True) == datetime(
        2026, 12, 4, 16, tzinfo=timezone.utc
    )
    assert parse_moment("2026-12-04T08:30", "--since", zone=SHANGHAI) == datetime(
        2026, 12, 4, 0, 30, tzinfo=timezone.utc
    )
    assert parse_moment("2026-12-04T08:30Z", "--since", zone=SHANGHAI) == datetime(
        2026, 12, 4, 8, 30, tzinfo=timezone.utc
    )
    one_day = TimeRange.parse("2026-12-04", "2026-12-04", zone=SHANGHAI)
    assert one_day.until - one_day.since == timedelta(days=1)  # type: ignore[operator]
    assert "[2026-12-04, 2026-12-05) Asia/Shanghai (2026-12-03T16:00:00Z to 2026-12-04T16:00:00Z)" == one_day.describe()
    with pytest.raises(TimeRangeError, match="--since 2026-12-05 is after --until 2026-12-04"):
        TimeRange.parse("2026-12-05", "2026-12-04", zone=SHANGHAI)
    with pytest.raises(TimeRangeError, match="not a date or an ISO 8601 time"):
        TimeRange.parse("yesterday", None, zone=SHANGHAI)


@pytest.fixture
def sandbox_env(tmp_path: Path) -> Iterator[tuple[SandboxServer, dict[str, str], Path]]:
    """A sandbox with 48 finished results, one an hour from noon (Shanghai) three days ago; a store folder; the
    environment a CLI run needs (zone Asia/Shanghai)."""
    day = datetime.now(SHANGHAI).date() - timedelta(days=3)
    start = datetime(day.year, day.month, day.day, tzinfo=SHANGHAI) - timedelta(hours=12)
    options = SandboxOptions(preload=PreloadOptions(count=48, start=start, end=start + timedelta(hours=48)))
    (tmp_path / "store").mkdir()
    with SandboxServer(options) as server:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("QCFLOW_", "ALIBABA_CLOUD_"))},
            "QCFLOW_STORE": f"file:{tmp_path}/store",
            "QCFLOW_SCA_ENDPOINT": server.url,
            "QCFLOW_CCC_ENDPOINT": server.url,
            "QCFLOW_SCA_TIME_ZONE": "Asia/Shanghai",
            "ALIBABA_CLOUD_ACCESS_KEY_ID": DEFAULT_ACCESS_KEY_ID,
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET": DEFAULT_ACCESS_KEY_SECRET,
            "COLUMNS": "200",
        }
        yield server, env, tmp_path


def _qcflow(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([QCFLOW, *args], capture_output=True, text=True, timeout=120, env=env, cwd=cwd)


def test_harvest_since_a_date_is_that_day_in_scas_zone_and_the_json_says_which_range(
    sandbox_env: tuple[SandboxServer, dict[str, str], Path],
) -> None:
    """`harvest --since D --until D`: the 24 results uploaded on D in Shanghai, all in dt=D; stdout is one JSON
    document (no log line in it) that echoes the range; the bar ends at the summary's count."""
    _, env, tmp = sandbox_env
    day = (datetime.now(SHANGHAI).date() - timedelta(days=3)).isoformat()
    done = _qcflow(["harvest", "--since", day, "--until", day, "--json"], env, tmp)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)  # nothing but the report on stdout
    assert report["written"] == 24, report
    midnight = datetime.fromisoformat(day).replace(tzinfo=SHANGHAI)
    assert datetime.fromisoformat(report["since"]) == midnight
    assert datetime.fromisoformat(report["until"]) == midnight + timedelta(days=1)
    assert report["range"].startswith(f"[{day}, ") and "Asia/Shanghai" in report["range"]
    states, _, parts = count_results(LocalStore(tmp / "store"))
    assert sum(states.values()) == 24 and all(p.startswith(f"results/dt={day}/") for p in parts)
    assert "written 24" in done.stderr, "the bar's final count is the summary's"
    assert '"event"' not in done.stdout


def test_harvest_since_after_until_is_one_line_and_exit_2(
    sandbox_env: tuple[SandboxServer, dict[str, str], Path],
) -> None:
    _, env, tmp = sandbox_env
    today = datetime.now(SHANGHAI).date()
    done = _qcflow(
        ["harvest", "--since", str(today - timedelta(days=1)), "--until", str(today - timedelta(days=2))], env, tmp
    )
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: --since ") and "is after --until" in lines[0], lines
    assert "Usage:" not in done.stderr and not done.stdout


def test_a_pass_that_wrote_nothing_because_of_the_settle_delay_says_so(
    sandbox_env: tuple[SandboxServer, dict[str, str], Path],
) -> None:
    _, env, tmp = sandbox_env
    done = _qcflow(["harvest", "--since", (datetime.now(timezone.utc) - timedelta(minutes=1)).isoformat()], env, tmp)
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout
    assert "0 written" in out and "range [" in out
    assert "nothing written" in out and "settle delay" in out and "QCFLOW_HARVEST_SETTLE_SECONDS" in out, out


def test_report_echoes_its_range_by_the_same_rule(tmp_path: Path) -> None:
    pytest.importorskip("duckdb")
    (tmp_path / "store").mkdir()
    env = {**os.environ, "QCFLOW_STORE": f"file:{tmp_path}/store", "QCFLOW_SCA_TIME_ZONE": "Asia/Shanghai"}
    done = _qcflow(
        ["report", "--since", "2026-12-04", "--until", "2026-12-04", "--out", str(tmp_path / "r.html")], env, tmp_path
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "range [2026-12-04, 2026-12-05) Asia/Shanghai (2026-12-03T16:00:00Z to 2026-12-04T16:00:00Z)" in done.stdout


# ---------------------------------------------------------------- #5 progress numbers that hold


def test_a_burst_at_the_start_is_no_rate_and_a_small_share_of_the_quota() -> None:
    """16 calls in the first 0.1 s were '209.7 calls/s (1297% of the quota)': no rate yet, 2% of 1000/60 s."""
    clock = FakeClock()
    calls = {"n": 0}
    console = Console(file=open(os.devnull, "w"), width=200)
    with run_bar(
        "harvest", None, console=console, calls=lambda: calls["n"], quota=Quota("quota", 1000, 60.0), clock=clock
    ) as bar:
        calls["n"] = 16
        clock.now += 0.1
        assert bar.calls_text() == "- calls/s · 2% of quota"
        clock.now += 4.9  # 16 calls in 5 s
        assert bar.calls_text() == "3.2 calls/s · 2% of quota"
        clock.now += 100  # nothing for 100 s: the window forgets the burst
        assert bar.calls_text() == "0.0 calls/s · 0% of quota"


def test_nothing_sent_is_zero_percent_of_the_upload_quota_and_the_eta_is_the_windowed_one() -> None:
    clock = FakeClock()
    console = Console(file=open(os.devnull, "w"), width=200)
    with run_bar(
        "push", 2000, console=console, calls=lambda: 0, quota=Quota("upload quota", 3000, 60.0), clock=clock
    ) as bar:
        assert bar.eta() is None, "no rate yet: no ETA"
        clock.now += 2
        assert bar.calls_text() == "0.0 calls/s · 0% of upload quota"
        assert bar.eta() is None, "nothing done: no ETA"
        for _ in range(30):  # a slow start (listing, a throttled spell): nothing for 30 s
            clock.now += 1
            bar.items.sample()
        for _ in range(35):  # 700 done at 20/s
            clock.now += 1
            bar.advance(20)
            bar.items.sample()
        assert bar.eta() == pytest.approx(1300 / 20, rel=0.01)
        assert format_eta(bar.eta()) == "1:05"


def test_a_meter_counts_within_the_quota_window_only() -> None:
    clock = FakeClock()
    count = {"n": 0}
    meter = Meter(lambda: count["n"], keep_seconds=61, clock=clock)
    for _ in range(120):  # 10 calls a second for two minutes
        clock.now += 1
        count["n"] += 10
        meter.sample()
    assert meter.within(60) == 600 and meter.rate(20) == pytest.approx(10.0)


def test_the_upload_limiter_counts_the_calls_it_granted() -> None:
    limiter = rate_limiter(1000)

    async def take(n: int) -> None:
        for _ in range(n):
            async with limiter:
                pass

    asyncio.run(take(5))
    assert limiter.acquired == 5


# ---------------------------------------------------------------- #6 stdout for results, logs on stderr


def test_push_logs_go_to_stderr_and_per_recording_lines_only_at_debug(
    sandbox_env: tuple[SandboxServer, dict[str, str], Path],
) -> None:
    _, env, tmp = sandbox_env
    folder = tmp / "recordings" / "ccc" / "2026" / "12" / "05"
    folder.mkdir(parents=True)
    for n in range(3):
        (folder / f"job-{n}.mkv").write_bytes(b"\x1aE\xdf\xa3 synthetic")
    env = {**env, "QCFLOW_RECORDINGS_URL": f"file:{tmp}/recordings", "QCFLOW_CCC_INSTANCE_ID": "ccc-test"}
    done = _qcflow(["push", "--prefix", "ccc/"], {**env, "QCFLOW_LOG_LEVEL": "INFO"}, tmp)
    assert done.returncode == 0, done.stderr[-2000:]
    assert '"event"' not in done.stdout and "push_outcome" not in done.stdout
    assert "push_outcome" not in done.stderr, "per-recording lines are DEBUG in the CLI"
    assert "3/3" in done.stderr and "<1% of upload quota" in done.stderr, "the bar counts real UploadAudioData calls"
    for n in range(3):
        (folder / f"job-{n}.mkv").unlink()
        (folder / f"job-1{n}.mkv").write_bytes(b"\x1aE\xdf\xa3 other")
    debug = _qcflow(["push", "--prefix", "ccc/"], {**env, "QCFLOW_LOG_LEVEL": "DEBUG"}, tmp)
    assert debug.returncode == 0, debug.stderr[-2000:]
    assert debug.stderr.count('"push_outcome"') == 3 and "push_outcome" not in debug.stdout


# ---------------------------------------------------------------- #7 failed inspections in status


def test_status_shows_failed_inspections_apart_from_failed_pushes(tmp_path: Path) -> None:
    summary = run_demo(8, store_url=f"file:{tmp_path}/data", task_seconds=0.3, failure_rate=0.5)
    assert summary.failed >= 1, "the sandbox failed some tasks"
    report = status(LocalStore(tmp_path / "data"), zone=load_settings({}).zone)
    assert report["push"]["failed"] == 0
    assert report["inspections"]["failed"] == summary.failed
    assert report["inspections"]["finished"] == summary.finished
    env = {**os.environ, "QCFLOW_STORE": f"file:{tmp_path}/data", "COLUMNS": "200"}
    shown = _qcflow(["status"], env, tmp_path)
    assert shown.returncode == 0, shown.stderr
    today = datetime.now(ZoneInfo(load_settings({}).sca.time_zone)).date()
    assert f"days counted: {today - timedelta(days=6)} to {today} (" in shown.stdout
    row = next(line for line in shown.stdout.splitlines() if "inspections failed" in line)
    assert row.rstrip(" │").endswith(str(summary.failed))
    assert json.loads(_qcflow(["status", "--json"], env, tmp_path).stdout)["inspections"]["failed"] == summary.failed


# ---------------------------------------------------------------- #3 the demo


def test_a_second_demo_counts_its_own_recordings_and_does_not_stall(tmp_path: Path) -> None:
    store = f"file:{tmp_path}/data"
    run_demo(5, store_url=store, task_seconds=0.3, failure_rate=0.0)
    started = time.monotonic()
    second = run_demo(5, store_url=store, task_seconds=0.3, failure_rate=0.0, settle_timeout=30.0)
    assert time.monotonic() - started < 25, "waited for callbacks of the first run's tasks"
    assert (second.pushed, second.harvested, second.callbacks_missing) == (5, 5, 0)
    # each of this run's tasks had its callback taken or deferred (503, the bucket), none of the first run's
    assert second.callbacks + second.callbacks_deferred == 5
    assert second.exactly_once


def test_qcflow_demo_ignores_an_exported_store_says_so_and_prints_json(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QCFLOW_", "ALIBABA_CLOUD_"))}
    env["QCFLOW_STORE"] = f"file:{tmp_path}/prod"
    done = _qcflow(["demo", "--recordings", "3", "--json"], env, tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout)  # JSON only, no sandbox warning inside
    assert summary["store"] == "file:./qcflow-data" and summary["pushed"] == summary["harvested"] == 3
    assert summary["ignored_store"] == f"file:{tmp_path}/prod"
    assert f"QCFLOW_STORE=file:{tmp_path}/prod was ignored" in done.stderr
    assert not (tmp_path / "prod").exists() and (tmp_path / "qcflow-data" / "results").is_dir()
    assert "QCFLOW_STORE is ignored" in _qcflow(["demo", "--help"], env, tmp_path).stdout.replace("\n  ", " ")


def test_the_demo_table_holds_no_log_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QCFLOW_", "ALIBABA_CLOUD_"))}
    done = _qcflow(["demo", "--recordings", "3"], {**env, "QCFLOW_LOG_LEVEL": "INFO"}, tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "{" not in done.stdout, done.stdout
    assert "callbackUrl uses an IP address" in done.stderr, "the sandbox's warning still shows, on stderr"


def test_make_demo_passes_demo_args() -> None:
    done = subprocess.run(
        ["make", "-n", "-C", str(REPO), "demo", "DEMO_ARGS=--recordings 3 --json"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert "qcflow demo --recordings 3 --json" in done.stdout, done.stdout + done.stderr


def test_a_timer_payload_time_without_offset_is_in_scas_zone(
    sandbox_env: tuple[SandboxServer, dict[str, str], Path],
) -> None:
    """The harvest function's backfill payload ``{"since": "…T00:00:00"}`` means midnight in QCFLOW_SCA_TIME_ZONE,
    as ``qcflow harvest --since`` does, not midnight UTC."""
    from qcflow.credentials import Credentials
    from qcflow.services import build_services
    from qcflow.tools.fc_local import timer_event
    from qcflow.triggers import harvest_timer

    _, env, _ = sandbox_env
    midnight = datetime.now(SHANGHAI).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=3)

    async def run() -> dict[str, object]:
        settings = load_settings({k: v for k, v in env.items() if k.startswith("QCFLOW_")})
        services = await build_services(lambda: Credentials(DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET), settings)
        try:
            raw = timer_event({"since": midnight.replace(tzinfo=None).isoformat()})
            return await harvest_timer(raw, services, deadline=time.monotonic() + 60)
        finally:
            await services.aclose()

    report = asyncio.run(run())
    assert report["mode"] == "backfill" and datetime.fromisoformat(str(report["since"])) == midnight


# ---------------------------------------------------------------- issue 23: compaction


def test_qcflow_compact_folds_a_closed_hour_and_status_counts_files_per_closed_hour(tmp_path: Path) -> None:
    from qcflow.harvest.output import CommitLog, Spill, commit_spill

    store = LocalStore(tmp_path / "data")
    zone = load_settings({}).zone
    hour = (datetime.now(zone) - timedelta(days=2)).replace(minute=0, second=0, microsecond=0)
    partition = f"dt={hour.date().isoformat()}/hour={hour.hour:02d}"
    for i in range(6):  # six callbacks, a part each
        spill = Spill(partition, str(tmp_path))
        spill.add(
            f"T{i}|c{i}", (json.dumps({"task_id": f"T{i}", "call_id": f"c{i}", "state": "finished"}) + "\n").encode()
        )
        commit_spill(store, spill, CommitLog(partition), run_id=f"cb{i}", gzip=False, grace_seconds=600)
    env = {**os.environ, "QCFLOW_STORE": f"file:{tmp_path}/data", "COLUMNS": "200"}
    before = json.loads(_qcflow(["status", "--json"], env, tmp_path).stdout)["files"]
    assert before == {"closed_hours": 1, "max_files_per_closed_hour": 6, "closed_hours_over_2_files": 1}
    day = hour.date().isoformat()
    done = _qcflow(["compact", "--since", day, "--until", day], env, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "1 compacted" in done.stdout and "parts 6 -> 1" in done.stdout
    again = json.loads(_qcflow(["compact", "--json"], env, tmp_path).stdout)
    assert again["compactions"] == 0 and again["parts_after"] == 1
    after = json.loads(_qcflow(["status", "--json"], env, tmp_path).stdout)["files"]
    assert after == {"closed_hours": 1, "max_files_per_closed_hour": 1, "closed_hours_over_2_files": 0}
    shown = _qcflow(["status"], env, tmp_path).stdout
    assert "files per closed hour" in shown
