"""Client behaviour through a real httpx transport: retries, classification, request ids."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from qcflow.acs.client import AcsClient, RetryPolicy
from qcflow.acs.limits import rate_limiter
from qcflow.ccc import CccClient
from qcflow.credentials import Credentials
from qcflow.errors import AuthError, NotFoundError, RequestError, ServiceUnavailableError, ThrottledError, TransportError
from qcflow.models.sca import GetResultQuery, UploadAudioDataJson
from qcflow.sca import ScaClient, UploadReceipt
from tests.conftest import load_fixture

pytestmark = pytest.mark.anyio
FAST = RetryPolicy(max_attempts=4, backoff_initial_seconds=0.001, backoff_max_seconds=0.005,
                   throttle_backoff_initial_seconds=0.001, throttle_backoff_max_seconds=0.005)
CREDS = Credentials("AKID", "SECRET", None)


def error(status: int, code: str, request_id: str = "REQ-1") -> httpx.Response:
    return httpx.Response(status, json={"RequestId": request_id, "Code": code, "Message": f"{code} happened", "HostId": "h"})


class Hooks:
    """A limiter with the adaptive hooks: records what the client told it."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *exc: object) -> None:
        return None

    def on_throttled(self) -> None:
        self.calls.append("on_throttled")

    def on_success(self) -> None:
        self.calls.append("on_success")


class Script:
    """Answers in turn; records every request it saw."""

    def __init__(self, *answers: httpx.Response | Exception) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer


def sca(script: Script, policy: RetryPolicy = FAST) -> ScaClient:
    acs = AcsClient("qualitycheck.cn-hangzhou.aliyuncs.com", "2019-01-15", lambda: CREDS, retry=policy, transport=httpx.MockTransport(script))
    return ScaClient(acs, base_me_agent_id=7)


OK_PAGE = httpx.Response(200, json=load_fixture("sca_get_result_seed.json"))


async def test_retries_throttling_then_succeeds() -> None:
    script = Script(error(400, "Throttling.User"), error(503, "ServiceUnavailable"), OK_PAGE)
    page = await sca(script).get_result(GetResultQuery(page_size=99))
    assert len(page.results) == 1 and len(script.requests) == 3
    nonces = {r.headers["x-acs-signature-nonce"] for r in script.requests}
    assert len(nonces) == 3, "every attempt is signed afresh"


async def test_gives_up_after_max_attempts_with_the_last_error() -> None:
    # (throttling is not bounded by max_attempts but by the deadline: see test_acs_deadline.py)
    script = Script(error(503, "ServiceUnavailable", "REQ-T"))
    with pytest.raises(ServiceUnavailableError) as info:
        await sca(script).get_result(GetResultQuery())
    assert len(script.requests) == FAST.max_attempts == info.value.attempts
    assert info.value.code == "ServiceUnavailable" and info.value.request_id == "REQ-T" and info.value.retryable
    assert not info.value.deadline_reached and "deadline" not in str(info.value)


@pytest.mark.parametrize(
    ("status", "code", "cls"),
    [
        (400, "SignatureDoesNotMatch", AuthError),
        (404, "InvalidAccessKeyId.NotFound", AuthError),
        (403, "Forbidden.RAM", AuthError),
        (400, "InvalidTimeStamp.Expired", AuthError),
        (400, "InvalidParameter", RequestError),
        (404, "ContactNotFound", NotFoundError),
    ],
)
async def test_permanent_errors_are_not_retried(status: int, code: str, cls: type) -> None:
    script = Script(error(status, code, "REQ-P"))
    with pytest.raises(cls) as info:
        await sca(script).get_result(GetResultQuery())
    assert len(script.requests) == 1
    assert info.value.code == code and info.value.request_id == "REQ-P" and not info.value.retryable
    assert "REQ-P" in str(info.value) and "SECRET" not in str(info.value)


