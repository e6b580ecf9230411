"""The chaos world with its state on OSS (the real OSS adapter, on moto behind the OSS dialect
shim; ``tests/store/conftest.py``), crashing children included: they reach the same moto.

One schedule and the crash points that leave the most behind (a task in SCA without its
outcome; a commit record without its part). Create-if-absent's atomicity on OSS comes
from the service; here moto's shim serialises conditional PUTs (docs/api-clients.md: the OSS race tests
prove the adapter's side only).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.chaos import plan as p
from tests.chaos.conftest import ChaosReport
from tests.chaos.crashing import HARVEST_BEFORE_PART, PUSH_AFTER_UPLOAD
from tests.chaos.plan import make_plan
from tests.chaos.world import ChaosWorld, read_results
from tests.store.conftest import BUCKET, REGION, MotoOss, make_oss_store, moto_oss  # noqa: F401 - the session fixture

#: Seeds run with the state on OSS (beside the 20 on a local folder).
OSS_SEEDS = (101, 102)


@pytest.fixture
def oss_world_args(moto_oss: MotoOss) -> Iterator[dict[str, Any]]:  # noqa: F811 - the fixture above
    moto_oss.injector.reset()
    prefix = f"chaos/{uuid.uuid4().hex[:12]}"
    store = make_oss_store(moto_oss, prefix)
    yield {"store": store, "store_url": f"oss://{BUCKET}/{prefix}",
           "extra_env": {"QCFLOW_OSS_ENDPOINT": moto_oss.endpoint, "QCFLOW_REGION": REGION}}
    moto_oss.injector.reset()


@pytest.mark.parametrize("seed", OSS_SEEDS, ids=lambda s: f"seed{s}-")
def test_a_schedule_with_the_state_on_oss(seed: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          oss_world_args: dict[str, Any], chaos_report: ChaosReport) -> None:
    plan = make_plan(seed, recordings=(14, 18))
    started = time.monotonic()
    with ChaosWorld.open(plan, tmp_path, monkeypatch, **oss_world_args) as world:
        world.run()
        world.settle()
        problems = world.violations()
        chaos_report.add(seed, len(plan.recordings), time.monotonic() - started, world.faults_seen(), world.stats,
                         ok=not problems)
        assert not problems, (f"{plan.describe()} (state on OSS)\n  " + "\n  ".join(problems)
                              + f"\nreplay: .venv/bin/python -m pytest -p no:cacheprovider tests/chaos/test_chaos_oss.py -k 'seed{seed}-'")


def test_a_push_killed_after_upload_with_the_ledger_on_oss(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            oss_world_args: dict[str, Any]) -> None:
    specs = [p.RecordingSpec(f"ccc/2026/11/20/job-{8_500_000 + i}.mkv", "good", contact=f"job-{8_500_000 + i}") for i in range(2)]
    plan = p.Plan(990, specs, p.Faults(0, 0, 0, 0, 0), task_failure_rate=0.0)
    with ChaosWorld.open(plan, tmp_path, monkeypatch, **oss_world_args) as world:
        run = world.crash_push(p.CrashPush(tuple(s.key for s in specs), PUSH_AFTER_UPLOAD, True, "crash-oss", duplicate=False))
        assert run.crashed
        world.amnesia()
        world.settle()
        assert world.violations() == []
        assert all(world.entry(s.key).submitted.via == "lookup" for s in specs)  # type: ignore[union-attr]


def test_a_harvest_killed_before_its_part_with_the_state_on_oss(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 oss_world_args: dict[str, Any]) -> None:
    specs = [p.RecordingSpec(f"ccc/2026/11/20/job-{8_600_000 + i}.mkv", "good", contact=f"job-{8_600_000 + i}") for i in range(4)]
    plan = p.Plan(991, specs, p.Faults(0, 0, 0, 0, 0), task_failure_rate=0.0, lookback_seconds=0)
    with ChaosWorld.open(plan, tmp_path, monkeypatch, **oss_world_args) as world:
        world.relay.hold = True
        for spec in specs:
            world.deliver((spec.key,), f"oss-{spec.contact}")
        world.wait_tasks_final()
        assert world.crash_harvest(p.CrashHarvest(HARVEST_BEFORE_PART, "timer")).crashed
        world.relay.hold = False
        world.settle()
        assert world.violations() == []
        assert len(read_results(world.store)) == len(specs) and world.stats["harvest.recovered"] == 1
