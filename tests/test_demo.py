"""`qcflow demo` end to end in a temporary folder: every task lands in the JSONL exactly once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from qcflow.tools.demo import count_results, run_demo
from qcflow.store import LocalStore


def test_the_demo_lands_every_task_exactly_once(tmp_path: Path) -> None:
    summary = run_demo(12, store_url=f"file:{tmp_path}/data", task_seconds=0.5, failure_rate=0.25)
    assert summary.pushed == 12 and summary.push_failed == 0
    assert summary.harvested == summary.distinct_tasks == 12, "each task exactly once"
    assert summary.finished + summary.failed == 12 and summary.files >= 1
    assert summary.callbacks >= 1, "the sandbox's callbacks reached the callback function"
    states, per_result, parts = count_results(LocalStore(tmp_path / "data"))
    assert set(per_result.values()) == {1} and sum(states.values()) == 12
    assert all(p.startswith("results/dt=") and "/hour=" in p for p in parts)
    assert not any(k.startswith("QCFLOW_PUSH_CALLBACK") for k in os.environ), "the demo restores the environment"


def test_qcflow_demo_command_exits_0_and_says_where_the_jsonl_is(tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("qcflow")
    done = subprocess.run([str(exe), "demo", "--recordings", "5"], cwd=tmp_path, capture_output=True, text=True, timeout=180,
                          env={k: v for k, v in os.environ.items() if not k.startswith(("QCFLOW_", "ALIBABA_CLOUD_"))})
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"JSONL results: {tmp_path}/qcflow-data/results" in done.stdout
    assert list((tmp_path / "qcflow-data" / "results").rglob("part-*.jsonl"))


def test_the_demo_has_people_review_and_an_agent_appeal_and_counts_each_review_once(tmp_path: Path) -> None:
    summary = run_demo(6, store_url=f"file:{tmp_path}/data", task_seconds=0.5, failure_rate=0.0)
    assert summary.reviews_saved == 4, "three reviews, then an appeal settled by a fourth"
    assert summary.reviews == summary.distinct_reviews == 4 and summary.exactly_once
    assert summary.reviews_at.endswith("reviews")
