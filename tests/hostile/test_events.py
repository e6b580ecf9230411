"""Hostile trigger events against the real handlers: malformed, oversized, mistyped, invalid
UTF-8, deeply nested, path-traversing, outside the recording prefix.

Every case must end in a clear answer — a return value, or a qcflow error with a bounded
message — with a JSON log line, nothing written outside the store's ``state/`` and
``results/``, no secret anywhere (``Hostile.check``), and no call to CCC or SCA for an event
that names no recording.
"""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import pytest

from qcflow.callback import callback_signature
from qcflow.tools.fc_local import http_event, oss_event, timer_event
from tests.hostile.conftest import BUCKET, CALLBACK_PATH, Hostile, unique_tmp_name

GOOD_KEY = "ccc/2026/11/20/job-1001.mkv"


def _record(key: Any = GOOD_KEY, bucket: Any = BUCKET, **extra: Any) -> dict[str, Any]:
    record = {"eventName": "ObjectCreated:PutObject", "eventSource": "acs:oss", "region": "cn-shanghai",
              "oss": {"bucket": {"name": bucket}, "object": {"key": key, "size": 10, "eTag": "x"}}}
    record.update(extra)
    return record


def _event(*records: Any) -> bytes:
    return json.dumps({"events": list(records)}).encode("utf-8")


DEEP = 100_000

# --------------------------------------------------------------------------- OSS events

MALFORMED_OSS = {
    "empty": b"",
    "whitespace": b"   \n",
    "null": b"null",
    "a list": b"[]",
    "a string": b'"events"',
    "a number": b"12",
    "events null": b'{"events": null}',
    "events a string": b'{"events": "ccc/job-1.mkv"}',
    "events empty": b'{"events": []}',
    "events of numbers": b'{"events": [1, 2]}',
    "record without oss": json.dumps({"events": [{"eventName": "ObjectCreated:PutObject"}]}).encode(),
    "bucket name a number": _event(_record(bucket=12)),
    "bucket name empty": _event(_record(bucket="")),
    "key a number": _event(_record(key=1234)),
    "key null": _event(_record(key=None)),
    "key empty": _event(_record(key="")),
    "key a list": _event(_record(key=["ccc/a.mkv"])),
    "size a word": json.dumps({"events": [{**_record(), "oss": {"bucket": {"name": BUCKET},
                                                                  "object": {"key": GOOD_KEY, "size": "huge"}}}]}).encode(),
    "eventName an object": _event(_record(eventName={"a": 1})),
    "invalid UTF-8": b'{"events":[{"eventName":"ObjectCreated:PutObject","oss":{"bucket":{"name":"recordings"},'
                     b'"object":{"key":"ccc/\xff\xfe\xfd.mkv"}}}]}',
    "lone surrogate in the key": b'{"events":[{"eventName":"ObjectCreated:PutObject","oss":{"bucket":{"name":"recordings"},'
                                 b'"object":{"key":"ccc/job-1\\ud800.mkv"}}}]}',
    "deeply nested": b'{"events":' + b"[" * DEEP + b"]" * DEEP + b"}",
    "deeply nested in a record": b'{"events":[{"eventName":"x","extra":' + b"[" * DEEP + b"]" * DEEP + b"}]}",
    "truncated": _event(_record())[:-7],
    "NaN in a field": b'{"events":[{"eventName":"ObjectCreated:PutObject","oss":{"bucket":{"name":"recordings"},'
                      b'"object":{"key":"ccc/job-1.mkv","size":NaN}}}]}',
}


@pytest.mark.parametrize("raw", list(MALFORMED_OSS.values()), ids=list(MALFORMED_OSS))
def test_a_malformed_oss_event_is_refused_with_a_clear_line(hostile: Hostile, raw: bytes) -> None:
    hostile.put_recording(GOOD_KEY)
    outcome = hostile.invoke("push", raw)
    hostile.check(outcome, expect_events={"push_bad_event"})
    assert outcome.error is None and outcome.value["records"] == 0 and outcome.value["error"]
    assert hostile.service.requests == [], "nothing was asked of CCC or SCA"
    assert not (hostile.store_root / "state").exists()


BAIT = "bait/job-2002.mkv"  # a real audio file outside the recordings folder: traversal would find it

