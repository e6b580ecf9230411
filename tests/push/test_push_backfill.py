"""Backfill (``qcflow push --prefix``'s use case) under injected faults: nothing lost, nothing doubled."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest

from qcflow.credentials import credentials_from_env
from qcflow.push.replay import backfill
from qcflow.tools.sandbox.options import FaultOptions, QuotaOptions, SandboxOptions
from qcflow.services import build_services
from tests.push.conftest import push_world

N = 1000


def test_1000_recordings_under_10_percent_faults_make_1000_tasks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    faults = FaultOptions(server_error_rate=0.04, throttle_rate=0.03, drop_rate=0.03, seed=11)
    options = replace(SandboxOptions(), task_seconds=0.2, faults=faults, quotas=QuotaOptions(get_result=None, upload_audio_data=None))
    with push_world(tmp_path, monkeypatch, options, QCFLOW_MAX_ATTEMPTS="4") as world:
        for i in range(N):
            world.put_recording(f"ccc/2026/11/20/job-{100000 + i}.mkv")

        async def run():  # type: ignore[no-untyped-def]
            creds = credentials_from_env()
            services = await build_services(lambda: creds)
            try:
                pusher = services.pusher()
                return await backfill(pusher, pusher.recordings_under("ccc/"), token="cli-test", concurrency=16,
                                      pause_seconds=0.05, rounds=5)
            finally:
                await services.aclose()

        results = asyncio.run(run())
        statuses = Counter(r.status for r in results)
        assert statuses == {"submitted": N}, statuses
        per_contact = Counter(t.call["callId"] for t in world.all_tasks())
        assert len(per_contact) == N and set(per_contact.values()) == {1}, "0 missing, 0 duplicates"
        answers = world.server.app.snapshot()["answers"]
        assert any("ServiceUnavailable" in k or "Throttling" in k or "dropped" in k for k in answers), answers
