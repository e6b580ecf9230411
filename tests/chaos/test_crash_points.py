"""Each crash point once, without other faults: a child process is SIGKILLed exactly there,
the state it leaves is the one the point names, and the next invocations recover from it
with every invariant of ``world.py`` intact.

Push: FC retries the invocation that died (same request id): either while its claim still
lives ("our own" claim) or after it expired (the child's clock ran behind: a takeover).
After the points where SCA already has the task, SCA also forgets the callUuid (two hours
pass): only the ledger and the lookup in SCA can then keep the task single.
Harvest: the next timer pass, and one "six minutes later" that recovers a part whose writer
died between its commit record and its upload.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from qcflow import layout
from tests.chaos import plan as p
from tests.chaos.crashing import (
    AFTER_SCA,
    HARVEST_BEFORE_CHECKPOINT,
    HARVEST_BEFORE_COMMIT,
    HARVEST_BEFORE_PART,
    HARVEST_MID_PART,
    HARVEST_POINTS,
    PUSH_AFTER_CLAIM,
    PUSH_POINTS,
)
from tests.chaos.world import ChaosWorld, read_results

QUIET = p.Faults(0.0, 0.0, 0.0, 0.0, 0.0)


def _plan(seed: int, count: int = 3, lookback: int = 3600) -> p.Plan:
    specs = [p.RecordingSpec(f"ccc/2026/11/20/job-{8_000_000 + seed * 100 + i}.mkv", "good",
                             contact=f"job-{8_000_000 + seed * 100 + i}") for i in range(count)]
    return p.Plan(seed, specs, QUIET, task_failure_rate=0.0, lookback_seconds=lookback)


def _assert_crashed(run: Any, point: str) -> None:
    assert run.crashed and run.note is not None and run.note["point"] == point, (
        f"the child was not killed at {point} (rc {run.returncode}); its output ends with:\n{run.output[-3000:]}")


def _tasks(world: ChaosWorld) -> list[object]:
    sca = world.server.app.sca
    with sca._lock:
        return list(sca._tasks)


@pytest.mark.parametrize("shifted", [False, True], ids=["own-claim-retry", "takeover-after-expiry"])
@pytest.mark.parametrize("point", PUSH_POINTS)
def test_a_push_killed_at_this_point_ends_with_one_task_per_recording(
    point: str, shifted: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = _plan(900 + PUSH_POINTS.index(point) * 2 + shifted)
    keys = tuple(r.key for r in plan.recordings)
    with ChaosWorld.open(plan, tmp_path, monkeypatch) as world:
        world.relay.hold = True
        run = world.crash_push(p.CrashPush(keys, point, shifted, "crash-1", duplicate=False))
        _assert_crashed(run, point)
        entries = [world.entry(k) for k in keys]
        assert all(not e.outcomes for e in entries), "killed before any outcome was written"
        claimed = {k for k, e in zip(keys, entries) if e.claims}
        assert claimed, "a claim was won before the kill"
        tasks = _tasks(world)
        if point in AFTER_SCA:
            assert len(tasks) == len(keys), "SCA holds the batch's tasks"
            world.amnesia()  # two hours pass: SCA would take a second upload
        else:
            assert tasks == []
        world.run_due_retries(all_of_them=True)  # FC retries the dead invocation
        world.settle()
        assert world.violations() == []
        assert world.stats["push.replayed"] == 0, "FC's retry settled it"
        for key in keys:
            entry = world.entry(key)
            assert entry.submitted is not None
            if point in AFTER_SCA:
                assert entry.submitted.via == "lookup", "found in SCA, not sent again"
            if shifted and key in claimed:
                assert entry.submitted.generation >= 1, "the expired claim was taken over"


@pytest.mark.parametrize("point", HARVEST_POINTS)
def test_a_timer_harvest_killed_at_this_point_loses_and_repeats_nothing(
    point: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # parts of 7 records: two per window; no lookback: only a checkpoint that waits for the commit saves them
    plan = _plan(950 + HARVEST_POINTS.index(point), count=9, lookback=0)
    with ChaosWorld.open(plan, tmp_path, monkeypatch) as world:
        world.relay.hold = True  # no callback writes anything first
        for spec in plan.recordings:
            world.deliver((spec.key,), f"oss-{spec.contact}")
        world.wait_tasks_final()
        run = world.crash_harvest(p.CrashHarvest(point, "timer"))
        _assert_crashed(run, point)
        commits = [i.key for i in world.store.list(layout.HARVEST_COMMITS)]
        pending = [i.key for i in world.store.list(layout.HARVEST_PENDING)]
        parts = [i.key for i in world.store.list("results/")]
        if point == HARVEST_BEFORE_COMMIT:
            assert not commits and not parts, "killed before any commit record"
        elif point in (HARVEST_BEFORE_PART, HARVEST_MID_PART):
            assert commits and pending and not parts, "a commit record without its part"
        else:
            assert commits and parts and not pending
            assert run.note["key"].startswith(layout.HARVEST_CHECKPOINT), "parts committed, the checkpoint not moved"
        world.relay.hold = False
        world.settle()
        assert world.violations() == []
        assert len(read_results(world.store)) == len(plan.recordings)
        if point in (HARVEST_BEFORE_CHECKPOINT, HARVEST_BEFORE_COMMIT):
            assert world.stats["harvest.recovered"] == 0
        else:
            assert world.stats["harvest.recovered"] >= 1, "the lost part was rewritten by a later run"


def test_a_callback_killed_before_its_part_is_recovered_by_the_timer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plan = _plan(960, count=2)
    with ChaosWorld.open(plan, tmp_path, monkeypatch) as world:
        world.relay.hold = True
        world.deliver(tuple(r.key for r in plan.recordings), "oss-both")  # one upload: one taskId, two results
        world.wait_tasks_final()
        run = world.crash_harvest(p.CrashHarvest(HARVEST_BEFORE_PART, "callback"))
        assert run.crashed
        assert [i.key for i in world.store.list(layout.HARVEST_PENDING)] and not list(world.store.list("results/"))
        world.relay.take_held()  # SCA's own callbacks for the task: delivered later, they must not write it twice
        world.relay.hold = False
        world.settle()
        assert world.violations() == []
        assert world.stats["harvest.recovered"] == 1


def test_the_child_really_dies_by_sigkill_and_leaves_its_claim(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The crash is a real process death: exit by signal 9, nothing after the point ran."""
    plan = _plan(970, count=1)
    with ChaosWorld.open(plan, tmp_path, monkeypatch) as world:
        run = world.crash_push(p.CrashPush((plan.recordings[0].key,), PUSH_AFTER_CLAIM, False, "crash-1", duplicate=False))
        assert run.returncode == -9 and run.result is None
        entry = world.entry(plan.recordings[0].key)
        assert list(entry.claims) == [0] and entry.claims[0].token == "fc-crash-1" and not entry.outcomes
        assert world.server.app.snapshot()["answers"] == {}, "killed before CCC was asked"