HOSTILE_KEYS = {
    "parent segments": "ccc/../../bait/job-2002.mkv",
    "parent from the root": "../bait/job-2002.mkv",
    "absolute": f"{unique_tmp_name()}/job-2002.mkv",
    "backslashes": "ccc\\..\\..\\bait\\job-2002.mkv",
    "NUL": "ccc/job-2002.mkv\x00.txt",
    "percent-encoded parents": "ccc/%2e%2e/%2e%2e/bait/job-2002.mkv",
    "plus-encoded parents": "ccc/..%2F..%2Fbait%2Fjob-2002.mkv",
    "dot segment": "ccc/./job-2002.mkv",
    "empty segment": "ccc//job-2002.mkv",
    "CRLF": "ccc/job-2002.mkv\r\nx-oss-meta-contact-id: job-1",
    "reserved segment": "ccc/.qcflow-tmp/job-2002.mkv",
    "outside the prefix": "other/job-2002.mkv",
    "the store's state": "state/push/records/x/g000000.claim.json",
    "the store's results": "results/dt=2026-11-20/hour=08/part-1.jsonl",
    "not audio": "ccc/2026/11/20/job-2002.txt",
    "2 kB": "ccc/" + "a" * 2000 + "-job-2002.mkv",
    "200 kB": "ccc/" + "b" * 200_000 + ".mkv",  # logged as a bounded prefix, not whole
    "segment too long for a folder": "ccc/" + "c" * 300 + "/job-2002.mkv",
    "no such object": "ccc/2026/11/20/job-2003.mkv",
    "right-to-left override": "ccc/2026/11/20/job-2004\u202e.mkv",
}


@pytest.mark.parametrize("key", list(HOSTILE_KEYS.values()), ids=list(HOSTILE_KEYS))
def test_a_hostile_key_reaches_no_file_outside_the_recordings_and_no_api(hostile: Hostile, key: str) -> None:
    bait = hostile.root / BAIT
    bait.parent.mkdir(parents=True)
    bait.write_bytes(b"\x1aE\xdf\xa3bait")
    hostile.put_recording(GOOD_KEY)
    outcome = hostile.invoke("push", oss_event(BUCKET, key))
    bait.unlink()
    bait.parent.rmdir()
    hostile.check(outcome, expect_events={"push_ignored", "push_outcome", "push_bad_event"})
    assert outcome.error is None
    statuses = {k: v for k, v in outcome.value.items() if k not in ("records", "error")}
    assert set(statuses) <= {"ignored", "failed"}, outcome.value
    assert hostile.service.requests == [], "no recording was pushed"
    assert not list((hostile.store_root / "state" / "push" / "records").glob("*")) if (hostile.store_root / "state").exists() else True


def test_a_foreign_or_traversing_bucket_name_writes_nothing(hostile: Hostile) -> None:
    hostile.put_recording(GOOD_KEY)
    outcome = hostile.invoke("push", _event(_record(bucket="../../etc"), _record(bucket="a" * 100_000)))
    hostile.check(outcome)
    assert outcome.error is None or outcome.error.__class__.__name__ != "ValueError"


def test_thousands_of_records_in_one_event_end_in_one_answer(hostile: Hostile) -> None:
    records = [_record(key=f"other/job-{i}.mkv") for i in range(3000)] + [_record(key="ccc/x.txt")] * 2000
    outcome = hostile.invoke("push", _event(*records))
    hostile.check(outcome, expect_events={"push_ignored"})
    assert outcome.value == {"records": 5000, "ignored": 5000}
    assert hostile.service.requests == []


# --------------------------------------------------------------------------- timer events

BAD_TIMER = {
    "not JSON": b"tick",
    "invalid UTF-8": b'{"payload": "\xff\xfe"}',
    "a list": b"[]",
    "payload a number": b'{"payload": 5}',
    "payload an object": b'{"payload": {"since": "2026-11-20T00:00:00Z"}}',
    "payload not JSON": json.dumps({"payload": "since yesterday"}).encode(),
    "payload a JSON list": json.dumps({"payload": "[1, 2]"}).encode(),
    "since garbage": timer_event({"since": "garbage"}),
    "since a number": timer_event({"since": 12345}),
    "since a list": timer_event({"since": ["2026-11-20"]}),
    "since an object": timer_event({"since": {"$gt": 1}}),
    "until garbage": timer_event({"since": "2026-11-20T00:00:00Z", "until": "later"}),
    "triggerTime a number": json.dumps({"triggerTime": 5, "payload": "{}"}).encode(),
    "huge payload": json.dumps({"payload": "x" * 2_000_000}).encode(),
}


