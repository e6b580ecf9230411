"""UploadAudioData is not idempotent: a retry after a lost answer must never create a second task
silently. Scripted answers (httpx.MockTransport) pin each rule; the sandbox, alone or behind a
lossy "gateway" transport, shows the whole story end to end."""

from __future__ import annotations

import httpx
import pytest

from qcflow.acs.client import AcsClient, RetryPolicy
from qcflow.config import load_settings
from qcflow.credentials import Credentials
from qcflow.errors import RequestError, ServiceUnavailableError, TransportError
from qcflow.models.sca import GetResultQuery, UploadAudioDataJson
from qcflow.tools.sandbox.options import FaultOptions
from qcflow.sca import DuplicateCallUuidError, ScaClient, UploadReceipt
from tests.sandbox.conftest import CREDS as SANDBOX_CREDS
from tests.sandbox.conftest import options, running_sandbox, sca_client
from tests.test_acs_client import FAST, Script, error

pytestmark = pytest.mark.anyio
CREDS = Credentials("AKID", "SECRET", None)
ACCEPTED = httpx.Response(200, json={"Success": True, "Code": "200", "Message": "successful", "RequestId": "R-OK", "Data": "TASK-1"})
REFUSED = httpx.Response(200, json={"Success": False, "Code": "InvalidParameter", "Message": "bad sampleRate", "RequestId": "R-NO"})
REPEATED = httpx.Response(200, json={"Success": False, "Code": "CallUuidRepeated", "Message": "callUuid u-1 was uploaded", "RequestId": "R-DUP"})


def sca(script: Script, **kwargs: object) -> ScaClient:
    acs = AcsClient("qualitycheck.cn-hangzhou.aliyuncs.com", "2019-01-15", lambda: CREDS, retry=FAST, transport=httpx.MockTransport(script))
    return ScaClient(acs, **kwargs)  # type: ignore[arg-type]


def upload(*uuids: str | None, call_id: str = "job-1") -> UploadAudioDataJson:
    calls = [{"voice_file_url": f"http://127.0.0.1/{n}.mkv", "call_id": call_id, "call_uuid": uuid} for n, uuid in enumerate(uuids or ("u-1",))]
    return UploadAudioDataJson(call_list=calls)


# ---------------------------------------------------------------- refusing to send


@pytest.mark.parametrize("uuids", [(None,), ("u-1", None), ("u-1", "  "), ("",)])
async def test_a_recording_without_call_uuid_is_refused_before_anything_is_sent(uuids: tuple[str | None, ...]) -> None:
    script = Script(ACCEPTED)
    with pytest.raises(RequestError) as info:
        await sca(script).upload_audio_data(upload(*uuids))
    assert info.value.code == "MissingCallUuid" and info.value.action == "UploadAudioData" and not info.value.retryable
    assert script.requests == [], "nothing was sent"


# ---------------------------------------------------------------- may an earlier attempt have landed?

LOST = {  # the first attempt's fate → may it have been applied?
    "504 gateway page": (httpx.Response(504, text="<html>504 Gateway Time-out</html>"), True),
    "502 JSON without Code": (httpx.Response(502, json={"message": "upstream reset"}), True),
    "500 empty": (httpx.Response(500, content=b""), True),
    "cut 200": (httpx.Response(200, content=b'{"RequestId":"R-CUT","Success":tr'), True),
    "garbled 200": (httpx.Response(200, text="<html>ok</html>"), True),
    "read timeout": (httpx.ReadTimeout("slow"), True),
    "connection dropped mid-answer": (httpx.RemoteProtocolError("peer closed connection"), True),
    "503 ServiceUnavailable": (error(503, "ServiceUnavailable"), False),
    "500 InternalError": (error(500, "InternalError"), False),
    "200 Success:false InternalError": (httpx.Response(200, json={"Success": False, "Code": "InternalError", "Message": "x"}), False),
    "400 Throttling.User": (error(400, "Throttling.User"), False),
    "503 Throttling.User": (error(503, "Throttling.User"), False),
    "connect error": (httpx.ConnectError("refused"), False),
    "connect timeout": (httpx.ConnectTimeout("slow connect"), False),
}


@pytest.mark.parametrize("case", LOST)
async def test_uncertainty_is_reported_on_a_later_success(case: str) -> None:
    first, uncertain = LOST[case]
    receipt = await sca(Script(first, ACCEPTED)).upload_audio_data(upload())
    assert receipt == UploadReceipt(task_id="TASK-1", request_id="R-OK", attempts=2, prior_attempt_uncertain=uncertain)


