"""Regressions from an adversarial review: malformed input never crashes the sandbox, the
signature vouches for the action, lost answers are modelled, nothing secret leaks."""

from __future__ import annotations

import json

import httpx
import pytest

from qcflow.acs.client import RetryPolicy
from qcflow.errors import RequestError, TransportError
from qcflow.models.sca import GetResultQuery, UploadAudioDataJson
from qcflow.tools.sandbox.auth import IncomingRequest, Verifier
from qcflow.tools.sandbox.options import DEFAULT_ACCESS_KEY_ID as AK
from qcflow.tools.sandbox.options import DEFAULT_ACCESS_KEY_SECRET as SK
from qcflow.tools.sandbox.options import FaultOptions
from qcflow.sca import DuplicateCallUuidError
from tests.sandbox.conftest import FakeClock, options, running_sandbox, sca_client

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    ("action", "json_str"),
    [
        ("GetResult", '{"startTime": "2026-02-30 00:00:00"}'),
        ("GetResult", '{"endTime": "2026-13-45 99:99:99"}'),
        ("GetResult", '{"callStartTime": "2026-01-01 00:00:00\\n"}'),
        ("GetResult", "[" * 1100),
        ("UploadAudioData", "[" * 1100),
        ("GetResult", '{"pageNumber": -1}'),
        ("UploadAudioData", '{"call_list": [{"voice_file_url": "http://a/b"}]}'),
        ("GetResult", "[]"),
    ],
)
async def test_malformed_json_str_is_refused_not_crashed(sandbox, action: str, json_str: str) -> None:
    answer = await sca_client(sandbox).acs.call(action, {"JsonStr": json_str})
    assert answer.http_status == 200 and answer.body["Success"] is False and answer.body["Code"] == "InvalidParameter"


async def test_non_ascii_signatures_are_refused_not_crashed(sandbox) -> None:
    signed = sca_client(sandbox).acs.build_request("GetResult", {"JsonStr": "{}"})
    raw_headers = [(k.encode(), v.encode()) for k, v in signed.headers.items() if k.lower() != "authorization"]
    forged = signed.headers["Authorization"][:-1].encode() + b"\xe9"  # a latin-1 byte on the wire
    request = httpx.Request("POST", signed.url, headers=[*raw_headers, (b"authorization", forged)], content=b"")
    async with httpx.AsyncClient() as http:
        answer = await http.send(request)
        assert answer.status_code == 400 and answer.json()["Code"] == "SignatureDoesNotMatch"
        recording = await http.get(f"{sandbox.url}/recordings/job-1.mkv?Expires=99999999999&Signature=%C3%A9")
        assert recording.status_code == 403
        rpc = await http.get(f"{sandbox.url}/?Action=GetResult&Version=2019-01-15&AccessKeyId={AK}&SignatureMethod=HMAC-SHA1&Timestamp=2026-01-01T00:00:00Z&Signature=%C3%A9")
        assert rpc.status_code == 400 and rpc.json()["Code"] in ("SignatureDoesNotMatch", "InvalidTimeStamp.Expired")


def _rpc_request(params: dict[str, str], headers: list[tuple[str, str]] | None = None) -> IncomingRequest:
    import base64
    import hashlib
    import hmac
    from urllib.parse import quote

    def enc(value: str) -> str:
        return quote(value, safe="~")

    signed = {"AccessKeyId": AK, "SignatureMethod": "HMAC-SHA1", "SignatureVersion": "1.0", "SignatureNonce": "n-" + str(len(params)), "Timestamp": "2026-11-20T00:00:00Z", **params}
    canonical = "&".join(f"{enc(k)}={enc(v)}" for k, v in sorted(signed.items()))
    to_sign = f"GET&%2F&{enc(canonical)}"
    signed["Signature"] = base64.b64encode(hmac.new((SK + "&").encode(), to_sign.encode(), hashlib.sha1).digest()).decode()
    return IncomingRequest("GET", "/", signed, headers or [], b"", {})


def test_rpc_action_comes_from_the_signed_parameters() -> None:
    from datetime import datetime, timezone

    now = datetime(2026, 11, 20, tzinfo=timezone.utc).timestamp()
    verifier = Verifier(AK, SK)
    caller = verifier.verify(_rpc_request({"Action": "GetResult", "Version": "2019-01-15"}, [("x-acs-action", "UploadAudioData")]), now)
    assert caller.action == "GetResult" and caller.version == "2019-01-15"
    from qcflow.tools.sandbox.errors import ApiFailure

    with pytest.raises(ApiFailure) as info:
        verifier.verify(_rpc_request({"Version": "2019-01-15"}, [("x-acs-action", "GetResult")]), now)
    assert info.value.code == "MissingParameter.Action"


def test_nonces_expire_in_arrival_order() -> None:
    verifier = Verifier(AK, SK, max_skew_seconds=10)
    for second in range(100):
        verifier._check_nonce(f"nonce-{second}", float(second))
    assert len(verifier._nonces) <= 11