async def test_decision_is_on_code_not_status() -> None:
    # throttling sent as 400, as 503 and as 200/Success:false is throttling: retried even with
    # max_attempts=1 (throttling is bounded by the deadline only) and reported to the limiter
    once = RetryPolicy(max_attempts=1, throttle_backoff_initial_seconds=0.001, throttle_backoff_max_seconds=0.002)
    for refusal in (
        error(400, "Throttling.User"),
        error(503, "Throttling.User"),
        httpx.Response(200, json={"Success": False, "Code": "Throttling.Api", "Message": "slow down", "RequestId": "R1"}),
    ):
        script = Script(refusal, OK_PAGE)
        limiter = Hooks()
        await sca(script, once).get_result(GetResultQuery(), limiter=limiter)
        assert len(script.requests) == 2 and limiter.calls == ["on_throttled", "on_success"], refusal.status_code
    with pytest.raises(ThrottledError) as info:
        await sca(Script(error(503, "Throttling.User")), RetryPolicy(max_attempts=1, deadline_seconds=0.05, throttle_backoff_initial_seconds=0.01)).get_result(GetResultQuery())
    assert info.value.http_status == 503 and info.value.code == "Throttling.User" and not info.value.prior_attempt_uncertain
    script = Script(error(500, "InvalidJsonStr"))
    with pytest.raises(RequestError):
        await sca(script).get_result(GetResultQuery())
    assert len(script.requests) == 1


async def test_success_false_is_a_typed_error_with_code_and_request_id() -> None:
    script = Script(httpx.Response(200, json={"Success": False, "Code": "QualityCheckError", "Message": "bad jsonStr", "RequestId": "R-9"}))
    with pytest.raises(RequestError) as info:
        await sca(script).upload_audio_data(UploadAudioDataJson(call_list=[{"voice_file_url": "https://a/b.mkv", "call_uuid": "u-9"}]))
    assert info.value.code == "QualityCheckError" and info.value.request_id == "R-9" and info.value.http_status == 200
    assert info.value.action == "UploadAudioData" and info.value.attempts == 1 and not info.value.prior_attempt_uncertain


async def test_transport_errors_and_5xx_without_code_are_retried() -> None:
    script = Script(httpx.ConnectError("refused"), httpx.ReadTimeout("slow"), httpx.Response(502, text="<html>bad gateway</html>"), OK_PAGE)
    await sca(script).get_result(GetResultQuery())
    assert len(script.requests) == 4
    script = Script(httpx.RemoteProtocolError("peer closed connection"))
    with pytest.raises(TransportError):
        await sca(script).get_result(GetResultQuery())
    script = Script(httpx.Response(502, text="<html>bad gateway</html>"))
    with pytest.raises(ServiceUnavailableError):
        await sca(script).get_result(GetResultQuery())


async def test_upload_sends_json_str_and_returns_task_id() -> None:
    script = Script(httpx.Response(200, json={"Success": True, "Code": "200", "Message": "successful", "RequestId": "R", "Data": "TASK-1"}))
    request = UploadAudioDataJson(call_list=[{"voice_file_url": "https://a/b c.mkv", "call_id": "job-1", "call_uuid": "u1"}], auto_split=1)
    receipt = await sca(script).upload_audio_data(request)
    assert receipt == UploadReceipt(task_id="TASK-1", request_id="R", attempts=1, prior_attempt_uncertain=False)
    sent = script.requests[0]
    assert sent.method == "POST" and sent.content == b"" and sent.headers["content-length"] == "0"
    assert json.loads(sent.url.params["JsonStr"]) == request.to_wire()
    assert sent.url.params["BaseMeAgentId"] == "7"
    assert sent.headers["x-acs-action"] == "UploadAudioData" and sent.headers["x-acs-version"] == "2019-01-15"


async def test_sts_token_is_sent_and_signed() -> None:
    script = Script(OK_PAGE)
    acs = AcsClient("qualitycheck.cn-hangzhou.aliyuncs.com", "2019-01-15", lambda: Credentials("STS.AK", "S", "TOKEN"), transport=httpx.MockTransport(script))
    await ScaClient(acs).get_result(GetResultQuery())
    sent = script.requests[0]
    assert sent.headers["x-acs-security-token"] == "TOKEN" and sent.headers["x-acs-accesskey-id"] == "STS.AK"
    assert "x-acs-security-token" in sent.headers["Authorization"]


