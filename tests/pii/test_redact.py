"""Issue 24: QCFLOW_PII applied to a whole record (to_record's output)."""

from __future__ import annotations

import copy
import json
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from qcflow.config import load_settings
from qcflow.errors import ConfigError
from qcflow.harvest import records as rec
from qcflow.pii import Redactor

KEY = b"a-test-pii-key-of-32-characters!"
_SENTENCES = [
    {"Role": "客户", "Words": "我的手机号是一三八 零零零零 幺二三四，你记一下。", "Begin": 0, "End": 3000},
    {"Role": "客户", "Words": "身份证号码是11010519491231002X", "Begin": 3100, "End": 6000},
    {"Role": "客服", "Words": "好的，三千五百元十点半之前退给您。", "Begin": 6100, "End": 8000},
    {"Role": "客户", "Words": "我的卡号是六二二二", "Begin": 8100, "End": 9000},
    {"Role": "客户", "Words": "零二一二三四五六七八九零一二。", "Begin": 9100, "End": 9900},
]


def _item() -> dict[str, Any]:
    phrase = dict(_SENTENCES[0])
    return {
        "TaskId": "t-1",
        "Status": 1,
        "CreateTimeLong": 1733380000,
        "Comments": "客户留了电话13900001234",
        "Recording": {
            "Id": "c-1",
            "Name": "rec/c-1.wav",
            "Caller": "138-0000-1234",
            "Callee": "4008001234",
            "CustomerName": "张三",
            "Remark3": "备注 zhangsan@qq.com",
        },
        "AsrResult": copy.deepcopy(_SENTENCES),
        "HitResult": [
            {
                "Name": "敏感信息",
                "Hits": [
                    {
                        "KeyWords": [
                            {"From": 6, "To": 19, "Val": "一三八 零零零零 幺二三四", "Cid": "a"},
                            {"From": 0, "To": 2, "Val": "我的", "Cid": "b"},
                        ],
                        "Phrase": phrase,
                    }
                ],
            }
        ],
        "ReviewHistoryList": [{"Comments": "回访号码13900001234已核实"}],
    }


def _record(redactor: Redactor) -> dict[str, Any]:
    return redactor.record(rec.to_record(_item(), ZoneInfo("Asia/Shanghai"), "2026-12-05T00:00:00+00:00"))


def test_mask_keeps_every_length_offset_and_timing() -> None:
    raw = rec.to_record(_item(), ZoneInfo("Asia/Shanghai"), "x")
    out = _record(Redactor("mask"))
    for before, after in zip(raw["asr_result"], out["asr_result"], strict=True):
        assert len(after["words"]) == len(before["words"])
        assert (after["begin"], after["end"]) == (before["begin"], before["end"])
    words = out["asr_result"][0]["words"]
    assert words == "我的手机号是*************，你记一下。"
    assert out["asr_result"][1]["words"] == "身份证号码是******************"
    assert out["asr_result"][2]["words"] == _SENTENCES[2]["Words"]  # an amount and a time stay
    keyword = out["hit_result"][0]["hits"][0]["key_words"]
    assert keyword[0] == {"from": 6, "to": 19, "val": "*************", "cid": "a"}
    assert words[keyword[0]["from"] : keyword[0]["to"]] == keyword[0]["val"]
    assert keyword[1]["val"] == "我的"
    assert out["hit_result"][0]["hits"][0]["phrase"]["words"] == words
    assert out["comments"] == "客户留了电话***********"
    assert out["review_history"][0]["comments"] == "回访号码***********已核实"
    assert out["recording"]["caller"] == "*************"
    assert out["recording"]["remark3"] == "备注 ***************"
    assert (out["task_id"], out["call_id"], out["object_key"]) == ("t-1", "c-1", "rec/c-1.wav")


def test_a_bank_card_split_over_two_sentences_of_one_speaker_is_masked_in_both() -> None:
    out = _record(Redactor("mask"))
    assert out["asr_result"][3]["words"] == "我的卡号是****"
    assert out["asr_result"][4]["words"] == "**************。"


def test_hash_is_keyed_and_stable_and_free_text_is_masked() -> None:
    one = _record(Redactor("hash", key=KEY))
    again = _record(Redactor("hash", key=KEY))
    other = _record(Redactor("hash", key=b"another-key-of-16+chars"))
    caller = one["recording"]["caller"]
    assert len(caller) == 64 and caller == again["recording"]["caller"] != other["recording"]["caller"]
    # the same number written another way hashes the same (joins per customer)
    assert Redactor("hash", key=KEY).whole("13800001234") == caller
    assert one["asr_result"][0]["words"] == "我的手机号是*************，你记一下。"
    assert "1234" not in json.dumps(one, ensure_ascii=False).replace(caller, "")


def test_fields_are_redacted_whole_and_off_changes_nothing() -> None:
    out = _record(Redactor("mask", fields=("customer_name", "recording.callee")))
    assert out["recording"]["customer_name"] == "**"
    assert out["recording"]["callee"] == "**********"
    raw = rec.to_record(_item(), ZoneInfo("Asia/Shanghai"), "x")
    assert Redactor("off").record(copy.deepcopy(raw)) == raw


def test_settings_hash_needs_a_key_that_is_never_shown() -> None:
    with pytest.raises(ConfigError, match="QCFLOW_PII_KEY"):
        Redactor.from_settings(load_settings({}, pii="hash").pii)
    with pytest.raises(ConfigError) as short:
        load_settings({}, pii="hash", pii_key="short-secret")
    assert "short-secret" not in str(short.value)
    settings = load_settings({"QCFLOW_PII": "hash", "QCFLOW_PII_KEY": KEY.decode(), "QCFLOW_PII_FIELDS": "a, b.c"})
    redactor = Redactor.from_settings(settings.pii)
    assert KEY.decode() not in repr(redactor) + repr(settings)
    assert redactor.names == {"a"} and redactor.paths == {("b", "c")}
    assert load_settings({}).pii.mode == "mask"
    # s.yaml passes ${env('QCFLOW_PII','')}: unset in the deployer's shell means the default
    unset = load_settings({"QCFLOW_PII": "", "QCFLOW_PII_RAW_STORE": "", "QCFLOW_PII_SERVICE_NUMBERS": " "}).pii
    assert (unset.mode, unset.raw_store, unset.service_numbers) == ("mask", None, "keep")
