"""Hostile API answers, served by ``HostileService`` on loopback, against the real handlers.

CCC's ``ParamsStr`` huge, deeply nested, of the wrong types or not JSON; UploadAudioData and
GetResult answers with wrong types, huge fields, HTML error pages, a 200 carrying junk, a cut
connection; error messages that echo the request's signature. Each must end in a clear
outcome: a recorded failure with a code (permanent), or a retry later (a qcflow
``RetryableError`` out of the handler, which FC retries) — never a bare Python error, never a
secret in a log line, error or stored object, never a write outside ``state/``/``results/``.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from qcflow import layout
from qcflow.errors import DeploymentError, QcflowError, RetryableError
from qcflow.tools.fc_local import http_event, oss_event, timer_event
from qcflow.ledger import Ledger, recording_id
from qcflow.push import object_location
from tests.hostile.conftest import (
    ACCESS_KEY_ID,
    BUCKET,
    CALLBACK_PATH,
    STS_TOKEN,
    URL_SIGNATURE,
    Answer,
    Hostile,
    ccc_answer,
    ccc_params,
    result_item,
    result_page,
    voice_url,
    windows_only,
)
from tests.hostile.test_events import DEEP, _signed

KEY = "ccc/2026/11/20/job-3001.mkv"
CONTACT = "job-3001"
HTML = (b"<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1>"
        b"<p>GET /?Action=GetUploadAudioDataParams&Signature=" + URL_SIGNATURE.encode() + b"&SecurityToken="
        + STS_TOKEN.encode() + b"</p><hr>Tengine</body></html>")
ECHOING_ERROR = {"Code": "Forbidden.NoPermission", "RequestId": "REQ-ECHO",
                 "Message": f"denied: OSSAccessKeyId={ACCESS_KEY_ID}&Signature={URL_SIGNATURE}&security-token={STS_TOKEN}"}


def _outcome_of(hostile: Hostile, key: str = KEY) -> Any:
    location = object_location(hostile.env["QCFLOW_RECORDINGS_URL"], key)
    return Ledger(_store(hostile)).read(recording_id(location))


def _store(hostile: Hostile) -> Any:
    from qcflow.store import LocalStore

    return LocalStore(hostile.store_root)


def _push(hostile: Hostile) -> Any:
    hostile.put_recording(KEY)
    outcome = hostile.invoke("push", oss_event(BUCKET, KEY))
    hostile.check(outcome, expect_events={"push_outcome"})
    return outcome


# --------------------------------------------------------------------------- CCC


def _params(**call: Any) -> dict[str, Any]:
    return ccc_params("http://127.0.0.1:1", CONTACT, **call)


CCC_PERMANENT = {
    "ParamsStr not JSON": ccc_answer("{callList: [}"),
    "ParamsStr a JSON list": ccc_answer("[]"),
    "ParamsStr null": ccc_answer("null"),
    "ParamsStr empty": ccc_answer(""),
    "ParamsStr an object, not a string": Answer.json({"Code": "OK", "HttpStatusCode": 200, "RequestId": "R",
                                                      "Data": {"ParamsStr": _params()}}),
    "ParamsStr a number": Answer.json({"Code": "OK", "HttpStatusCode": 200, "RequestId": "R", "Data": {"ParamsStr": 5}}),
    "Data missing": Answer.json({"Code": "OK", "HttpStatusCode": 200, "RequestId": "R"}),
    "Data a list": Answer.json({"Code": "OK", "HttpStatusCode": 200, "RequestId": "R", "Data": ["x"]}),
    "callList a string": ccc_answer({"callList": "job-3001"}),
    "callList empty": ccc_answer({"callList": []}),
    "callList of numbers": ccc_answer({"callList": [1, 2]}),
    "voiceFileUrl a list": ccc_answer(_params(voiceFileUrl=["http://x"])),
    "voiceFileUrl missing": ccc_answer(_params(voiceFileUrl=None)),
    "callStartTime a word": ccc_answer(_params(callStartTime="yesterday")),
    "callStartTime 1e400": ccc_answer(json.dumps(_params()).replace('"callStartTime": 1704870035381', '"callStartTime": 1e400')),
    "sampleRate an object": ccc_answer({**_params(), "sampleRate": {"hz": 8000}}),
    "voiceFileUrl expiring in an hour": ccc_answer(_params(voiceFileUrl=voice_url("https://ccc.example", CONTACT, expires_in=3600))),
    # a bare RecursionError out of the handler, after the claim, before the fix
    "ParamsStr nested deeply": ccc_answer('{"callList":' + "[" * DEEP + "]" * DEEP + "}"),
    "unknown ContactId": Answer.json({"Code": "NotExists.ContactId", "HttpStatusCode": 404, "Message": "no such contact",
                                      "RequestId": "R"}, status=404),
}
@pytest.mark.parametrize("answer", list(CCC_PERMANENT.values()), ids=list(CCC_PERMANENT))
def test_a_hostile_ccc_answer_is_a_recorded_failure_with_a_code(hostile: Hostile, answer: Answer) -> None:
    hostile.service.script["GetUploadAudioDataParams"] = answer
    outcome = _push(hostile)
    assert outcome.error is None and outcome.value == {"records": 1, "failed": 1}
    entry = _outcome_of(hostile)
    assert entry.outcome is not None and entry.outcome.state == "failed" and entry.outcome.code
    assert entry.outcome.message and len(entry.outcome.message) < 2000
    assert hostile.service.count("UploadAudioData") == 0, "nothing sent to SCA"


CCC_RETRYABLE = {
    "HTML 502 echoing the signature": Answer(502, HTML, "text/html"),
    "HTML 200": Answer(200, HTML, "text/html"),
    "200 with invalid UTF-8": Answer(200, b"\xff\xfe\x00junk"),
    "200 with a JSON list": Answer(200, b"[1, 2, 3]"),
    "200 with JSON nested deeply": Answer(200, b"[" * DEEP + b"]" * DEEP),
    "200 cut in the middle": Answer(200, json.dumps({"Code": "OK", "Data": {"ParamsStr": json.dumps(_params())}}).encode(), cut=True),
    "503 without a body": Answer(503, b""),
    "throttled": Answer.json({"Code": "Throttling.User", "Message": "flow control"}, status=400),
    "Code InternalError on HTTP 200": Answer.json({"Code": "InternalError", "HttpStatusCode": 500, "Message": "x"}),
}


@pytest.mark.parametrize("answer", list(CCC_RETRYABLE.values()), ids=list(CCC_RETRYABLE))
def test_a_broken_ccc_answer_leaves_the_recording_to_fc_s_retry(hostile: Hostile, answer: Answer) -> None:
    hostile.service.script["GetUploadAudioDataParams"] = answer
    hostile.put_recording(KEY)
    outcome = hostile.invoke("push", oss_event(BUCKET, KEY), timeout=3)  # throttling is retried until the deadline
    hostile.check(outcome, expect_events={"push_outcome"})
    assert isinstance(outcome.error, RetryableError), "FC's retry comes back"
    entry = _outcome_of(hostile)
    assert entry.claims and not entry.outcomes, "claimed, not settled"
    assert hostile.service.count("UploadAudioData") == 0


def test_a_huge_params_str_is_handled_without_echoing_it(hostile: Hostile) -> None:
    """A huge field makes UploadAudioData's query string longer than httpx accepts (64 kB):
    a recorded failure (``RequestTooLarge``), not a bare ``httpx.InvalidURL`` after the claim."""
    filler = [{"callId": f"other-{i}", "voiceFileUrl": "http://x/y.mkv", "caller": "1" * 50} for i in range(20_000)]
    params = _params(customerServiceName="n" * 200_000)
    params["callList"] = filler + params["callList"]
    hostile.service.script["GetUploadAudioDataParams"] = ccc_answer(params)
    outcome = _push(hostile)
    assert outcome.error is None and set(outcome.value) <= {"records", "submitted", "failed"}


# --------------------------------------------------------------------------- UploadAudioData


def _upload(value: Any, status: int = 200) -> Answer:
    return Answer.json(value, status=status) if not isinstance(value, Answer) else value


UPLOAD_RETRYABLE = {
    "Success without Data": {"Success": True, "Code": "200", "RequestId": "R"},
    "Data an object": {"Success": True, "Code": "200", "RequestId": "R", "Data": {"TaskId": "T"}},
    "Data empty": {"Success": True, "Code": "200", "RequestId": "R", "Data": ""},
    "HTML 200": Answer(200, HTML, "text/html"),
    "HTML 502": Answer(502, HTML, "text/html"),
    "200 cut": Answer(200, b'{"Success": true, "Data": "T-1", "RequestId": "R"}', cut=True),
    "InternalError": {"Success": False, "Code": "InternalError", "Message": "x", "RequestId": "R"},
}


@pytest.mark.parametrize("answer", list(UPLOAD_RETRYABLE.values()), ids=list(UPLOAD_RETRYABLE))
def test_an_unreadable_upload_answer_is_retried_and_looked_up_before_resending(hostile: Hostile, answer: Any) -> None:
    hostile.service.script["UploadAudioData"] = _upload(answer)
    hostile.put_recording(KEY)
    outcome = hostile.invoke("push", oss_event(BUCKET, KEY), timeout=6, request_id="inv-1")
    hostile.check(outcome, expect_events={"push_outcome"})
    assert isinstance(outcome.error, RetryableError)
    entry = _outcome_of(hostile)
    assert entry.claims and not entry.outcomes
    # FC's retry of the invocation must look in SCA before sending again: the upload may have landed
    hostile.service.script["UploadAudioData"] = _upload({"Success": True, "Code": "200", "RequestId": "R", "Data": "T-NEW"})
    lookups = hostile.service.count("GetResult")
    retry = hostile.invoke("push", oss_event(BUCKET, KEY), request_id="inv-1", module=hostile.modules[-1])
    hostile.check(retry, expect_events={"push_outcome"})
    assert retry.value == {"records": 1, "submitted": 1}
    assert hostile.service.count("GetResult") == lookups + 1, "looked up by callId first"


UPLOAD_PERMANENT = {
    "InvalidParameter": {"Success": False, "Code": "InvalidParameter", "Message": "voiceFileUrl bad", "RequestId": "R"},
}


@pytest.mark.parametrize("answer", list(UPLOAD_PERMANENT.values()), ids=list(UPLOAD_PERMANENT))
def test_a_refused_upload_is_a_recorded_failure(hostile: Hostile, answer: Any) -> None:
    hostile.service.script["UploadAudioData"] = _upload(answer)
    outcome = _push(hostile)
    assert outcome.error is None and outcome.value == {"records": 1, "failed": 1}
    entry = _outcome_of(hostile)
    assert entry.outcome is not None and entry.outcome.state == "failed" and entry.outcome.code


@pytest.mark.parametrize("api", ["GetUploadAudioDataParams", "UploadAudioData"])
def test_a_permission_error_echoing_the_signature_raises_masked_and_burns_nothing(hostile: Hostile, api: str) -> None:
    """Forbidden.NoPermission is about the deployment (the RAM policy), not the recording: the
    push function raises (FC retries, then the DLQ), records no failure, and leaks nothing."""
    hostile.service.script[api] = Answer.json({**ECHOING_ERROR, "Success": False}, status=403)
    hostile.put_recording(KEY)
    outcome = hostile.invoke("push", oss_event(BUCKET, KEY))
    hostile.check(outcome, expect_events={"push_deployment_error"})
    assert isinstance(outcome.error, DeploymentError) and "RAM policy" in outcome.error.remedy
    entry = _outcome_of(hostile)
    assert entry.claims and not entry.outcomes, "claimed (FC's retry comes back to it), not failed"
    assert not entry.released, "the function keeps its claim"


def test_a_200_whose_success_flag_is_junk_is_not_a_certain_refusal(hostile: Hostile) -> None:
    """Taken for a certain refusal, it would be recorded failed with ``uncertain`` false, and
    `qcflow replay` would send it again without looking in SCA (a second task after 2 h)."""
    hostile.service.script["UploadAudioData"] = Answer.json({"Success": "yes", "Data": "T-1", "RequestId": "R"})
    hostile.put_recording(KEY)
    outcome = hostile.invoke("push", oss_event(BUCKET, KEY), timeout=6)
    hostile.check(outcome, expect_events={"push_outcome"})
    entry = _outcome_of(hostile)
    settled = entry.outcome
    assert isinstance(outcome.error, RetryableError) or (settled is not None and settled.uncertain), (
        "either retried, or recorded as a failure that may have landed")


def test_a_huge_task_id_is_not_stored_or_logged_whole(hostile: Hostile) -> None:
    """A 1 MB ``Data`` is an unexpected shape (retried, uncertain), not a taskId to store and log."""
    hostile.service.script["UploadAudioData"] = Answer.json({"Success": True, "Code": "200", "RequestId": "R",
                                                             "Data": "T" * 1_000_000})
    hostile.put_recording(KEY)
    outcome = hostile.invoke("push", oss_event(BUCKET, KEY), timeout=6)
    hostile.check(outcome, expect_events={"push_outcome"})


# --------------------------------------------------------------------------- GetResult

RUNNING_TASK = "T-HOSTILE-1"


def _page(*items: Any, **kw: Any) -> Answer:
    return result_page(list(items), **kw)


GET_RESULT_JUNK = {
    "HTML 200": Answer(200, HTML, "text/html"),
    "HTML 502": Answer(502, HTML, "text/html"),
    "200 with invalid UTF-8": Answer(200, b"\xff\xfe{}"),
    "ResultInfo a string": Answer.json({"Success": True, "Count": 1, "Data": {"ResultInfo": "T-1"}}),
    "ResultInfo of numbers": Answer.json({"Success": True, "Count": 2, "Data": {"ResultInfo": [1, 2]}}),
    "Count a word": Answer.json({"Success": True, "Count": "many", "Data": {"ResultInfo": []}}),
    "nested deeply": Answer(200, b'{"Success": true, "Data": {"ResultInfo": [' + b"[" * DEEP + b"]" * DEEP + b"]}}"),
    "cut": Answer(200, json.dumps({"Success": True, "Count": 1, "Data": {"ResultInfo": [result_item("T-1", "job-1")]}}).encode(),
                  cut=True),
    "an error echoing the signature": Answer.json({**ECHOING_ERROR, "Success": False}, status=403),
}


@pytest.mark.parametrize("answer", list(GET_RESULT_JUNK.values()), ids=list(GET_RESULT_JUNK))
def test_a_junk_result_page_ends_the_timer_pass_cleanly_and_writes_nothing(hostile: Hostile, answer: Answer) -> None:
    """A page of the wrong shape is parsed after the client's retry loop: the failed pass must
    still say so in a JSON line (``harvest_failed``), not only in FC's traceback."""
    hostile.service.script["GetResult"] = answer
    outcome = hostile.invoke("harvest", timer_event(), timeout=10)
    hostile.check(outcome, expect_events={"harvest_failed", "harvest_done"})
    assert outcome.error is not None or outcome.value["written"] == 0
    assert not (hostile.store_root / "results").exists()
    # the first pass saves its start before reading (record 1); a checkpoint that moved is a later record
    saved = sorted(p.name for p in (hostile.store_root / "state" / "harvest" / "checkpoint").glob("*.json"))
    assert saved in ([], ["000000000001.json"]), f"the checkpoint did not move: {saved}"