async def test_ccc_client_parses_params_and_rejects_bad_params_str() -> None:
    body = load_fixture("ccc_get_upload_audio_data_params_seed.json")
    script = Script(httpx.Response(200, json=body))
    acs = AcsClient("ccc.cn-shanghai.aliyuncs.com", "2020-07-01", lambda: CREDS, retry=FAST, transport=httpx.MockTransport(script))
    ccc = CccClient(acs, instance_id="ccc-demo")
    answer = await ccc.get_upload_audio_data_params("job-466861394358431234")
    assert answer.params.call_list[0].call_id == "job-466861394358431234"
    sent = script.requests[0]
    assert sent.method == "GET" and sent.url.params["ContactId"] == "job-466861394358431234" and sent.url.params["InstanceId"] == "ccc-demo"
    bad = dict(body, Data={"ParamsStr": '{"appKey": ****}'})
    ccc = CccClient(AcsClient("ccc.cn-shanghai.aliyuncs.com", "2020-07-01", lambda: CREDS, retry=FAST, transport=httpx.MockTransport(Script(httpx.Response(200, json=bad)))))
    with pytest.raises(RequestError) as info:
        await ccc.get_upload_audio_data_params("job-1")
    assert info.value.code == "InvalidParamsStr" and info.value.request_id == body["RequestId"]
    # HTTP 200 with a Code other than OK is a failure too
    ccc = CccClient(AcsClient("ccc.cn-shanghai.aliyuncs.com", "2020-07-01", lambda: CREDS, retry=FAST, transport=httpx.MockTransport(Script(httpx.Response(200, json={"Code": "NotExists.ContactId", "HttpStatusCode": 404, "Message": "no", "RequestId": "Q"})))))
    with pytest.raises(NotFoundError):
        await ccc.get_upload_audio_data_params("job-2")


async def test_shared_rate_limiter_paces_concurrent_callers() -> None:
    script = Script(OK_PAGE)
    limiter = rate_limiter(20)
    client = sca(script)
    client.get_result_limiter = limiter
    loop = asyncio.get_running_loop()
    start = loop.time()
    await asyncio.gather(*(client.get_result(GetResultQuery()) for _ in range(50)))
    elapsed = loop.time() - start
    # 20 burst then 20/s: 50 calls need at least ~1.5 s; a broken limiter finishes at once
    assert elapsed >= 1.2 and len(script.requests) == 50


@pytest.mark.parametrize(
    ("response", "cls"),
    [
        (httpx.Response(429, text="Too Many Requests"), ThrottledError),
        (httpx.Response(408, text="timeout"), ServiceUnavailableError),
        (httpx.Response(500, json={"Code": "UnknownError", "Message": "x", "RequestId": "R"}), ServiceUnavailableError),
        (httpx.Response(200, json={"Success": False, "Code": "500", "Message": "x", "RequestId": "R"}), ServiceUnavailableError),
        (httpx.Response(302, headers={"location": "https://elsewhere"}, text=""), RequestError),
    ],
)
async def test_classification_without_a_usual_code(response: httpx.Response, cls: type) -> None:
    with pytest.raises(cls):
        # (a 429 is throttling: retried until the deadline, so the deadline is short)
        await sca(Script(response), RetryPolicy(max_attempts=1, deadline_seconds=0.05, throttle_backoff_initial_seconds=0.01)).get_result(GetResultQuery())



async def test_a_cut_answer_quoted_in_the_error_holds_no_personal_number() -> None:
    """Issue 24: a GetResult answer cut short is quoted (200 characters) in the error message, and
    those hold transcripts: the personal numbers in the quote are masked."""
    cut = httpx.Response(200, content='{"Data":{"ResultInfo":[{"AsrResult":[{"Words":"我的手机号是13912345678'.encode())
    with pytest.raises(ServiceUnavailableError) as info:
        await sca(Script(cut), RetryPolicy(max_attempts=1)).get_result(GetResultQuery())
    assert "13912345678" not in str(info.value) and "***********" in str(info.value)