@pytest.mark.parametrize("raw", list(BAD_TIMER.values()), ids=list(BAD_TIMER))
def test_a_junk_timer_payload_is_logged_and_the_plain_pass_runs(hostile: Hostile, raw: bytes) -> None:
    outcome = hostile.invoke("harvest", raw)
    hostile.check(outcome, expect_events={"harvest_bad_event"})
    assert outcome.error is None and outcome.value["mode"] == "incremental" and not outcome.value["lease_busy"]


#: Payloads that once escaped the handler or outran it (found by this corpus, fixed since):
#: a bare RecursionError, a bare ValueError, and 1.1 million one-hour windows built before
#: the deadline was looked at (17.7 million from year 1).
HOSTILE_TIMER = {
    "payload nested deeply": json.dumps({"payload": "[" * DEEP + "]" * DEEP}).encode(),
    "until without since": timer_event({"until": "2026-11-20T00:00:00Z"}),
    "since before SCA existed": timer_event({"since": "1900-01-01T00:00:00Z"}),
    "since year 1": timer_event({"since": "0001-01-01T00:00:00Z"}),
    "until before since": timer_event({"since": "2026-11-20T00:00:00Z", "until": "2026-11-19T00:00:00Z"}),
}


@pytest.mark.parametrize("raw", list(HOSTILE_TIMER.values()), ids=list(HOSTILE_TIMER))
def test_a_hostile_timer_payload_is_logged_and_the_plain_pass_runs(hostile: Hostile, raw: bytes) -> None:
    outcome = hostile.invoke("harvest", raw, timeout=3)
    hostile.check(outcome, expect_events={"harvest_bad_event"})
    assert outcome.error is None and outcome.value["mode"] == "incremental"


def test_a_backfill_payload_in_the_future_reads_nothing_and_says_so(hostile: Hostile) -> None:
    outcome = hostile.invoke("harvest", timer_event({"since": "9999-12-31T23:00:00Z"}))
    hostile.check(outcome)
    assert outcome.error is None and outcome.value["written"] == 0
    # an empty backfill, or the payload refused (logged) and the plain pass run instead
    assert (outcome.value["mode"] == "backfill" and outcome.value["windows"] == 0) or "harvest_bad_event" in outcome.events()


# --------------------------------------------------------------------------- HTTP callbacks


def _signed(task_id: str = "T-1", timestamp: str | None = None, ali_uid: str = "1688000000000001") -> dict[str, str]:
    stamp = timestamp or str(int(time.time() * 1000))
    return {"taskId": task_id, "timestamp": stamp, "aliUid": ali_uid,
            "signature": callback_signature(task_id, stamp, ali_uid), "event": "TaskComplete"}


def _http(**overrides: Any) -> bytes:
    event = json.loads(http_event("GET", CALLBACK_PATH, _signed()))
    for path, value in overrides.items():
        target = event
        *parents, last = path.split("__")
        for name in parents:
            target = target[name]
        target[last] = value
    return json.dumps(event).encode("utf-8")


