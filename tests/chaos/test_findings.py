"""Bugs the chaos suite found, each reduced to one deterministic test; fixed, they stay as
regression tests.

Real handler, real sandbox, real stores; the only double is I/O (an httpx transport that
loses one answer), as in the rest of this package.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from qcflow.fc import FunctionApp
from qcflow.tools.fc_local import context_for, load_handler_module, timer_event
from qcflow.errors import PushIncomplete
from qcflow.tools.sandbox.options import FaultOptions, SandboxOptions
from qcflow.services import build_services
from tests.push.conftest import FC_CREDS, push_world

KEY = "ccc/2026/11/20/job-5560001.mkv"
CONTACT = "job-5560001"


class LoseFirstUploadAnswer(httpx.AsyncBaseTransport):
    """Sends every request; the first UploadAudioData's answer is read, then "lost" (a
    dropped connection) after ``meanwhile()`` ran — what a slow network does while the world
    moves on."""

    def __init__(self, meanwhile: Any) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.meanwhile = meanwhile
        self.lost = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if request.headers.get("x-acs-action") == "UploadAudioData" and not self.lost:
            self.lost = True
            await response.aread()
            await asyncio.to_thread(self.meanwhile)
            raise httpx.ReadError("connection reset before the answer arrived", request=request)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


def test_a_task_id_push_never_heard_of_is_learnt_even_when_harvest_wrote_the_result_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with push_world(tmp_path, monkeypatch, QCFLOW_HARVEST_SETTLE_SECONDS="0", QCFLOW_HARVEST_START_SECONDS="3600") as world:
        world.put_recording(KEY)
        harvest = load_handler_module("harvest")
        world.modules.append(harvest)
        written: list[int] = []

        def meanwhile() -> None:  # the task finishes, and a timer pass writes it, before push hears back
            end = time.monotonic() + 10
            # final, and its upload second over (a window ends at a whole second before now)
            while any(t.finish_ms / 1000 > time.time() or t.upload_ms // 1000 + 1.05 > time.time()
                      for t in world.all_tasks()) and time.monotonic() < end:
                time.sleep(0.05)
            written.append(harvest.handler(timer_event(), context_for("harvest", FC_CREDS, timeout=60))["written"])

        push = world.instance()
        push.app = FunctionApp(lambda creds: build_services(creds, transport=LoseFirstUploadAnswer(meanwhile)))
        assert world.deliver(push, KEY) == {"records": 1, "submitted": 1}
        assert written == [1]
        submitted = world.entry(KEY).submitted
        assert submitted is not None and submitted.task_id is None and submitted.via == "call_uuid_repeated"
        report = harvest.handler(timer_event(), context_for("harvest", FC_CREDS, timeout=60))  # the next pass
        assert report["written"] == 0
        [task] = world.tasks_for(CONTACT)
        assert world.entry(KEY).task_id == task.task_id, "harvest fills in the taskId push could not learn"


def test_an_fc_retry_late_in_its_own_claims_life_still_pushes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ccc_down = FaultOptions(server_error_rate=1.0, actions=frozenset({"GetUploadAudioDataParams"}), seed=1)
    options = replace(SandboxOptions(), task_seconds=0.2, faults=ccc_down)
    with push_world(tmp_path, monkeypatch, options, QCFLOW_MAX_ATTEMPTS="2") as world:
        world.put_recording(KEY)
        instance = world.instance()
        with pytest.raises(PushIncomplete):  # CCC is down: the claim stays, FC will retry
            world.deliver(instance, KEY, request_id="req-1", timeout=1)
        claim = world.entry(KEY).latest_claim
        assert claim is not None and claim.token == "fc-req-1" and claim.expires_at - claim.claimed_at < 32
        world.server.app.options = replace(world.server.app.options, faults=FaultOptions())
        time.sleep(1.2)  # FC's retry comes a little later: the claim has under 30 s left, and is still ours
        assert world.deliver(instance, KEY, request_id="req-1") == {"records": 1, "submitted": 1}
        assert len(world.tasks_for(CONTACT)) == 1


def test_a_short_lease_the_settings_accept_still_lets_a_pass_read_its_windows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with push_world(tmp_path, monkeypatch, QCFLOW_HARVEST_LEASE_SECONDS="12", QCFLOW_HARVEST_SETTLE_SECONDS="0",
                    QCFLOW_HARVEST_START_SECONDS="3600") as world:
        harvest = load_handler_module("harvest")
        world.modules.append(harvest)
        report = harvest.handler(timer_event(), context_for("harvest", FC_CREDS, timeout=30))
        assert report["windows"] >= 2 and not report["stopped_by_deadline"], report
