"""The JSONL schema: one GetResult item → one line, from the seed answer and sandbox pages."""

from __future__ import annotations

import copy
import json
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from qcflow.harvest import records as rec
from qcflow.models import tea
from qcflow.models.sca import GetResultQuery

from tests.conftest import load_fixture
from tests.harvest.conftest import NOW, sandbox_env

SHANGHAI = ZoneInfo("Asia/Shanghai")
HARVESTED = "2026-11-20T12:00:00+00:00"
KNOWN = [
    "schema_version", "task_id", "status", "state", "call_id", "contact_id", "object_key", "upload_time", "score",
    "error_message", "review_status", "review_result", "reviewer", "review_time", "review_type", "comments", "resolver", "agent",
    "recording", "hit_result", "hit_score", "asr_result", "review_history", "scheme_ids", "scheme_names", "harvested_at",
]


def seed_item() -> dict:
    """The seed's one result, as the service sends it (Tea wrappers included)."""
    return copy.deepcopy(load_fixture("sca_get_result_seed.json")["Data"]["ResultInfo"][0])


def test_seed_item_with_wrappers_becomes_the_documented_line() -> None:
    item = seed_item()
    item["Status"] = 1
    record = rec.to_record(item, SHANGHAI, HARVESTED)
    assert list(record)[: len(KNOWN)] == KNOWN, "known fields first, in the documented order"
    assert record["schema_version"] == 1 and record["state"] == "finished" and record["status"] == 1
    assert record["task_id"] == item["TaskId"]
    assert record["call_id"] == record["contact_id"] == item["Recording"]["Id"]
    assert record["object_key"] == "123456.mkv"
    # 1602743090 s is 2020-10-15 06:24:50 UTC, 14:24:50 in Shanghai
    assert record["upload_time"] == "2020-10-15T14:24:50+08:00"
    assert record["review_time"] == "2020-10-15T14:24:50+08:00"  # from ReviewTimeLong
    assert record["agent"] == {"name": "智能对话分析客服", "skill_group": "质检技能", "id": "28240****15643"}
    rule = record["hit_result"][0]
    assert set(rule) >= {"type", "name", "rid", "review_result", "score", "scheme_id", "scheme_version", "hits", "conditions"}
    hit = rule["hits"][0]  # Hits → {"Hit": [...]}: unwrapped although the inner key differs
    assert hit["key_words"] == [{"from": 1, "to": 2, "val": "test", "cid": "xxxx"}]
    assert hit["cid"] == ["xxxx"]
    assert hit["phrase"] == {"emotion_value": 0, "end": 300, "words": "xxx", "role": "客服", "begin": 300}
    condition = rule["conditions"][0]
    assert condition["check_range"]["anchor"]["hit_time"] == 1
    param = condition["operators"][0]["param"]  # Operators → {"Operator": [...]}
    assert param["keywords"] == ["你好"] and param["excludes"] == ["你好"]
    assert param["intent_model_check_parm"]["intents"] == [{"id": 0, "name": "fvt-eci-copy-5c703091"}]
    assert record["asr_result"][0] == {"words": "xx", "begin": 10000, "emotion_value": 1, "end": 0, "speech_rate": 50,
                                       "role": "客户", "identity": "OPERATOR_001"}
    assert record["hit_score"] == [{"score_name": "投诉", "score_number": "-20", "score_id": "123456", "rule_id": "123"}]
    history = record["review_history"][0]  # ReviewHistoryList → {"ReviewHistory": [...]}
    assert history["operator_name"] == "张三" and history["review_right_rule"] == [{"rule_name": "问候语规则", "rid": 21}]
    assert record["scheme_ids"] == [0] and record["scheme_names"] == ["售前通用方案"]
    assert record["recording"]["remark13"] == "XXX" and record["recording"]["data_set_name"] == "XXXX"
    # unknown fields are kept under their snake_case name, wrappers removed
    assert record["task_name"] == "test" and record["vid"] == item["Vid"] and record["review_type"] == 1
    assert record["assignment_time"] == "2021-03-02T14:37Z"
    assert record["review_type_id_list"] == [{"review_key_id_list": [0], "review_type_id": 1}]
    # consumed: the paging cursor and the raw times
    for gone in ("last_data_id", "create_time", "create_time_long", "review_time_long"):
        assert gone not in record
    assert record["harvested_at"] == HARVESTED
    line = rec.encode_line(record)
    assert line.endswith(b"\n") and line.count(b"\n") == 1 and json.loads(line) == record
    assert "客服".encode() in line, "UTF-8, not \\u escapes"