@pytest.mark.parametrize("answer", list(GET_RESULT_JUNK.values()), ids=list(GET_RESULT_JUNK))
def test_a_junk_result_page_answers_the_callback_with_an_error_status(hostile: Hostile, answer: Answer) -> None:
    hostile.service.script["GetResult"] = answer
    outcome = hostile.invoke("callback", http_event("GET", CALLBACK_PATH, _signed(RUNNING_TASK)), timeout=10)
    hostile.check(outcome)
    assert outcome.error is None and outcome.value["statusCode"] in (500, 503)
    assert not (hostile.store_root / "results").exists()


ODD_ITEMS = {
    "TaskId an object": result_item("T-1", "job-1", TaskId={"id": "T-1"}),
    "TaskId a huge string": result_item("T" * 100_000, "job-1"),
    "Status a list": result_item("T-2", "job-2", Status=[1]),
    "Status a word": result_item("T-3", "job-3", Status="done"),
    "Recording a string": result_item("T-4", "job-4", Recording="job-4"),
    "Recording.Id a list": result_item("T-5", "job-5", Recording={"Id": ["job-5"], "Name": "x"}),
    "CreateTimeLong NaN": result_item("T-6", "job-6", CreateTimeLong="NaN"),
    "CreateTimeLong 1e400": result_item("T-7", "job-7", CreateTimeLong="1e400"),
    "CreateTimeLong negative": result_item("T-8", "job-8", CreateTimeLong=-5),
    "CreateTimeLong year 30000": result_item("T-9", "job-9", CreateTimeLong=10**15),
    "a 1 MB comment": result_item("T-10", "job-10", Comments="c" * 1_000_000),
    "keys with NUL and slashes": result_item("T-12", "job-12", **{"a\x00b": 1, "../../x": 2}),
    "a lone surrogate": result_item("T-13", "job-13", Comments="\ud800"),
}