@pytest.mark.parametrize("case", LOST)
async def test_uncertainty_is_reported_on_a_later_failure(case: str) -> None:
    first, uncertain = LOST[case]
    with pytest.raises(RequestError) as info:
        await sca(Script(first, REFUSED)).upload_audio_data(upload())
    assert info.value.code == "InvalidParameter" and info.value.attempts == 2
    assert info.value.prior_attempt_uncertain is uncertain
    assert ("may have been applied" in str(info.value)) is uncertain


@pytest.mark.parametrize("case", LOST)
async def test_uncertainty_is_reported_on_a_later_duplicate(case: str) -> None:
    first, uncertain = LOST[case]
    with pytest.raises(DuplicateCallUuidError) as info:
        await sca(Script(first, REPEATED)).upload_audio_data(upload())
    assert info.value.attempts == 2 and info.value.prior_attempt_uncertain is uncertain and info.value.request_id == "R-DUP"


async def test_uncertainty_sticks_once_raised_and_is_reported_when_retries_run_out() -> None:
    script = Script(httpx.Response(504, text="gateway"), error(503, "ServiceUnavailable"), ACCEPTED)
    assert (await sca(script).upload_audio_data(upload())).prior_attempt_uncertain
    with pytest.raises(ServiceUnavailableError) as info:
        await sca(Script(httpx.Response(502, text="bad gateway"), error(503, "ServiceUnavailable"))).upload_audio_data(upload())
    assert info.value.prior_attempt_uncertain and info.value.attempts == FAST.max_attempts
    with pytest.raises(TransportError) as transport:
        await sca(Script(httpx.ConnectError("refused"))).upload_audio_data(upload())
    assert not transport.value.prior_attempt_uncertain and transport.value.attempts == FAST.max_attempts


async def test_success_without_a_task_id_may_have_landed() -> None:
    blank = httpx.Response(200, json={"Success": True, "Code": "200", "RequestId": "R-B", "Data": ""})
    with pytest.raises(ServiceUnavailableError) as info:
        await sca(Script(blank)).upload_audio_data(upload())
    assert info.value.prior_attempt_uncertain and info.value.attempts == 1 and info.value.request_id == "R-B"


# ---------------------------------------------------------------- knowing a duplicate


@pytest.mark.parametrize(
    ("status", "code", "message"),
    [
        (200, "CallUuidRepeated", "anything"),
        (200, "QualityCheck.Failed", "callUuid u-1 has already been uploaded"),
        (200, "InvalidParameter", "Duplicate call_uuid: u-1"),
        (400, "InvalidParameter.CallUuid", "call uuid already exists"),
        (200, "Failed", "callUuid重复"),
        (500, "SomethingElse", "the callUuid was repeated"),
    ],
)
async def test_a_repeated_call_uuid_is_known_by_its_code_or_its_message(status: int, code: str, message: str) -> None:
    answer = httpx.Response(status, json={"Success": False, "Code": code, "Message": message, "RequestId": "R-D"})
    with pytest.raises(DuplicateCallUuidError) as info:
        await sca(Script(answer)).upload_audio_data(upload())
    assert info.value.code == code and info.value.attempts == 1 and not info.value.prior_attempt_uncertain


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (200, {"Success": False, "Code": "InvalidParameter", "Message": "callUuid is required; file already uploaded"}),
        (200, {"Success": False, "Code": "InvalidParameter", "Message": "callUuid does not exist"}),
        (200, {"Success": False, "Code": "InvalidParameter", "Message": "voiceFileUrl already expired"}),
    ],
)
async def test_other_refusals_are_not_taken_for_a_duplicate(status: int, body: dict) -> None:
    with pytest.raises(RequestError) as info:
        await sca(Script(httpx.Response(status, json=body))).upload_audio_data(upload())
    assert type(info.value) is RequestError


async def test_a_gateway_page_mentioning_call_uuid_is_not_a_duplicate() -> None:
    page = httpx.Response(502, text="<html>callUuid already seen upstream</html>")  # no service Code: not the service's refusal
    with pytest.raises(ServiceUnavailableError):
        await sca(Script(page)).upload_audio_data(upload())


async def test_duplicate_codes_are_configurable() -> None:
    custom = httpx.Response(200, json={"Success": False, "Code": "Upload.DuplicateKey", "Message": "refused"})
    with pytest.raises(DuplicateCallUuidError):
        await sca(Script(custom), duplicate_call_uuid_codes="Other, Upload.DuplicateKey").upload_audio_data(upload())
    with pytest.raises(DuplicateCallUuidError):
        await sca(Script(custom), duplicate_call_uuid_codes=["Upload.DuplicateKey"]).upload_audio_data(upload())
    with pytest.raises(RequestError) as info:
        await sca(Script(custom)).upload_audio_data(upload())  # not a default code, no telling message
    assert type(info.value) is RequestError
    settings = load_settings({"QCFLOW_SCA_DUPLICATE_CALL_UUID_CODES": "X.Dup, Upload.DuplicateKey"})
    client = ScaClient.from_settings(settings, lambda: CREDS, transport=httpx.MockTransport(Script(custom)))
    assert client.duplicate_call_uuid_codes == frozenset({"X.Dup", "Upload.DuplicateKey"})
    with pytest.raises(DuplicateCallUuidError):
        await client.upload_audio_data(upload())
    await client.aclose()