async def test_lost_answer_then_retry_is_a_duplicate_flagged_uncertain() -> None:
    faults = FaultOptions(lost_answer_rate=1.0, actions=frozenset({"UploadAudioData"}))
    with running_sandbox(options(faults=faults)) as server:
        sca = sca_client(server, retry=RetryPolicy(max_attempts=3, backoff_initial_seconds=0.01, backoff_max_seconds=0.02))
        request = UploadAudioDataJson(call_list=[{"voice_file_url": "http://127.0.0.1/a.mkv", "call_id": "job-9", "call_uuid": "lost-1"}])
        with pytest.raises(DuplicateCallUuidError) as info:
            await sca.upload_audio_data(request)
        assert info.value.prior_attempt_uncertain and "may have been applied" in str(info.value)
        assert server.app.sca.task_count() == 1, "the first attempt was processed"
        page = await sca.get_result(GetResultQuery(call_id="job-9", required_fields="taskId,recording"))
        assert page.count == 1, "the recording can be found again by its callId"
        assert server.app.stats["UploadAudioData dropped"] == 1 and server.app.stats["UploadAudioData CallUuidRepeated"] == 1


async def test_a_lost_refusal_leaves_the_caller_without_an_answer() -> None:
    """``lost_refusal_rate``: a ``Success: false`` refusal (here ``CallUuidRepeated``) is answered,
    then the connection is closed; ``lost_answer_rate`` alone loses successes only (above)."""
    faults = FaultOptions(lost_refusal_rate=1.0, actions=frozenset({"UploadAudioData"}))
    with running_sandbox(options(faults=faults)) as server:
        sca = sca_client(server, retry=RetryPolicy(max_attempts=2, backoff_initial_seconds=0.01, backoff_max_seconds=0.02))
        request = UploadAudioDataJson(call_list=[{"voice_file_url": "http://127.0.0.1/a.mkv", "call_id": "job-9", "call_uuid": "lost-2"}])
        await sca.upload_audio_data(request)  # a success: its answer arrives
        with pytest.raises(TransportError) as info:
            await sca.upload_audio_data(request)
        assert info.value.prior_attempt_uncertain
        assert server.app.sca.task_count() == 1
        assert server.app.stats["UploadAudioData 200"] == 1 and server.app.stats["UploadAudioData dropped"] == 2


async def test_a_task_is_invisible_to_get_result_until_indexed() -> None:
    """``index_lag_seconds``: GetResult (by window, callId or taskId) misses a task until that
    long after its upload; its callUuid is refused as a repeat meanwhile."""
    clock = FakeClock()
    with running_sandbox(options(index_lag_seconds=60.0), clock) as server:
        sca = sca_client(server, clock=clock)
        request = UploadAudioDataJson(call_list=[{"voice_file_url": "http://127.0.0.1/a.mkv", "call_id": "job-9", "call_uuid": "lag-1"}])
        task_id = (await sca.upload_audio_data(request)).task_id
        queries = [GetResultQuery(call_id="job-9"), GetResultQuery(task_id=task_id)]
        for query in queries:
            assert (await sca.get_result(query)).count == 0
        with pytest.raises(DuplicateCallUuidError):
            await sca.upload_audio_data(request)
        clock.advance(59)
        assert (await sca.get_result(queries[0])).count == 0
        clock.advance(2)
        for query in queries:
            assert (await sca.get_result(query)).count == 1
        assert server.app.sca.task_count() == 1


async def test_a_plain_duplicate_is_not_flagged_uncertain(sandbox) -> None:
    sca = sca_client(sandbox)
    request = UploadAudioDataJson(call_list=[{"voice_file_url": "http://127.0.0.1/a.mkv", "call_uuid": "plain-dup"}])
    await sca.upload_audio_data(request)
    with pytest.raises(DuplicateCallUuidError) as info:
        await sca.upload_audio_data(request)
    assert not info.value.prior_attempt_uncertain and isinstance(info.value, RequestError)


async def test_json_str_travels_intact(sandbox) -> None:
    """Odd characters survive the trip: signed, sent, verified, parsed."""
    sca = sca_client(sandbox)
    call_id = "job-1 +%&=?#~*/张三\u2028😀"
    await sca.upload_audio_data(UploadAudioDataJson(call_list=[{"voice_file_url": "http://127.0.0.1/x.mkv", "call_id": call_id, "call_uuid": json.dumps(call_id)}]))
    page = await sca.get_result(GetResultQuery(call_id=call_id, required_fields="recording"))
    assert page.count == 1 and page.results[0].recording.id == call_id


async def test_a_request_that_cannot_be_sent_is_permanent_and_quotes_no_header(sandbox) -> None:
    """httpx refuses a header value with a newline; its message would quote the value."""
    client = sca_client(sandbox, retry=RetryPolicy(max_attempts=3))
    client.acs.user_agent = "qcflow\nSECRET-LOOKING-VALUE"
    before = sum(sandbox.app.stats.values())
    with pytest.raises(RequestError) as info:
        await client.get_result(GetResultQuery())
    assert "SECRET-LOOKING-VALUE" not in str(info.value) and not info.value.retryable
    assert sum(sandbox.app.stats.values()) == before, "nothing was sent, nothing retried"
