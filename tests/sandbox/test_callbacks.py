"""Task callbacks: the sandbox calls a real loopback receiver on time, once per task, signed
as SCA documents, with bounded retries, and stops with the server."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import threading
import time

import httpx
import pytest

from qcflow.callback import InvalidCallbackError, parse_callback, verify_callback
from qcflow.models.sca import GetResultQuery, UploadAudioDataJson
from qcflow.tools.sandbox.callbacks import callback_url
from qcflow.tools.sandbox.options import DEFAULT_ALI_UID
from tests.sandbox.conftest import FakeClock, ccc_client, options, running_sandbox, sca_client
from tests.sandbox.receiver import Received, running_receiver

pytestmark = pytest.mark.anyio

QUICK = {"task_seconds": 0.2, "task_jitter_seconds": 0.0, "callback_retry_seconds": 0.05}


def upload(callback: str | None, *, n: int = 1, tag: str = "cb") -> UploadAudioDataJson:
    calls = [{"voice_file_url": f"http://127.0.0.1/{tag}-{i}.mkv", "call_uuid": f"{tag}-{i}-{time.monotonic_ns()}"} for i in range(n)]
    return UploadAudioDataJson(call_list=calls, callback_url=callback)


def documented_signature(task_id: str, timestamp: str, ali_uid: str) -> str:
    """The oracle, straight from the API page: Base64(MD5("taskId=..&timestamp=..&aliUid=.."))."""
    return base64.b64encode(hashlib.md5(f"taskId={task_id}&timestamp={timestamp}&aliUid={ali_uid}".encode()).digest()).decode()


def settle(server, seconds: float = 0.6) -> None:
    """Give the sender a moment (more than its longest wait) to send anything it still would."""
    deadline = time.monotonic() + 10
    while server.app.callbacks.snapshot()["pending"] and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(seconds)


def check_documented_form(got: Received, base_path: str = "/cb") -> dict[str, str]:
    """The request is SCA's: path kept, the callbackUrl's own query first, then the five
    parameters in the documented order, the signature percent-encoded, and it verifies."""
    assert got.path == base_path
    names = [pair.split("=", 1)[0] for pair in got.raw_query.split("&")]
    assert names == ["token", "taskId", "timestamp", "aliUid", "signature", "event"]
    raw_signature = got.raw_query.split("signature=", 1)[1].split("&", 1)[0]
    assert not set("+/=") & set(raw_signature), "Base64 travels URL-encoded"
    query = got.query
    assert query["token"] == "t0k" and query["event"] == "TaskComplete" and query["aliUid"] == DEFAULT_ALI_UID
    assert query["signature"] == documented_signature(query["taskId"], query["timestamp"], query["aliUid"])
    hint, signature = parse_callback(query)
    verify_callback(hint, signature, now_ms=int(time.time() * 1000), max_age_seconds=600, expected_ali_uid=DEFAULT_ALI_UID)
    return query


async def test_one_correct_callback_per_task_without_any_request() -> None:
    with running_receiver() as receiver, running_sandbox(options(**QUICK)) as server:
        sca = sca_client(server)
        task_ids = [(await sca.upload_audio_data(upload(receiver.url + "/cb?token=t0k", tag=f"a{i}"))).task_id for i in range(3)]
        silent = (await sca.upload_audio_data(upload(None, tag="silent"))).task_id
        got = receiver.wait_for(3)  # no GetResult in between: the sandbox's own clock fires them
        settle(server)
        got = receiver.received
        assert len(got) == 3, [r.raw_query for r in got]
        assert sorted(check_documented_form(r)["taskId"] for r in got) == sorted(task_ids)
        assert all(r.method == "GET" for r in got)
        assert silent not in {r.query["taskId"] for r in got}, "no callbackUrl, no callback"
        # when the callback arrives, GetResult already shows the task final
        for task_id in task_ids:
            (item,) = (await sca.get_result(GetResultQuery(task_id=task_id, required_fields="taskId,status"))).results
            assert item.status == 1
        stats = httpx.get(server.url + "/__sandbox/stats").json()["callbacks"]
        assert stats["scheduled"] == 3 and stats["sent"] == 3 and stats["delivered"] == 3 and stats["failed"] == 0
        delays = stats["delay_ms"]
        assert delays["count"] == 3 and 0 <= delays["p50"] <= delays["p95"] <= delays["max"] and len(delays["recent"]) == 3


async def test_a_failed_task_gets_its_callback_too() -> None:
    with running_receiver() as receiver, running_sandbox(options(**QUICK, task_failure_rate=1.0)) as server:
        sca = sca_client(server)
        task_id = (await sca.upload_audio_data(upload(receiver.url + "/cb?token=t0k"))).task_id
        (got,) = receiver.wait_for(1)
        assert check_documented_form(got)["taskId"] == task_id
        (item,) = (await sca.get_result(GetResultQuery(task_id=task_id, required_fields="taskId,status"))).results
        assert item.status == 6
        settle(server)
        assert len(receiver.received) == 1
        assert server.app.callbacks.snapshot()["delivered_for_failed_tasks"] == 1


async def test_a_task_failed_by_its_audio_gets_one_callback() -> None:
    clock = FakeClock()
    with running_receiver() as receiver, running_sandbox(options(**QUICK), clock) as server:
        url = (await ccc_client(server, clock=clock).get_upload_audio_data_params("job-9")).params.call_list[0].voice_file_url
        sca = sca_client(server, clock=clock)
        batch = UploadAudioDataJson(call_list=[{"voice_file_url": url.replace("Signature=", "Signature=0"), "call_uuid": "bad-audio"}], callback_url=receiver.url + "/cb?token=t0k")
        task_id = (await sca.upload_audio_data(batch)).task_id
        clock.advance(1)
        (got,) = receiver.wait_for(1)
        assert got.query["taskId"] == task_id


async def test_several_recordings_under_one_task_id_make_one_callback() -> None:
    with running_receiver() as receiver, running_sandbox(options(**{**QUICK, "task_jitter_seconds": 0.5})) as server:
        sca = sca_client(server)
        task_id = (await sca.upload_audio_data(upload(receiver.url + "/cb?token=t0k", n=3))).task_id
        receiver.wait_for(1)
        # sent once the last of its recordings is final, not when the first is
        items = (await sca.get_result(GetResultQuery(task_id=task_id, required_fields="taskId,status"))).results
        assert [item.status for item in items] == [1, 1, 1]
        settle(server)
        assert [r.query["taskId"] for r in receiver.received] == [task_id]


async def test_post_method_carries_the_same_query_and_an_empty_body() -> None:
    with running_receiver() as receiver, running_sandbox(options(**QUICK, callback_method="POST")) as server:
        task_id = (await sca_client(server).upload_audio_data(upload(receiver.url + "/cb?token=t0k"))).task_id
        (got,) = receiver.wait_for(1)
        assert got.method == "POST" and got.body == b"" and got.headers.get("content-length") == "0"
        assert check_documented_form(got)["taskId"] == task_id


async def test_callbacks_follow_the_sandbox_clock() -> None:
    """A task finishing at t+60 s of the sandbox's clock is called back then, not before."""
    clock = FakeClock()
    with running_receiver() as receiver, running_sandbox(options(**{**QUICK, "task_seconds": 60}), clock) as server:
        await sca_client(server, clock=clock).upload_audio_data(upload(receiver.url + "/cb?token=t0k"))
        time.sleep(0.6)  # longer than the sender's longest wait: it has looked and found nothing due
        assert receiver.received == [] and server.app.callbacks.snapshot()["pending"] == 1
        clock.advance(61)
        (got,) = receiver.wait_for(1)
        assert abs(int(got.query["timestamp"]) - int(clock.now * 1000)) < 5_000, "the timestamp is the sandbox's clock"


