"""`qcflow status` reads the ledger and harvest state of a real (demo) run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from qcflow import journal, layout
from qcflow.config import load_settings
from qcflow.tools.demo import run_demo
from qcflow.ledger import Ledger, Outcome
from qcflow.tools.status import status
from qcflow.store import LocalStore


def test_status_counts_a_demo_run_and_the_ledgers_states(tmp_path: Path) -> None:
    summary = run_demo(6, store_url=f"file:{tmp_path}/data", task_seconds=0.3, failure_rate=0.0)
    store = LocalStore(tmp_path / "data")
    ledger = Ledger(store)
    now = time.time()
    # one failed, one in flight, one stalled (claim expired, no outcome)
    ledger.claim("oss://b/failed.mkv", token="a", now=now, expires_at=now + 60)
    ledger.record(Outcome(generation=0, state="failed", recorded_at=now, location="oss://b/failed.mkv", code="NotExists.ContactId"))
    ledger.claim("oss://b/live.mkv", token="b", now=now, expires_at=now + 600)
    ledger.claim("oss://b/dead.mkv", token="c", now=now - 900, expires_at=now - 300)
    # and one whose only claim an interrupted `qcflow push` released unsent: not stalled, never pushed
    ledger.claim("oss://b/released.mkv", token="cli-d", now=now, expires_at=now + 600)
    assert ledger.release("oss://b/released.mkv", 0, token="cli-d", now=now)
    report = status(store, zone=load_settings({}).zone)
    push, harvest = report["push"], report["harvest"]
    assert push["submitted"] == summary.pushed == 6
    assert (push["failed"], push["in_flight"], push["stalled"], push["released"]) == (1, 1, 1, 1)
    assert push["failed_top_reasons"] == {"NotExists.ContactId": 1}
    assert harvest["harvested_last_7_days"] == 6 and harvest["unfinished"] == 0 and harvest["stuck"] == 0
    assert harvest["checkpoint"] is not None and harvest["last_run"]["run_id"]

    exe = Path(sys.executable).with_name("qcflow")
    env = {**os.environ, "QCFLOW_STORE": f"file:{tmp_path}/data"}
    done = subprocess.run([str(exe), "status", "--json"], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["push"]["submitted"] == 6


def test_harvested_days_are_the_partitions_days_not_utc_days(tmp_path: Path) -> None:
    """At 18:00 UTC it is already tomorrow in Shanghai, where results are partitioned: they count."""
    from datetime import datetime, timezone
    from zoneinfo import ZoneInfo

    store = LocalStore(tmp_path)
    key = f"{layout.HARVEST_COMMITS}dt=2026-12-05/hour=01/0000000001.json"
    journal.write_once(store, key, {"v": 1, "results": ["t1|c1", "t2|c2"]}, token="test")
    evening = datetime(2026, 12, 4, 18, 0, tzinfo=timezone.utc)
    report = status(store, zone=ZoneInfo("Asia/Shanghai"), now=evening, days=1)
    assert report["harvest"]["harvested_last_1_days"] == 2
    assert status(store, zone=timezone.utc, now=evening, days=1)["harvest"]["harvested_last_1_days"] == 0
