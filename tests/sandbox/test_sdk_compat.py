"""The official SDKs, pointed at the sandbox, get correct answers — field for field."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from alibabacloud_ccc20200701 import models as ccc_models
from alibabacloud_qualitycheck20190115 import models as sca_models
from alibabacloud_tea_openapi import utils_models

from qcflow.models.ccc import GetUploadAudioDataParamsResponse
from qcflow.models.sca_result import GetResultResponse
from qcflow.tools.sandbox.options import DEFAULT_ACCESS_KEY_ID as AK
from qcflow.tools.sandbox.options import DEFAULT_ACCESS_KEY_SECRET as SK
from tests.sandbox.conftest import CREDS, FakeClock, ccc_client, running_sandbox, sca_client
from tests.support.sdk_oracle import ccc_sdk, sca_sdk

ALL_FIELDS = (
    "taskId,status,score,errorMessage,createTime,createTimeLong,taskName,vid,recording,asrResult,hitResult,hitScore,agent,"
    "schemeIdList,schemeNameList,reviewStatus,reviewResult,comments,reviewer,resolver"
)


def raw_call(server, action: str, version: str, query: dict, method: str = "POST") -> dict:
    from qcflow.acs.client import AcsClient

    client = AcsClient(server.url, version, lambda: CREDS)
    request = client.build_request(action, query, method=method)
    with httpx.Client() as http:
        return http.send(request).json()


def without_request_id(body: dict) -> dict:
    return {k: v for k, v in body.items() if k != "RequestId"}


def test_sdk_ccc_get_upload_audio_data_params() -> None:
    # a still clock: both calls below get the same voiceFileUrl Expires
    with running_sandbox(clock=FakeClock()) as sandbox:
        _check_sdk_ccc(sandbox)


def _check_sdk_ccc(sandbox) -> None:
    sdk = ccc_sdk(sandbox.endpoint, AK, SK, protocol="http")
    answer = sdk.get_upload_audio_data_params(ccc_models.GetUploadAudioDataParamsRequest(contact_id="job-38860977107324", instance_id="ccc-test"))
    assert answer.status_code == 200 and answer.body.code == "OK" and answer.body.http_status_code == 200
    assert answer.body.request_id
    params = json.loads(answer.body.data.params_str)
    call = params["callList"][0]
    assert call["callId"] == "job-38860977107324" and call["instance"] == "ccc-test"
    assert call["voiceFileUrl"].startswith(sandbox.url + "/recordings/job-38860977107324.mkv?Expires=")
    # every field the sandbox sends is one the SDK's model knows, with the same value
    raw = raw_call(sandbox, "GetUploadAudioDataParams", "2020-07-01", {"ContactId": "job-38860977107324", "InstanceId": "ccc-test"}, "GET")
    assert without_request_id(answer.body.to_map()) == without_request_id(raw)
    GetUploadAudioDataParamsResponse.model_validate(answer.body.to_map())
    # and the voiceFileUrl really serves the recording
    assert httpx.get(call["voiceFileUrl"]).status_code == 200


def test_sdk_upload_then_get_result_through_the_task_lifecycle(sandbox) -> None:
    sdk = sca_sdk(sandbox.endpoint, AK, SK, protocol="http")
    json_str = json.dumps(
        {"autoSplit": 1, "sampleRate": 8, "callList": [{"voiceFileUrl": "http://127.0.0.1/a.mkv", "callId": "job-1001", "fileName": "job-1001.mkv", "callUuid": "sdk-uuid-1", "callStartTime": 1704870035381}]}
    )
    uploaded = sdk.upload_audio_data(sca_models.UploadAudioDataRequest(json_str=json_str))
    body = uploaded.body
    assert body.success is True and body.code == "200" and body.data and body.request_id
    query = json.dumps({"taskId": body.data, "requiredFields": ALL_FIELDS})
    first = sdk.get_result(sca_models.GetResultRequest(json_str=query)).body
    assert first.success and first.count == 1 and first.data.result_info[0].status == 0
    assert first.data.result_info[0].recording.id == "job-1001"
    deadline = time.monotonic() + 5
    while True:
        done = sdk.get_result(sca_models.GetResultRequest(json_str=query)).body
        if done.data.result_info[0].status == 1 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    info = done.data.result_info[0]
    assert info.status == 1 and info.task_id == body.data and isinstance(info.score, int)
    assert info.asr_result.asr_result[0].words and info.agent.name
    assert info.recording.name == "job-1001.mkv"


def test_sdk_sees_every_field_the_sandbox_sends(sandbox) -> None:
    sdk = sca_sdk(sandbox.endpoint, AK, SK, protocol="http")
    query = {"pageSize": 20, "pageNumber": 3, "requiredFields": ALL_FIELDS, "startTime": "2026-11-19 15:00:00", "endTime": "2026-11-19 23:59:59"}
    answer = sdk.get_result(sca_models.GetResultRequest(json_str=json.dumps(query))).body
    raw = raw_call(sandbox, "GetResult", "2019-01-15", {"JsonStr": json.dumps(query)})
    # to_map() rebuilds only what the SDK's models know: equality means no field is unknown or misnamed
    assert without_request_id(answer.to_map()) == without_request_id(raw)
    assert answer.count > 0 and len(answer.data.result_info) == 20
    hits = [h for item in answer.data.result_info for h in (item.hit_result.hit_result if item.hit_result else [])]
    assert hits and hits[0].hits.hit[0].key_words.key_word[0].val
    page = GetResultResponse.model_validate(raw)
    assert len(page.results) == 20 and page.results[0].recording.id.startswith("job-")


@pytest.mark.parametrize("token", [None, "STS.sandbox-token"])
def test_sdk_credentials_with_and_without_sts(sandbox, token) -> None:
    sdk = sca_sdk(sandbox.endpoint, AK, SK, token, protocol="http")
    assert sdk.get_result(sca_models.GetResultRequest(json_str='{"pageSize": 1}')).body.success


def test_sdk_legacy_rpc_signature(sandbox) -> None:
    """Older callers send Action=… with an HMAC-SHA1 signature in the query."""
    from alibabacloud_qualitycheck20190115.client import Client

    config = utils_models.Config(access_key_id=AK, access_key_secret=SK, endpoint=sandbox.endpoint, protocol="http", signature_algorithm="v2")
    answer = Client(config).get_result(sca_models.GetResultRequest(json_str='{"pageSize": 2}'))
    assert answer.body.success and len(answer.body.data.result_info) == 2


@pytest.mark.parametrize("api", ["ccc", "upload", "get_result"])
def test_sdk_wrong_secret_gets_signature_does_not_match(sandbox, api) -> None:
    call = {
        "ccc": lambda: ccc_sdk(sandbox.endpoint, AK, "wrong-secret", protocol="http").get_upload_audio_data_params(
            ccc_models.GetUploadAudioDataParamsRequest(contact_id="job-1")
        ),
        "upload": lambda: sca_sdk(sandbox.endpoint, AK, "wrong-secret", protocol="http").upload_audio_data(
            sca_models.UploadAudioDataRequest(json_str='{"callList":[{"voiceFileUrl":"http://a/b.mkv"}]}')
        ),
        "get_result": lambda: sca_sdk(sandbox.endpoint, AK, "wrong-secret", protocol="http").get_result(sca_models.GetResultRequest(json_str="{}")),
    }[api]
    with pytest.raises(Exception) as info:
        call()
    assert getattr(info.value, "code", None) == "SignatureDoesNotMatch"
    assert getattr(info.value, "status_code", None) == 400


def test_sdk_unknown_access_key(sandbox) -> None:
    with pytest.raises(Exception) as info:
        sca_sdk(sandbox.endpoint, "not-a-known-key", SK, protocol="http").get_result(sca_models.GetResultRequest(json_str="{}"))
    assert getattr(info.value, "code", None) == "InvalidAccessKeyId.NotFound"


@pytest.mark.anyio
async def test_qcflow_clients_against_the_sandbox(sandbox) -> None:
    from qcflow.models.sca import GetResultQuery, UploadAudioDataJson

    ccc = ccc_client(sandbox)
    params = (await ccc.get_upload_audio_data_params("job-77")).params
    call = params.call_list[0]
    sca = sca_client(sandbox)
    upload = UploadAudioDataJson(
        call_list=[{"voice_file_url": call.voice_file_url, "call_id": call.call_id, "call_uuid": "qcflow-77", "file_name": "job-77.mkv"}],
        auto_split=params.auto_split,
        sample_rate=params.sample_rate,
    )
    task_id = (await sca.upload_audio_data(upload)).task_id
    page = await sca.get_result(GetResultQuery(task_id=task_id, required_fields="taskId,status,recording"))
    assert page.count == 1 and page.results[0].recording.id == "job-77"
    await ccc.aclose()
    await sca.aclose()
