"""``qcflow sandbox serve`` options for deep paging and callbacks, in a real process."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator

import pytest

from qcflow.acs.client import AcsClient
from qcflow.credentials import Credentials
from qcflow.models.sca import UploadAudioDataJson
from qcflow.tools.sandbox.options import DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET
from qcflow.sca import ScaClient
from tests.sandbox.receiver import running_receiver

pytestmark = pytest.mark.anyio

QCFLOW = os.path.join(os.path.dirname(sys.executable), "qcflow")
WINDOW = {"pageSize": 99, "requiredFields": "taskId", "startTime": "2000-01-01 00:00:00", "endTime": "2100-01-01 00:00:00"}


@contextlib.contextmanager
def serve(*args: str) -> Iterator[str]:
    command = [QCFLOW, "sandbox", "serve", "--port", "0", "--preload", "10100", "--get-result-quota", "0", "--task-seconds", "0.1", "--task-jitter-seconds", "0", "--stop-after", "30", *args]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+", line)
        assert url, line + (proc.stderr.read() if proc.stderr and proc.poll() is not None else "")
        yield url.group(0)
    finally:
        proc.terminate()
        proc.wait(10)


def client(url: str) -> ScaClient:
    return ScaClient(AcsClient(url, "2019-01-15", lambda: Credentials(DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET)))


@pytest.mark.parametrize(("flags", "page_102_free"), [((), False), (("--loose-deep-paging",), True)])
async def test_deep_paging_mode_from_the_command_line(flags: tuple[str, ...], page_102_free: bool) -> None:
    with serve(*flags) as url:
        sca = client(url)
        answer = await sca.acs.call("GetResult", {"JsonStr": json.dumps({**WINDOW, "pageNumber": 102})}, is_success=None)
        assert answer.body["Success"] is page_102_free
        await sca.aclose()


async def test_callback_options_from_the_command_line() -> None:
    with running_receiver() as receiver, serve("--callback-method", "POST", "--ali-uid", "9999000011112222") as url:
        sca = client(url)
        batch = UploadAudioDataJson(call_list=[{"voice_file_url": "http://127.0.0.1/cli.mkv", "call_uuid": "cli-1"}], callback_url=receiver.url + "/cb")
        task_id = (await sca.upload_audio_data(batch)).task_id
        await sca.aclose()
        (got,) = receiver.wait_for(1)
        assert got.method == "POST" and got.query["aliUid"] == "9999000011112222" and got.query["taskId"] == task_id


def test_help_lists_the_new_options() -> None:
    done = subprocess.run([QCFLOW, "sandbox", "serve", "--help"], capture_output=True, text=True, timeout=30)
    for option in ("--loose-deep-paging", "--callback-method", "--ali-uid", "--callback-timeout", "--callback-attempts", "--callback-forge-rate", "--callback-stale-rate", "--callback-allow-remote"):
        assert option in done.stdout, option


async def test_deny_action_from_the_command_line() -> None:
    """``--deny-action``: a RAM policy without the action → 403 Forbidden.RAM, a deployment error."""
    from qcflow.errors import DeploymentError

    with serve("--deny-action", "UploadAudioData") as url:
        sca = client(url)
        batch = UploadAudioDataJson(call_list=[{"voice_file_url": "http://127.0.0.1/cli.mkv", "call_uuid": "deny-1"}])
        with pytest.raises(DeploymentError) as info:
            await sca.upload_audio_data(batch)
        assert info.value.code == "Forbidden.RAM" and info.value.http_status == 403
        await sca.aclose()


async def test_review_options_from_the_command_line() -> None:
    import asyncio
    import time

    with serve("--review-share", "1", "--review-delay", "0.2", "--review-time-unit", "ms") as url:
        sca = client(url)
        batch = UploadAudioDataJson(call_list=[{"voice_file_url": "http://127.0.0.1/rv.mkv", "call_uuid": "cli-rv"}])
        task_id = (await sca.upload_audio_data(batch)).task_id
        query = {**WINDOW, "taskId": task_id, "requiredFields": "taskId,reviewStatus,reviewTimeLong"}
        deadline = time.monotonic() + 10
        while True:
            answer = await sca.acs.call("GetResult", {"JsonStr": json.dumps(query)}, is_success=None)
            items = answer.body["Data"]["ResultInfo"]
            if (items and items[0].get("ReviewStatus") == 1) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        await sca.aclose()
        assert items[0]["ReviewStatus"] == 1 and int(items[0]["ReviewTimeLong"]) > 10**11  # milliseconds