def test_unwrapped_and_wrapped_items_give_the_same_record() -> None:
    item = seed_item()
    assert rec.to_record(tea.unwrap(item), SHANGHAI, HARVESTED) == rec.to_record(item, SHANGHAI, HARVESTED)


@pytest.mark.parametrize(("status", "state"), [(1, "finished"), (0, "running"), (6, "failed"), (3, "failed"), ("6", "failed"),
                                               (None, "unknown"), ("x", "unknown"), (True, "unknown")])
def test_state_of_status(status: object, state: str) -> None:
    item = {"TaskId": "t"} if status is None else {"TaskId": "t", "Status": status}
    assert rec.state_of(item) == state


def test_absent_status_is_unknown_never_failed() -> None:
    item = seed_item()
    del item["Status"]
    record = rec.to_record(item, SHANGHAI, HARVESTED)
    assert record["status"] is None and record["state"] == "unknown"


def test_failed_result_keeps_its_error_message() -> None:
    item = seed_item()
    item["Status"] = 6
    item["ErrorMessage"] = "audio file download failed"
    record = rec.to_record(item, SHANGHAI, HARVESTED)
    assert (record["state"], record["status"], record["error_message"]) == ("failed", 6, "audio file download failed")


def test_every_known_key_is_present_even_when_not_sent() -> None:
    record = rec.to_record({"TaskId": "T-1", "Status": 1}, SHANGHAI, HARVESTED)
    assert list(record) == KNOWN
    assert record["call_id"] is None and record["upload_time"] is None and record["hit_result"] is None


@pytest.mark.parametrize("value", ["1602743090", 1602743090, "1602743090000", 1602743090000])
def test_create_time_long_in_seconds_or_milliseconds(value: object) -> None:
    assert rec.upload_seconds({"CreateTimeLong": value}, SHANGHAI) == 1602743090


def test_create_time_text_is_read_in_the_sca_zone_when_no_long_form() -> None:
    seconds = rec.upload_seconds({"CreateTime": "2019-07-24T19:31Z"}, SHANGHAI)
    assert seconds == datetime(2019, 7, 24, 19, 31, tzinfo=SHANGHAI).timestamp()
    assert rec.upload_seconds({}, SHANGHAI) is None


def test_partition_is_the_upload_hour_in_the_sca_zone() -> None:
    part = rec.Partitioner(SHANGHAI)
    moment = datetime(2026, 11, 19, 16, 59, 59, tzinfo=timezone.utc)  # 00:59:59 on the 20th in Shanghai
    assert part.of({"CreateTimeLong": str(int(moment.timestamp()))}) == "dt=2026-11-20/hour=00"
    assert part.of({"CreateTimeLong": str(int(moment.timestamp()) + 1)}) == "dt=2026-11-20/hour=01"
    assert part.of({}) == rec.UNKNOWN_PARTITION
    kolkata = rec.Partitioner(ZoneInfo("Asia/Kolkata"))  # +05:30: a quarter never straddles hours
    start = datetime(2026, 11, 20, 0, 0, tzinfo=ZoneInfo("Asia/Kolkata")).timestamp()
    assert kolkata.of_seconds(start - 1) == "dt=2026-11-19/hour=23" and kolkata.of_seconds(start) == "dt=2026-11-20/hour=00"


def test_signed_recording_url_loses_its_query() -> None:
    item = {"TaskId": "T", "Status": 1, "Recording": {
        "Id": "job-1", "Url": "https://b.oss-cn-shanghai.aliyuncs.com/r/job-1.mkv?Expires=1&OSSAccessKeyId=LTAI5t&Signature=abc%3D"}}
    record = rec.to_record(item, SHANGHAI, HARVESTED)
    assert record["recording"]["url"] == "https://b.oss-cn-shanghai.aliyuncs.com/r/job-1.mkv"
    assert b"Signature" not in rec.encode_line(record) and b"LTAI" not in rec.encode_line(record)


