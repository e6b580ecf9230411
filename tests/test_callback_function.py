"""The callback function (functions/callback/index.py) behind an FC HTTP trigger on loopback."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from qcflow.callback import callback_signature
from qcflow.tools.demo import count_results
from qcflow.tools.fc_local import HttpTriggerServer, context_for, http_event, load_handler_module, timer_event
from tests.push.conftest import FC_CREDS, push_world

KEY = "ccc/2026/11/20/job-5550001.mkv"
TOKEN = "test-callback-token-0123456789abcdef"
PATH = f"/sca-callback/{TOKEN}"


def test_a_task_appears_once_within_2_s_of_its_callback_and_the_timer_does_not_write_it_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    callback = load_handler_module("callback")
    with HttpTriggerServer(callback.handler, FC_CREDS) as trigger:
        with push_world(tmp_path, monkeypatch, QCFLOW_PUSH_CALLBACK_URL=trigger.url, QCFLOW_CALLBACK_TOKEN=TOKEN,
                        QCFLOW_HARVEST_SETTLE_SECONDS="0",
                        QCFLOW_HARVEST_START_SECONDS="3600") as world:
            world.put_recording(KEY)
            assert world.deliver(world.instance(), KEY) == {"records": 1, "submitted": 1}
            deadline = time.monotonic() + 20
            while trigger.calls == 0 and time.monotonic() < deadline:
                time.sleep(0.02)
            called = time.monotonic()
            assert trigger.calls == 1
            states, per_result, parts = count_results(world.state)
            while not parts and time.monotonic() < called + 2:
                time.sleep(0.05)
                states, per_result, parts = count_results(world.state)
            assert sum(states.values()) == 1, "written by the callback path within 2 s of the callback"
            line = json.loads(world.state.get(parts[0]).body)
            assert line["contact_id"] == "job-5550001" and line["object_key"] == KEY
            # windows are half-open at whole seconds: a pass in the upload's own second would not
            # read it yet (the next would); let that second pass so this pass covers the upload
            time.sleep(1.1)
            harvest = load_handler_module("harvest")
            world.modules.append(harvest)
            report = harvest.handler(timer_event(), context_for("harvest", FC_CREDS, timeout=120))
            assert report["written"] == 0 and report["duplicates_skipped"] >= 1, json.dumps(report)
            assert count_results(world.state)[0] == states
    callback.app.close()


def _query(task_id: str, timestamp_ms: int, ali_uid: str = "1688000000000001", signature: str | None = None) -> dict[str, str]:
    sig = signature or callback_signature(task_id, str(timestamp_ms), ali_uid)
    return {"taskId": task_id, "timestamp": str(timestamp_ms), "aliUid": ali_uid, "signature": sig, "event": "TaskComplete"}


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        (_query("T-1", int(time.time() * 1000), signature="AAAAAAAAAAAAAAAAAAAAAA=="), "signature"),
        (_query("T-1", int(time.time() * 1000) - 3_600_000), "stale"),
        ({"taskId": "T-1"}, "missing"),
        ({"taskId": "../../etc/passwd", "timestamp": "1", "aliUid": "1", "signature": "x" * 24}, "malformed"),
    ],
)
def test_bad_callbacks_are_refused_and_logged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str], query: dict[str, str], reason: str) -> None:
    with push_world(tmp_path, monkeypatch, QCFLOW_CALLBACK_TOKEN=TOKEN) as world:
        callback = load_handler_module("callback")
        world.modules.append(callback)
        answer = callback.handler(http_event("GET", PATH, query), context_for("callback", FC_CREDS))
        assert answer["statusCode"] == 400 and json.loads(answer["body"]) == {"error": reason}
        logged = [json.loads(l) for l in capsys.readouterr().out.splitlines() if l.startswith("{")]
        assert any(l.get("event") == "callback_refused" and l.get("reason") == reason for l in logged)
        assert not Path(world.state.root, "results").exists()


def test_a_forged_but_well_signed_callback_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The signature is keyless: anyone can make one. The hint is checked against GetResult."""
    with push_world(tmp_path, monkeypatch, QCFLOW_CALLBACK_TOKEN=TOKEN) as world:
        callback = load_handler_module("callback")
        world.modules.append(callback)
        answer = callback.handler(http_event("POST", PATH, _query("NO-SUCH-TASK", int(time.time() * 1000))),
                                  context_for("callback", FC_CREDS))
        assert answer["statusCode"] == 200 and json.loads(answer["body"])["written"] == 0
        assert not Path(world.state.root, "results").exists()