def test_odd_result_items_never_stall_or_escape_the_results_prefix(hostile: Hostile) -> None:
    items = list(ODD_ITEMS.values())
    hostile.service.script["GetResult"] = windows_only(items)
    outcome = hostile.invoke("harvest", timer_event(), timeout=20)
    hostile.check(outcome)
    assert outcome.error is None, "a few odd items must not stop the harvest of the rest"
    written = "".join(p.read_text("utf-8") for p in (hostile.store_root / "results").rglob("*.jsonl")) \
        if (hostile.store_root / "results").exists() else ""
    for line in written.splitlines():
        record = json.loads(line)  # every line is strict JSON
        assert URL_SIGNATURE not in line and "Signature=" not in line
        assert record["schema_version"] == 1
    commits = list((hostile.store_root / layout.HARVEST_COMMITS).rglob("*.json")) if (hostile.store_root / layout.HARVEST_COMMITS).exists() else []
    for commit in commits:
        assert commit.resolve().is_relative_to((hostile.store_root / "state").resolve())


def test_a_recording_url_with_a_signature_reaches_the_jsonl_without_it(hostile: Hostile) -> None:
    item = result_item("T-URL", "job-url")
    hostile.service.script["GetResult"] = windows_only([item])
    outcome = hostile.invoke("harvest", timer_event(), timeout=20)
    hostile.check(outcome)
    [part] = list((hostile.store_root / "results").rglob("*.jsonl"))
    line = json.loads(part.read_text("utf-8"))
    assert line["recording"]["url"] == "https://ccc.example/recordings/job-url.mkv"


def test_one_deeply_nested_result_does_not_stall_the_harvest(hostile: Hostile) -> None:
    """Still parsed by json, too deep to convert: skipped with a line, not a bare RecursionError
    that would stop every later pass on the same window (the checkpoint would never move)."""
    deep = result_item("T-DEEP", "job-deep", HitResult=json.loads("[" * 500 + "]" * 500))
    hostile.service.script["GetResult"] = windows_only([deep, result_item("T-OK", "job-ok")])
    outcome = hostile.invoke("harvest", timer_event(), timeout=20)
    hostile.check(outcome)
    assert outcome.error is None and outcome.value["written"] == 1, "the readable result is written"


def test_an_error_echoing_credentials_does_not_leave_the_timer_handler_unredacted(hostile: Hostile) -> None:
    """SignatureDoesNotMatch echoes the string to sign, x-acs-security-token included: the error
    raised out of the handler (FC logs it) carries it masked."""
    hostile.service.script["GetResult"] = Answer.json({**ECHOING_ERROR, "Success": False}, status=403)
    outcome = hostile.invoke("harvest", timer_event(), timeout=10)
    assert outcome.error is None or isinstance(outcome.error, QcflowError)
    assert hostile.leaks(outcome) == []