def test_result_identity_tells_recordings_of_one_upload_apart() -> None:
    a = {"TaskId": "T", "Recording": {"Id": "job-1"}}
    b = {"TaskId": "T", "Recording": {"Id": "job-2"}}
    assert rec.result_id(a) == "T|job-1" != rec.result_id(b)
    assert rec.result_id({"TaskId": "T", "Vid": "v-9"}) == "T|v-9"
    assert rec.result_id({"TaskId": "T"}) == "T|"
    assert rec.result_id({"Recording": {"Id": "job-1"}}) is None
    assert rec.task_of("T|job-1") == "T"


@pytest.mark.parametrize(("name", "snake"), [("ReviewTimeLong", "review_time_long"), ("Check_range", "check_range"),
                                             ("ruleName", "rule_name"), ("Remark13", "remark13"), ("SkillGroupUUID", "skill_group_uuid"),
                                             ("In_sentence", "in_sentence"), ("Lambda", "lambda"), ("From", "from")])
def test_snake_case(name: str, snake: str) -> None:
    assert rec.snake(name) == snake


@pytest.mark.anyio
async def test_sandbox_pages_convert_with_every_default_field() -> None:
    """Items as ``get_result_page`` returns them (the real parse path) for finished and failed
    results, with the default requiredFields of the harvest."""
    from qcflow.harvest.fields import required_fields
    from tests.harvest.conftest import harvest_settings

    with sandbox_env() as env:
        env.preload(40, NOW - timedelta(hours=2), NOW - timedelta(hours=1), failed_rate=0.3)
        start = (NOW - timedelta(hours=2)).astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M:%S")
        end = (NOW - timedelta(hours=1)).astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M:%S")
        page = await env.sca.get_result_page(GetResultQuery(start_time=start, end_time=end, page_size=99,
                                                            required_fields=required_fields(harvest_settings().harvest)))
    assert page.count == 40 and len(page.items) == 40
    records = [rec.to_record(item, SHANGHAI, HARVESTED) for item in page.items]
    states = {r["state"] for r in records}
    assert states == {"finished", "failed"}
    for record in records:
        assert record["task_id"] and record["call_id"].startswith("job-") and record["object_key"] == f"{record['call_id']}.mkv"
        assert record["upload_time"].endswith("+08:00")
        upload = datetime.fromisoformat(record["upload_time"])
        assert NOW - timedelta(hours=2) <= upload < NOW - timedelta(hours=1)
        if record["state"] == "failed":
            assert record["status"] == 6 and record["error_message"]
        else:
            assert record["status"] == 1 and record["asr_result"] and isinstance(record["hit_result"], list)
            assert all(set(s) >= {"role", "words", "begin", "end"} for s in record["asr_result"])
            assert record["agent"]["skill_group"] and record["scheme_names"] == ["客服通用质检方案"]
        assert "last_data_id" not in record
        json.loads(rec.encode_line(record))


def test_example_line_for_the_readme(capsys: pytest.CaptureFixture[str]) -> None:
    """Not an assertion of content: prints docs/harvest.md's example line (``pytest -s``)."""
    item = tea.unwrap(seed_item())
    item.update(Status=1, TaskId="A6BEC8D2-9A5B-4BE5-8432-4F635E3A0B11", CreateTimeLong="1763604245",
                Recording={"Id": "job-3886097710732401", "Name": "recordings/2025/11/20/job-3886097710732401.mkv",
                           "Url": "https://ccc-rec.oss-cn-shanghai.aliyuncs.com/job-3886097710732401.mkv?Expires=1&Signature=x",
                           "Duration": 60, "CallType": 3, "Caller": "13800001234", "Callee": "4008001234"})
    item["AsrResult"] = item["AsrResult"][:1]
    item["HitResult"][0].pop("Conditions")
    line = rec.encode_line(rec.to_record(item, SHANGHAI, "2025-11-20T02:10:31+00:00"))
    print(line.decode())
    assert json.loads(line)["object_key"].startswith("recordings/")