# ---------------------------------------------------------------- against the sandbox


async def _tasks_for(client: ScaClient, call_id: str) -> int:
    page = await client.get_result_page(GetResultQuery(call_id=call_id, required_fields="taskId,recording", page_size=99))
    assert page.count == len(page.items)
    return len(page.items)


async def test_retry_after_a_lost_answer_is_refused_as_a_duplicate_and_one_task_exists() -> None:
    faults = FaultOptions(lost_answer_rate=1.0, actions=frozenset({"UploadAudioData"}), seed=5)
    with running_sandbox(options(faults=faults)) as server:
        client = sca_client(server, retry=RetryPolicy(max_attempts=3, backoff_initial_seconds=0.01, backoff_max_seconds=0.02))
        with pytest.raises(DuplicateCallUuidError) as info:
            await client.upload_audio_data(upload("lost-1", call_id="job-lost-1"))
        assert info.value.prior_attempt_uncertain and info.value.attempts == 2
        assert await _tasks_for(client, "job-lost-1") == 1


async def test_under_random_lost_answers_every_recording_yields_exactly_one_task() -> None:
    faults = FaultOptions(lost_answer_rate=0.5, actions=frozenset({"UploadAudioData"}), seed=11)
    with running_sandbox(options(faults=faults)) as server:
        client = sca_client(server, retry=RetryPolicy(max_attempts=4, backoff_initial_seconds=0.005, backoff_max_seconds=0.01))
        outcomes = []
        for n in range(16):
            try:
                receipt = await client.upload_audio_data(upload(f"rand-{n}", call_id=f"job-rand-{n}"))
                outcomes.append(("task", receipt.prior_attempt_uncertain, receipt.attempts))
            except DuplicateCallUuidError as exc:  # the first answer was lost, the retry refused
                outcomes.append(("duplicate", exc.prior_attempt_uncertain, exc.attempts))
        assert {kind for kind, _, _ in outcomes} == {"task", "duplicate"}, outcomes
        for kind, uncertain, attempts in outcomes:
            assert (uncertain, attempts) == ((False, 1) if kind == "task" else (True, 2)), outcomes
        for n in range(16):
            assert await _tasks_for(client, f"job-rand-{n}") == 1, n
        assert server.app.sca.task_count() == 16


class LossyGateway(httpx.AsyncBaseTransport):
    """A gateway in front of the sandbox: every request really reaches the sandbox (and is
    processed), but the first answers are replaced by what a failing gateway sends back."""

    def __init__(self, *faults: httpx.Response | Exception) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.faults = list(faults)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        content = await response.aread()
        await response.aclose()
        if self.faults:
            fault = self.faults.pop(0)
            if isinstance(fault, Exception):
                raise fault
            return fault
        return httpx.Response(response.status_code, headers=response.headers, content=content)

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.mark.parametrize(
    "fault",
    [
        httpx.ReadTimeout("no answer"),
        httpx.Response(504, text="<html>504 Gateway Time-out</html>"),
        httpx.Response(502, json={"message": "bad gateway"}),
        httpx.Response(200, content=b'{"RequestId":"X","Success":true,"Da'),
    ],
    ids=["read timeout", "504", "502 JSON", "cut 200"],
)
async def test_an_answer_lost_after_sending_then_a_retry_leaves_one_task(fault: httpx.Response | Exception) -> None:
    with running_sandbox() as server:
        gateway = LossyGateway(fault)
        acs = AcsClient(server.url, "2019-01-15", lambda: SANDBOX_CREDS, transport=gateway,
                        retry=RetryPolicy(max_attempts=3, backoff_initial_seconds=0.01, backoff_max_seconds=0.02))
        client = ScaClient(acs)
        with pytest.raises(DuplicateCallUuidError) as info:
            await client.upload_audio_data(upload("gw-1", call_id="job-gw-1"))
        assert info.value.prior_attempt_uncertain and info.value.attempts == 2
        assert await _tasks_for(client, "job-gw-1") == 1
        assert server.app.stats["UploadAudioData 200"] == 1 and server.app.stats["UploadAudioData CallUuidRepeated"] == 1
        await client.aclose()