async def test_failed_attempts_are_retried_a_bounded_number_of_times() -> None:
    with running_receiver(lambda n: 503 if n < 2 else 200) as receiver, running_sandbox(options(**QUICK)) as server:
        await sca_client(server).upload_audio_data(upload(receiver.url + "/cb?token=t0k"))
        got = receiver.wait_for(3)
        settle(server)
        assert len(receiver.received) == 3 and len({r.query["timestamp"] for r in got}) >= 1
        for attempt in receiver.received:
            check_documented_form(attempt)  # every attempt freshly and correctly signed
        stats = server.app.callbacks.snapshot()
        assert stats["sent"] == 3 and stats["retried"] == 2 and stats["delivered"] == 1 and stats["failed"] == 0
    with running_receiver(lambda n: 500) as receiver, running_sandbox(options(**QUICK, callback_max_attempts=2)) as server:
        await sca_client(server).upload_audio_data(upload(receiver.url + "/cb?token=t0k"))
        receiver.wait_for(2)
        settle(server)
        assert len(receiver.received) == 2, "gives up after callback_max_attempts"
        stats = server.app.callbacks.snapshot()
        assert stats["failed"] == 1 and stats["delivered"] == 0 and stats["pending"] == 0


async def test_an_unreachable_receiver_is_given_up_on() -> None:
    with running_receiver() as receiver:
        dead = receiver.url  # closed when the block ends: nothing listens there any more
    with running_sandbox(options(**QUICK, callback_max_attempts=2)) as server:
        await sca_client(server).upload_audio_data(upload(dead + "/cb"))
        deadline = time.monotonic() + 10
        while server.app.callbacks.snapshot()["failed"] < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        stats = server.app.callbacks.snapshot()
        assert stats["failed"] == 1 and stats["sent"] == 2


