"""The seed pages' examples parse into the models and round-trip; requests serialize as sent."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from qcflow.models import tea
from qcflow.models.ccc import GetUploadAudioDataParamsResponse
from qcflow.models.events import InvalidEventError, parse_oss_event, parse_timer_event
from qcflow.models.sca import GetResultQuery, UploadAudioDataJson, UploadAudioDataResponse
from qcflow.models.sca_result import GetResultResponse
from tests.conftest import load_fixture


def test_ccc_seed_parses_params_str_and_round_trips() -> None:
    body = load_fixture("ccc_get_upload_audio_data_params_seed.json")
    parsed = GetUploadAudioDataParamsResponse.model_validate(body)
    assert parsed.code == "OK" and parsed.http_status_code == 200
    assert parsed.request_id == "03C67DAD-EB26-41D8-949D-9B0C470FB716"
    params = parsed.params
    assert params.auto_split == 1 and params.sample_rate == 8 and params.app_key == "zM3pQ7vX9aL2"
    call = params.call_list[0]
    assert call.call_id == "job-466861394358431234"
    assert call.valid_times[0].end_time == 30720 and call.valid_times[0].speaker_id == "张伟"
    assert call.channels[0].channel_key.startswith("ch-user-")
    assert call.skill_group_uuid == "skg-default@ccc-demo" and call.acc_uid == 1051234567
    assert call.voice_file_url.startswith("https://") and "Expires=" in call.voice_file_url
    assert call.customer_service_id == 2032428021234 and call.call_type == 1
    # the envelope round-trips exactly; ParamsStr round-trips as data
    assert parsed.to_wire() == body
    assert params.to_wire() == json.loads(body["Data"]["ParamsStr"])


def test_ccc_params_keep_unknown_fields() -> None:
    body = load_fixture("ccc_get_upload_audio_data_params_seed.json")
    inner = json.loads(body["Data"]["ParamsStr"])
    inner["newTopLevel"] = {"x": 1}
    inner["callList"][0]["brandNewField"] = "kept"
    body["Data"]["ParamsStr"] = json.dumps(inner)
    params = GetUploadAudioDataParamsResponse.model_validate(body).params
    assert params.to_wire()["newTopLevel"] == {"x": 1}
    assert params.call_list[0].to_wire()["brandNewField"] == "kept"


@pytest.mark.parametrize("bad", ['{"autoSplit": ****}', "[1, 2]", ""])
def test_ccc_invalid_params_str_is_rejected(bad: str) -> None:
    with pytest.raises(ValidationError, match="ParamsStr"):
        GetUploadAudioDataParamsResponse.model_validate({"Code": "OK", "Data": {"ParamsStr": bad}})


def test_sca_get_result_seed_unwraps_and_round_trips() -> None:
    body = load_fixture("sca_get_result_seed.json")
    page = GetResultResponse.model_validate(body)
    assert page.success is True and page.code == "200" and page.count == 1 and page.page_size == 10
    (item,) = page.results
    assert item.task_id == "A6BEC8D-9A5B-4BE5-8432-4F635E***" and item.status == 0 and item.running
    assert item.asr_result[0].words == "xx" and item.asr_result[0].role == "客户"
    rule = item.hit_result[0]
    assert rule.name == "20190417回归3" and rule.rid == "1276"
    hit = rule.hits[0]
    assert hit.key_words[0].val == "test" and hit.key_words[0].cid == "xxxx"
    assert hit.cid == ["xxxx"]  # the wrapped list form of Cid ...
    assert rule.conditions[0]["Cid"] == "a"  # ... and the plain string form, untouched
    operator = rule.conditions[0]["Operators"][0]
    assert operator["Param"]["Keywords"] == ["你好"] and operator["Param"]["Excludes"] == ["你好"]
    assert operator["Param"]["IntentModelCheckParm"]["Intents"][0]["Name"] == "fvt-eci-copy-5c703091"
    assert item.hit_score[0].score_number == "-20"
    assert item.recording.id == "6fa76916-3ce6-45d8-ac64-01b7f31***" and item.recording.duration == 60
    assert item.agent.skill_group == "质检技能"
    assert item.scheme_id_list == [0] and item.scheme_name_list == ["售前通用方案"]
    assert item.review_history_list[0].review_right_rule == [{"ruleName": "问候语规则", "rid": 21}]
    assert item.review_type_id_list[0]["ReviewKeyIdList"] == [0]
    # back to the wire form: identical to the service's answer, wrappers and all
    assert page.to_wire() == body
    # and parsing the plain (unwrapped) dump again gives the same model
    again = GetResultResponse.model_validate(page.to_wire())
    assert again == page


def test_tea_unwrap_only_touches_exact_wrappers() -> None:
    data = {"Cid": "plain", "Hits": {"Hit": [{"Cid": {"Cid": ["a"]}}]}, "HitResult": {"Other": []}}
    assert tea.unwrap(data) == {"Cid": "plain", "Hits": [{"Cid": ["a"]}], "HitResult": {"Other": []}}
    assert tea.wrap(tea.unwrap(data)) == data


def test_get_result_empty_data() -> None:
    for body in ({"Success": True, "Data": {"ResultInfo": []}}, {"Success": True, "Data": {}}, {"Success": True}):
        assert GetResultResponse.model_validate(body).results == []


def test_upload_request_serializes_camel_case_without_nulls() -> None:
    request = UploadAudioDataJson(
        call_list=[{"voice_file_url": "https://a/b.mkv", "call_id": "job-1", "call_uuid": "u-1", "remark25": "r"}],
        auto_split=1,
        sample_rate=8,
        service_channel_keywords=["您好"],
    )
    wire = json.loads(request.to_json_str())
    assert wire == {
        "callList": [{"voiceFileUrl": "https://a/b.mkv", "callId": "job-1", "callUuid": "u-1", "remark25": "r"}],
        "autoSplit": 1,
        "sampleRate": 8,
        "serviceChannelKeywords": ["您好"],
    }
    assert UploadAudioDataJson.model_validate(wire) == request


@pytest.mark.parametrize(
    "bad",
    [
        {"callList": []},
        {"callList": [{"fileName": "x"}]},
        {"callList": [{"voiceFileUrl": "u"}], "sampleRate": 11},
        {"callList": [{"voiceFileUrl": "u"}], "autoSplit": 2},
    ],
)
def test_upload_request_validation(bad) -> None:
    with pytest.raises(ValidationError):
        UploadAudioDataJson.model_validate(bad)


def test_upload_response_task_id() -> None:
    answer = UploadAudioDataResponse.model_validate({"Success": True, "Code": "200", "Message": "successful", "RequestId": "r", "Data": "task-1"})
    assert answer.task_id == "task-1"


def test_get_result_query_every_filter_and_bounds() -> None:
    seed_example = {
        "excludeFields": "recording.url,finalHitRuleIds,hitResult.lambda",
        "requiredFields": "agent,status,errorMessage,reviewStatus,score,taskId",
        "schemeTaskConfigId": 4878,
        "pageNumber": 1,
        "pageSize": 10,
        "startTime": "2024-12-22 00:00:00",
        "endTime": "2025-01-20 17:27:19",
        "sourceDataTypeList": [1],
    }
    query = GetResultQuery.model_validate(seed_example)
    assert json.loads(query.to_json_str()) == seed_example
    full = GetResultQuery(
        task_id="t", status=1, call_id="job-1", last_data_id="x@y", remark5=3, remark5_type=7, end_remark5=9,
        remark1_list=["a"], remark25="z", duration=10, duration_type=7, end_duration=20, sort_field="score", sort_type="desc",
        required_fields=["taskId", "recording"],
    )
    wire = json.loads(full.to_json_str())
    assert wire["remark5Type"] == 7 and wire["endRemark5"] == 9 and wire["remark1List"] == ["a"]
    assert wire["requiredFields"] == "taskId,recording" and wire["lastDataId"] == "x@y"
    for size in (0, 100):
        with pytest.raises(ValidationError):
            GetResultQuery(page_size=size)
    with pytest.raises(ValidationError, match="yyyy-MM-dd"):
        GetResultQuery(start_time="2024-12-22T00:00:00Z")


def test_oss_event_parses_from_bytes() -> None:
    raw = json.dumps(
        {
            "events": [
                {
                    "eventName": "ObjectCreated:PutObject",
                    "eventSource": "acs:oss",
                    "eventTime": "2026-11-20T08:30:00.000Z",
                    "eventVersion": "1.0",
                    "region": "cn-shanghai",
                    "oss": {
                        "bucket": {"arn": "acs:oss:cn-shanghai:1234567890:recordings", "name": "recordings", "ownerIdentity": "1234567890"},
                        "object": {"deltaSize": 122539, "eTag": "688A7BF4F233DC9C88A80BF985AB7329", "key": "ccc/2026/11/20/job-46686139435843.mkv", "size": 122539},
                        "ossSchemaVersion": "1.0",
                        "ruleId": "9adac8e2",
                    },
                    "requestParameters": {"sourceIPAddress": "140.205.128.221"},
                    "responseElements": {"requestId": "58F9FF2D3DF792092E12044C"},
                    "userIdentity": {"principalId": "1234567890"},
                }
            ]
        }
    ).encode()
    event = parse_oss_event(raw)
    record = event.events[0]
    assert record.bucket == "recordings" and record.key == "ccc/2026/11/20/job-46686139435843.mkv"
    assert record.oss.object.etag == "688A7BF4F233DC9C88A80BF985AB7329" and record.oss.object.size == 122539


@pytest.mark.parametrize("raw", [b"not json", b"[]", b'{"events": []}', b'{"events": [{"eventName": "x"}]}'])
def test_malformed_oss_event_is_a_clear_permanent_error(raw: bytes) -> None:
    with pytest.raises(InvalidEventError) as info:
        parse_oss_event(raw)
    assert not info.value.retryable


def test_timer_event() -> None:
    event = parse_timer_event(b'{"triggerTime": "2026-11-20T08:35:00Z", "triggerName": "harvest-timer", "payload": "{\\"since\\": \\"x\\"}"}')
    assert event.trigger_name == "harvest-timer" and event.payload_json() == {"since": "x"}
    with pytest.raises(InvalidEventError):
        parse_timer_event(b'{"payload": "nope"}').payload_json()
