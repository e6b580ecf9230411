"""Each rule of the emulated services, through the real HTTP path."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest

from qcflow.acs.client import RetryPolicy
from qcflow.credentials import Credentials
from qcflow.errors import AuthError, DeploymentError, NotFoundError, RequestError, ServiceUnavailableError, ThrottledError, TransportError
from qcflow.models.sca import GetResultQuery, UploadAudioDataJson
from qcflow.models.sca_result import GetResultResponse
from qcflow.tools.sandbox.options import FaultOptions, QuotaOptions
from qcflow.sca import sca_succeeded
from tests.sandbox.conftest import FakeClock, ccc_client, options, running_sandbox, sca_client

pytestmark = pytest.mark.anyio


def upload(voice: str = "http://127.0.0.1/r.mkv", **call: object) -> UploadAudioDataJson:
    return UploadAudioDataJson(call_list=[{"voice_file_url": voice, **call}])


async def raw_get_result(client, json_str: str) -> dict:
    """GetResult with a JsonStr the typed model would refuse (to see the service refuse it)."""
    answer = await client.acs.call("GetResult", {"JsonStr": json_str}, is_success=None)
    return answer.body


async def test_call_uuid_repeat_rejects_the_whole_request_for_two_hours() -> None:
    clock = FakeClock()
    with running_sandbox(options(), clock) as server:
        sca = sca_client(server, clock=clock)
        await sca.upload_audio_data(upload(call_uuid="u-1", call_id="job-1"))
        tasks_before = server.app.sca.task_count()
        batch = UploadAudioDataJson(call_list=[{"voice_file_url": "http://127.0.0.1/a.mkv", "call_uuid": "u-2"}, {"voice_file_url": "http://127.0.0.1/b.mkv", "call_uuid": "u-1"}])
        with pytest.raises(RequestError) as info:
            await sca.upload_audio_data(batch)
        assert info.value.code == "CallUuidRepeated" and info.value.http_status == 200 and info.value.request_id
        assert server.app.sca.task_count() == tasks_before, "no recording of a rejected batch is taken"
        clock.advance(7200 - 5)
        with pytest.raises(RequestError):
            await sca.upload_audio_data(upload(call_uuid="u-1"))
        clock.advance(10)
        assert (await sca.upload_audio_data(batch)).task_id  # older than 2 h: compared no more


async def test_upload_validation(sandbox) -> None:
    sca = sca_client(sandbox)
    for bad in ('{"callList": []}', '{"callList": [{"fileName": "x"}]}', '{"callList": [{"voiceFileUrl": "http://a/b"}], "sampleRate": 11}', "not json", '{"callList": [{"voiceFileUrl": "ftp://a/b"}]}'):
        answer = await sca.acs.call("UploadAudioData", {"JsonStr": bad})
        assert answer.body["Success"] is False and answer.body["Code"] == "InvalidParameter", bad


async def test_page_size_is_limited_to_99(sandbox) -> None:
    sca = sca_client(sandbox)
    refused = await raw_get_result(sca, '{"pageSize": 100}')
    assert refused["Success"] is False and refused["Code"] == "InvalidParameter" and "pageSize" in refused["Message"]
    accepted = GetResultResponse.model_validate(await raw_get_result(sca, '{"pageSize": 99}'))
    assert accepted.success and len(accepted.results) == 99 and accepted.page_size == 99


async def test_window_filter_count_and_paging(sandbox) -> None:
    sca = sca_client(sandbox)
    # 2,000 results spread evenly over 10 h: one every 18 s; 1 h holds 200
    query = GetResultQuery(start_time="2026-11-19 23:00:00", end_time="2026-11-19 23:59:59", page_size=99, required_fields="taskId,status,createTimeLong")
    seen: list[str] = []
    for number in (1, 2, 3):
        page = await sca.get_result(query.model_copy(update={"page_number": number}))
        assert page.count == 200
        seen += [r.task_id for r in page.results]
        assert all(r.status == 1 for r in page.results)
    assert len(seen) == 200 == len(set(seen))
    times = [int(r.create_time_long) for r in (await sca.get_result(query)).results]
    # the window is in SCA's zone (Asia/Shanghai): 23:00 there is 15:00 UTC
    window_start = int(datetime(2026, 11, 19, 23, 0, tzinfo=ZoneInfo("Asia/Shanghai")).timestamp())
    assert times == sorted(times) and window_start <= min(times) and max(times) < window_start + 3600


async def test_required_and_excluded_fields(sandbox) -> None:
    sca = sca_client(sandbox)
    window = {"start_time": "2026-11-20 02:00:00", "end_time": "2026-11-20 02:59:59", "page_size": 30}
    default = (await sca.get_result(GetResultQuery(**window))).results
    assert all(r.task_id and r.status == 1 and r.score is not None for r in default)
    assert any(r.hit_result for r in default) and all(r.asr_result is None and r.recording is None for r in default)
    slim = (await sca.get_result(GetResultQuery(**window, required_fields="taskId,recording,hitResult", exclude_fields="hitResult.hits,recording.url"))).results
    assert all(r.recording and r.recording.url is None and r.recording.id for r in slim)
    assert all(rule.hits is None for r in slim for rule in (r.hit_result or []))
    assert any(r.hit_result for r in slim)
    named = (await sca.get_result(GetResultQuery(**window, required_fields="taskId,recording.name,recording.duration"))).results
    assert all(r.recording.name and r.recording.duration and r.recording.url is None for r in named)


async def test_filters_task_id_status_call_id(sandbox) -> None:
    sca = sca_client(sandbox)
    task_id = (await sca.upload_audio_data(upload(call_id="job-424242", call_uuid="filters-1"))).task_id
    by_task = await sca.get_result(GetResultQuery(task_id=task_id, required_fields="taskId,recording"))
    assert by_task.count == 1 and by_task.results[0].recording.id == "job-424242"
    by_call = await sca.get_result(GetResultQuery(call_id="job-424242", required_fields="taskId"))
    assert [r.task_id for r in by_call.results] == [task_id]
    running = await sca.get_result(GetResultQuery(task_id=task_id, status=0))
    finished = await sca.get_result(GetResultQuery(task_id=task_id, status=1))
    assert running.count + finished.count == 1


async def test_task_lifecycle_running_finished_failed() -> None:
    clock = FakeClock()
    with running_sandbox(options(task_seconds=60, task_jitter_seconds=0), clock) as server:
        sca = sca_client(server, clock=clock)
        task_id = (await sca.upload_audio_data(upload(call_uuid="life-1"))).task_id
        fields = "taskId,status,score,errorMessage,hitResult"
        (item,) = (await sca.get_result(GetResultQuery(task_id=task_id, required_fields=fields))).results
        assert item.status == 0 and item.score is None and item.hit_result is None
        clock.advance(61)
        (item,) = (await sca.get_result(GetResultQuery(task_id=task_id, required_fields=fields))).results
        assert item.status == 1 and item.score is not None
    with running_sandbox(options(task_seconds=1, task_jitter_seconds=0, task_failure_rate=1.0), clock) as server:
        sca = sca_client(server, clock=clock)
        task_id = (await sca.upload_audio_data(upload(call_uuid="life-2"))).task_id
        clock.advance(2)
        (item,) = (await sca.get_result(GetResultQuery(task_id=task_id, required_fields="taskId,status,errorMessage"))).results
        assert item.status == 6 and item.failed and item.error_message


async def test_quota_throttles_like_the_service() -> None:
    with running_sandbox(options(quotas=QuotaOptions(get_result=5, window_seconds=1.0))) as server:
        sca = sca_client(server)
        for _ in range(5):
            await sca.get_result(GetResultQuery(page_size=1))
        # throttling is retried until the call's deadline: one far shorter than the window fails
        impatient = sca_client(server, retry=RetryPolicy(max_attempts=1, deadline_seconds=0.2, throttle_backoff_initial_seconds=0.05))
        with pytest.raises(ThrottledError) as info:
            await impatient.get_result(GetResultQuery(page_size=1))
        assert info.value.code == "Throttling.User" and info.value.http_status == 400 and info.value.request_id
        assert info.value.deadline_reached
        # UploadAudioData has its own quota
        await sca.upload_audio_data(upload(call_uuid="quota-1"))
        await asyncio.sleep(1.05)
        await sca.get_result(GetResultQuery(page_size=1))
        # with retries and backoff, a client rides through throttling
        patient = sca_client(server, retry=RetryPolicy(throttle_backoff_initial_seconds=0.05, throttle_backoff_max_seconds=0.3))
        results = await asyncio.gather(*(patient.get_result(GetResultQuery(page_size=1)) for _ in range(12)))
        assert all(r.success for r in results)
        assert server.app.stats["GetResult Throttling.User"] >= 2


async def test_signature_checks() -> None:
    clock = FakeClock()
    with running_sandbox(options(), clock) as server:
        stale = FakeClock(clock.now - 16 * 60)
        with pytest.raises(AuthError) as info:
            await sca_client(server, clock=stale).get_result(GetResultQuery())
        assert info.value.code == "InvalidTimeStamp.Expired"
        sca = sca_client(server, clock=clock)
        sca.acs.nonce = lambda: "same-nonce-every-time"
        await sca.get_result(GetResultQuery())
        with pytest.raises(AuthError) as info:
            await sca.get_result(GetResultQuery())
        assert info.value.code == "SignatureNonceUsed"
        with pytest.raises(AuthError) as info:
            await sca_client(server, clock=clock, creds=Credentials("qcflow-sandbox-id", "bad")).get_result(GetResultQuery())
        assert info.value.code == "SignatureDoesNotMatch" and info.value.http_status == 400
        # the error (which ends up in logs) never carries the STS token or the secret
        with pytest.raises(AuthError) as info:
            await sca_client(server, clock=clock, creds=Credentials("qcflow-sandbox-id", "bad-secret", "STS-TOKEN-VALUE")).get_result(GetResultQuery())
        assert "STS-TOKEN-VALUE" not in str(info.value) and "bad-secret" not in str(info.value)
        # a request whose signature does not cover x-acs-date is incomplete
        request = sca_client(server, clock=clock).acs.build_request("GetResult", {"JsonStr": "{}"})
        auth = request.headers["Authorization"].replace("x-acs-date;", "")
        request.headers["Authorization"] = auth
        answer = httpx.Client().send(request)
        assert answer.status_code == 400 and answer.json()["Code"] == "IncompleteSignature"


async def test_a_denied_action_is_forbidden_by_ram_after_the_signature_is_checked() -> None:
    """``denied_actions``: a RAM policy without the action; a wrong secret still fails signing first."""
    with running_sandbox(options(denied_actions=frozenset({"UploadAudioData"}))) as server:
        sca = sca_client(server)
        await sca.get_result(GetResultQuery())  # allowed
        with pytest.raises(DeploymentError) as info:
            await sca.upload_audio_data(upload(call_uuid="u1"))
        assert info.value.code == "Forbidden.RAM" and info.value.http_status == 403
        assert "UploadAudioData" in info.value.remedy and "RAM policy" in info.value.remedy
        with pytest.raises(DeploymentError) as info:
            await sca_client(server, creds=Credentials("qcflow-sandbox-id", "wrong")).upload_audio_data(upload(call_uuid="u2"))
        assert info.value.code == "SignatureDoesNotMatch" and "ALIBABA_CLOUD_ACCESS_KEY_SECRET" in info.value.remedy
        with pytest.raises(DeploymentError) as info:
            await sca_client(server, creds=Credentials("unknown-id", "x")).get_result(GetResultQuery())
        assert info.value.code == "InvalidAccessKeyId.NotFound" and "ALIBABA_CLOUD_ACCESS_KEY_ID" in info.value.remedy
        assert not server.app.sca._tasks, "nothing was uploaded"


async def test_ccc_unknown_contact_is_not_found(sandbox) -> None:
    ccc = ccc_client(sandbox)
    with pytest.raises(NotFoundError) as info:
        await ccc.get_upload_audio_data_params("not-a-contact")
    assert info.value.code == "NotExists.ContactId" and info.value.http_status == 404


async def test_recording_url_expires_and_resists_tampering() -> None:
    clock = FakeClock()
    with running_sandbox(options(), clock) as server:
        url = (await ccc_client(server, clock=clock).get_upload_audio_data_params("job-5")).params.call_list[0].voice_file_url
        assert httpx.get(url).status_code == 200
        assert httpx.get(url.replace("job-5.mkv", "job-6.mkv")).status_code == 403
        clock.advance(timedelta(hours=25).total_seconds())
        assert httpx.get(url).status_code == 403


@pytest.mark.parametrize(
    ("faults", "error"),
    [
        (FaultOptions(server_error_rate=1.0), ServiceUnavailableError),
        (FaultOptions(throttle_rate=1.0), ThrottledError),
        (FaultOptions(business_failure_rate=1.0), ServiceUnavailableError),
        (FaultOptions(drop_rate=1.0), TransportError),
    ],
)
async def test_fault_injection(faults: FaultOptions, error: type) -> None:
    with running_sandbox(options(faults=faults)) as server:
        policy = RetryPolicy(max_attempts=3, backoff_initial_seconds=0.01, backoff_max_seconds=0.02, deadline_seconds=1.0,
                             throttle_backoff_initial_seconds=0.01, throttle_backoff_max_seconds=0.02, min_attempt_seconds=0.2)
        sca = sca_client(server, retry=policy)
        with pytest.raises(error) as info:
            await sca.get_result(GetResultQuery())
        sent = sum(server.app.stats.values())
        assert info.value.attempts == sent
        if error is ThrottledError:  # retried until the deadline, beyond max_attempts
            assert sent > 3 and info.value.deadline_reached, "throttling was retried"
        else:
            assert sent == 3 and not info.value.deadline_reached, "each fault was retried"


async def test_partial_faults_are_ridden_through_and_limited_to_actions() -> None:
    faults = FaultOptions(server_error_rate=0.3, drop_rate=0.2, seed=3, actions=frozenset({"GetResult"}))
    with running_sandbox(options(faults=faults)) as server:
        sca = sca_client(server, retry=RetryPolicy(max_attempts=12, backoff_initial_seconds=0.005, backoff_max_seconds=0.02))
        pages = [await sca.get_result(GetResultQuery(page_size=1)) for _ in range(20)]
        assert all(p.success for p in pages)
        assert server.app.stats["GetResult ServiceUnavailable"] > 0
        # UploadAudioData is not in the fault set
        for n in range(5):
            await sca_client(server).upload_audio_data(upload(call_uuid=f"clean-{n}"))


async def test_latency_injection() -> None:
    with running_sandbox(options(faults=FaultOptions(latency_seconds=0.2))) as server:
        sca = sca_client(server)
        start = time.monotonic()
        await sca.get_result(GetResultQuery(page_size=1))
        assert time.monotonic() - start >= 0.2


async def test_sca_success_rule() -> None:
    assert sca_succeeded({"Success": True}) and not sca_succeeded({"Success": None}) and not sca_succeeded({})


async def test_task_fails_when_its_audio_url_has_expired() -> None:
    """A recording URL that no longer downloads fails the task (status 6), as the service does."""
    clock = FakeClock()
    with running_sandbox(options(task_seconds=1, task_jitter_seconds=0), clock) as server:
        url = (await ccc_client(server, clock=clock).get_upload_audio_data_params("job-8")).params.call_list[0].voice_file_url
        sca = sca_client(server, clock=clock)
        fresh = (await sca.upload_audio_data(upload(url, call_uuid="fresh"))).task_id
        clock.advance(timedelta(hours=24, minutes=1).total_seconds())
        stale = (await sca.upload_audio_data(upload(url, call_uuid="stale"))).task_id
        tampered = (await sca.upload_audio_data(upload(url.replace("Signature=", "Signature=0"), call_uuid="tampered"))).task_id
        clock.advance(2)
        fields = "taskId,status,errorMessage"
        (ok,) = (await sca.get_result(GetResultQuery(task_id=fresh, required_fields=fields))).results
        assert ok.status == 1 and ok.error_message is None
        for task_id in (stale, tampered):
            (failed,) = (await sca.get_result(GetResultQuery(task_id=task_id, required_fields=fields))).results
            assert failed.status == 6 and "download failed" in failed.error_message


async def test_form_body_parameters_are_read_and_signed(sandbox) -> None:
    """RPC callers may send parameters as a form body; the body's hash is signed."""
    import hashlib
    from urllib.parse import urlencode

    from qcflow.acs import signer
    from qcflow.tools.sandbox.options import DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET

    body = urlencode({"JsonStr": json.dumps({"pageSize": 3})}).encode()
    headers = {
        "host": sandbox.endpoint,
        "x-acs-action": "GetResult",
        "x-acs-version": "2019-01-15",
        "x-acs-date": signer.acs_timestamp(),
        "x-acs-signature-nonce": signer.new_nonce(),
        "x-acs-content-sha256": hashlib.sha256(body).hexdigest(),
        "content-type": "application/x-www-form-urlencoded",
    }
    headers["Authorization"] = signer.authorization(DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET, "POST", "/", {}, headers, headers["x-acs-content-sha256"])
    async with httpx.AsyncClient() as http:
        answer = await http.post(sandbox.url + "/", content=body, headers=headers)
        assert answer.status_code == 200 and answer.json()["Success"] and len(answer.json()["Data"]["ResultInfo"]) == 3
        tampered = await http.post(sandbox.url + "/", content=body.replace(b"3", b"4"), headers=headers)
        assert tampered.status_code == 400 and tampered.json()["Code"] == "SignatureDoesNotMatch"