async def test_a_hung_receiver_blocks_neither_requests_nor_stop() -> None:
    with running_receiver() as receiver:
        receiver.gate.clear()  # the receiver takes the request and does not answer
        with running_sandbox(options(**QUICK, callback_timeout_seconds=30)) as server:
            sca = sca_client(server)
            await sca.upload_audio_data(upload(receiver.url + "/cb?token=t0k"))
            receiver.wait_for(1)
            assert server.app.callbacks.snapshot()["delivered"] == 0
            # the sandbox still answers while its callback hangs
            assert (await sca.get_result(GetResultQuery(page_size=1))).success
            await sca.upload_audio_data(upload(None, tag="meanwhile"))
            # stopping cancels the callback in flight (the receiver would hold it for 10 s)
            server.stop(timeout=3)
            assert not server.app.callbacks.running
        assert not [t for t in threading.enumerate() if t.name == "qcflow-sandbox-callbacks"]


async def test_a_slow_receiver_times_out_and_counts_as_failed() -> None:
    with running_receiver() as receiver:
        receiver.gate.clear()
        with running_sandbox(options(**QUICK, callback_timeout_seconds=0.2, callback_max_attempts=1)) as server:
            await sca_client(server).upload_audio_data(upload(receiver.url + "/cb?token=t0k"))
            deadline = time.monotonic() + 10
            while server.app.callbacks.snapshot()["failed"] < 1 and time.monotonic() < deadline:
                time.sleep(0.02)
            assert server.app.callbacks.snapshot()["failed"] == 1
        receiver.gate.set()


async def test_non_loopback_hosts_are_not_called_and_ip_hosts_warn_once(caplog) -> None:
    caplog.set_level(logging.WARNING, logger="qcflow.tools.sandbox")
    with running_receiver() as receiver, running_sandbox(options(**QUICK)) as server:
        sca = sca_client(server)
        await sca.upload_audio_data(upload("https://callback.example.invalid/cb?secret-token=XYZ", tag="remote"))
        for i in range(2):
            await sca.upload_audio_data(upload(receiver.url + "/cb?token=t0k", tag=f"ip{i}"))
        receiver.wait_for(2)
        settle(server)
        stats = server.app.callbacks.snapshot()
        assert stats["skipped"] == 1 and stats["scheduled"] == 2 and len(receiver.received) == 2
    messages = [r.getMessage() for r in caplog.records if r.name == "qcflow.tools.sandbox"]
    assert sum("IP address" in m for m in messages) == 1, messages
    assert sum("loopback" in m for m in messages) == 1, messages
    assert not any("XYZ" in m or "t0k" in m for m in messages), "a callbackUrl's own token is never logged"


async def test_localhost_counts_as_loopback() -> None:
    with running_receiver() as receiver, running_sandbox(options(**QUICK)) as server:
        await sca_client(server).upload_audio_data(upload(receiver.url.replace("127.0.0.1", "localhost") + "/cb?token=t0k"))
        (got,) = receiver.wait_for(1)
        check_documented_form(got)


@pytest.mark.parametrize("bad", ["ftp://127.0.0.1/cb", "http:///cb", "not a url", "http://127.0.0.1/c b"])
async def test_an_unusable_callback_url_is_refused_at_upload(bad: str) -> None:
    with running_sandbox(options(**QUICK)) as server:
        sca = sca_client(server)
        json_str = json.dumps({"callList": [{"voiceFileUrl": "http://127.0.0.1/a.mkv"}], "callbackUrl": bad})
        answer = await sca.acs.call("UploadAudioData", {"JsonStr": json_str}, is_success=None)
        assert answer.body["Success"] is False and answer.body["Code"] == "InvalidParameter"
        assert server.app.sca.task_count() == 0 and server.app.callbacks.snapshot()["scheduled"] == 0


@pytest.mark.parametrize(("option", "reason"), [("callback_forge_rate", "signature"), ("callback_stale_rate", "stale")])
async def test_fault_options_send_callbacks_a_receiver_must_refuse(option: str, reason: str) -> None:
    with running_receiver() as receiver, running_sandbox(options(**QUICK, **{option: 1.0})) as server:
        await sca_client(server).upload_audio_data(upload(receiver.url + "/cb?token=t0k"))
        (got,) = receiver.wait_for(1)
        hint, signature = parse_callback(got.query)
        with pytest.raises(InvalidCallbackError) as info:
            verify_callback(hint, signature, now_ms=int(time.time() * 1000), max_age_seconds=600)
        assert info.value.reason == reason
        assert server.app.callbacks.snapshot()["forged" if reason == "signature" else "stale"] == 1


def test_callback_url_keeps_the_receivers_query_and_drops_the_fragment() -> None:
    url = callback_url("https://fc.example.com/hook?a=1&b=x%20y#frag", "T-1", 1700000000000, "42", "ab+/cd==")
    assert url == "https://fc.example.com/hook?a=1&b=x%20y&taskId=T-1&timestamp=1700000000000&aliUid=42&signature=ab%2B%2Fcd%3D%3D&event=TaskComplete"
    assert callback_url("http://127.0.0.1:9", "T", 1, "2", "s").startswith("http://127.0.0.1:9/?taskId=T&")