JUNK_CALLBACKS = {
    "not JSON": b"GET /sca-callback?taskId=1",
    "invalid UTF-8": b'{"version":"v1","body":"\xff\xfe"}',
    "a list": b"[]",
    "no request context": json.dumps({"version": "v1", "queryParameters": _signed()}).encode(),
    "method missing": _http(requestContext__http__method=None),
    "method a script": _http(requestContext__http__method="<script>"),
    "headers a list": _http(headers=["a", "b"]),
    "query a list": _http(queryParameters=[["taskId", "T-1"]]),
    "query values numbers": _http(queryParameters={"taskId": 1, "timestamp": 2, "aliUid": 3, "signature": 4}),
    "body a number": _http(body=12),
    "isBase64Encoded a word": _http(isBase64Encoded="yes"),
    "bad Base64": _http(isBase64Encoded=True, body="%%%not-base64%%%"),
    "Base64 of invalid UTF-8": _http(isBase64Encoded=True, body=base64.b64encode(b"taskId=\xff\xfe").decode(), queryParameters={}),
    "huge body": _http(body="taskId=" + "A" * 3_000_000, queryParameters={}),
    "deep JSON body": _http(body="{" + '"a":{' * 20_000 + "}" * 20_001, headers={"content-type": "application/json"},
                            queryParameters={}),
    "JSON body with a list taskId": _http(body=json.dumps({**_signed(), "taskId": ["T-1", "T-2"]}),
                                          headers={"content-type": "application/json"}, queryParameters={}),
    "repeated parameters joined by FC": _http(queryParameters={**_signed(), "taskId": "T-1,T-2"}),
    "too many parameters": _http(queryParameters={**_signed(), **{f"p{i}": "x" for i in range(500)}}),
    "traversal taskId": _http(queryParameters=_signed("../../state/push/records")),
    "NUL taskId": _http(queryParameters=_signed("T-1\x00")),
    "CRLF taskId": _http(queryParameters=_signed("T-1\r\nx: y")),
    "huge taskId": _http(queryParameters=_signed("T" * 100_000)),
    "unicode taskId": _http(queryParameters=_signed("任务-1")),
    "timestamp in exponent form": _http(queryParameters={**_signed(), "timestamp": "1e12"}),
    "timestamp 40 digits": _http(queryParameters=_signed(timestamp="9" * 40)),
    "signature 10 kB": _http(queryParameters={**_signed(), "signature": "A" * 10_000}),
    "no signature": _http(queryParameters={k: v for k, v in _signed().items() if k != "signature"}),
    "stale": _http(queryParameters=_signed(timestamp=str(int(time.time() * 1000) - 86_400_000))),
    "far future": _http(queryParameters=_signed(timestamp=str(int(time.time() * 1000) + 86_400_000))),
    "query and body disagree": _http(body=json.dumps(_signed("T-2")), headers={"content-type": "application/json"}),
}


#: Events FC itself would never make: no path (so no token) can be read from them.
UNREADABLE_EVENTS = {"not JSON", "invalid UTF-8", "a list", "no request context", "method missing", "method a script",
                     "headers a list", "query a list", "query values numbers", "body a number",
                     "isBase64Encoded a word", "bad Base64"}


@pytest.mark.parametrize(("name", "raw"), list(JUNK_CALLBACKS.items()), ids=list(JUNK_CALLBACKS))
def test_a_junk_callback_is_answered_400_and_fetches_nothing(hostile: Hostile, name: str, raw: bytes) -> None:
    """With the token (the caller is SCA, or has the URL) a junk callback is a 400 with its reason;
    an event no path can be read from is a 404 like any request without the token."""
    outcome = hostile.invoke("callback", raw)
    hostile.check(outcome, expect_events={"callback_refused"})
    assert outcome.error is None and outcome.value["statusCode"] == (404 if name in UNREADABLE_EVENTS else 400)
    body = json.loads(outcome.value["body"])
    assert set(body) == {"error"} and len(body["error"]) < 40, "a short stable reason, nothing echoed"
    assert hostile.service.requests == [], "a refused hint costs no GetResult"
    assert not (hostile.store_root / "results").exists()


@pytest.mark.parametrize("path", ["/sca-callback", "/sca-callback/not-the-token-0123456789abcdef", "/"])
def test_a_well_signed_hint_without_the_token_is_a_404_that_costs_no_lookup(hostile: Hostile, path: str) -> None:
    outcome = hostile.invoke("callback", http_event("GET", path, _signed("T-1")))
    hostile.check(outcome, expect_events={"callback_refused"})
    assert outcome.value["statusCode"] == 404 and json.loads(outcome.value["body"]) == {"error": "not found"}
    assert hostile.service.requests == []


def test_a_well_signed_hint_for_an_unknown_task_costs_one_lookup_and_writes_nothing(hostile: Hostile) -> None:
    outcome = hostile.invoke("callback", http_event("POST", CALLBACK_PATH, _signed("NO-SUCH-TASK")))
    hostile.check(outcome, expect_events={"callback_harvested"})
    assert outcome.value["statusCode"] == 200 and json.loads(outcome.value["body"])["written"] == 0
    assert hostile.service.count("GetResult") == 1
    assert not (hostile.store_root / "results").exists()


def test_the_corpus_leaves_no_file_anywhere_else(hostile: Hostile, tmp_path: Path) -> None:
    """The check itself sees a file written outside the prefixes (it is not vacuous)."""
    (hostile.store_root / "escaped.json").parent.mkdir(parents=True, exist_ok=True)
    (hostile.store_root / "escaped.json").write_text("{}")
    (tmp_path / "beside.txt").write_text("x")
    assert sorted(hostile.outside_prefixes()) == ["beside.txt", "store/escaped.json"]
