"""Seeded chaos schedules over the real push, harvest and callback paths (see ``world.py``).

Each seed is one schedule (``plan.make_plan``): 20–30 recordings, duplicate and late OSS
deliveries, FC's retries, concurrent invocations on several instances, sandbox faults of
every kind, latency spikes past the client's timeout, SCA forgetting callUuids, child
processes SIGKILLed at chosen points, overlapping timer harvests, callbacks held, repeated
and forged. At the end: every recording exactly one SCA task or a recorded failure, every
final task exactly once in the JSONL, nothing lost.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.chaos.conftest import ChaosReport, chaos_seeds
from tests.chaos.plan import make_plan
from tests.chaos.world import ChaosWorld, replay_hint


@pytest.mark.parametrize("seed", chaos_seeds(), ids=lambda s: f"seed{s}-")
def test_schedule(seed: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chaos_report: ChaosReport) -> None:
    plan = make_plan(seed)
    started = time.monotonic()
    with ChaosWorld.open(plan, tmp_path, monkeypatch) as world:
        world.run()
        began = time.monotonic()
        world.settle()
        world.stats["seconds.settle"] += time.monotonic() - began  # type: ignore[assignment]
        problems = world.violations()
        chaos_report.add(seed, len(plan.recordings), time.monotonic() - started, world.faults_seen(), world.stats,
                         ok=not problems)
        if problems:
            trace = "\n".join(world.trace[-60:])
            pytest.fail(
                f"{plan.describe()}\n{len(problems)} invariant violation(s):\n  " + "\n  ".join(problems[:30])
                + f"\nstate kept in {tmp_path}\nlast steps:\n{trace}\n{replay_hint(seed)}",
                pytrace=False,
            )
