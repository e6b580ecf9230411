"""``qcflow.callback`` (parse and verify SCA callbacks) and the FC3 HTTP-trigger event model."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
import time
from urllib.parse import parse_qsl, quote, urlsplit

import pytest

from qcflow.callback import CallbackHint, InvalidCallbackError, callback_signature, parse_callback, verify_callback
from qcflow.errors import PermanentError
from qcflow.models.events import HttpEvent, InvalidEventError, parse_http_event
from qcflow.models.sca import UploadAudioDataJson
from qcflow.tools.sandbox.options import DEFAULT_ALI_UID
from tests.sandbox.conftest import options, running_sandbox, sca_client
from tests.sandbox.receiver import Received, running_receiver

TASK = "76DB5D8C-5BD9-4A13-A96D-0B1ECDA5D5A5"
UID = "1688000000000001"
NOW = 1_763_600_000_000
MAX_AGE = 600.0


def oracle(task_id: str, timestamp: str, ali_uid: str) -> str:
    """The documented formula, written out independently of the module under test."""
    return base64.b64encode(hashlib.md5(f"taskId={task_id}&timestamp={timestamp}&aliUid={ali_uid}".encode()).digest()).decode()


def good_query(timestamp: int = NOW, task_id: str = TASK, ali_uid: str = UID) -> dict[str, str]:
    return {
        "taskId": task_id,
        "timestamp": str(timestamp),
        "aliUid": ali_uid,
        "signature": oracle(task_id, str(timestamp), ali_uid),
        "event": "TaskComplete",
    }


def verify(query: dict[str, str], now_ms: int = NOW, **kw: object) -> CallbackHint:
    hint, signature = parse_callback(query)
    verify_callback(hint, signature, now_ms=now_ms, max_age_seconds=MAX_AGE, **kw)  # type: ignore[arg-type]
    return hint


def reason_of(call) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidCallbackError) as info:
        call()
    assert isinstance(info.value, PermanentError) and info.value.code == "InvalidCallback"
    assert len(str(info.value)) < 300, "an error message never carries the junk it was given"
    return info.value.reason


# --------------------------------------------------------------------------- signature


@pytest.mark.parametrize(("task_id", "timestamp", "ali_uid"), [(TASK, str(NOW), UID), ("t-1", "1", "1"), ("20260101-abc", "1700000000000", "1234567890123456")])
def test_signature_is_the_documented_formula(task_id: str, timestamp: str, ali_uid: str) -> None:
    assert callback_signature(task_id, timestamp, ali_uid) == oracle(task_id, timestamp, ali_uid)
    assert len(callback_signature(task_id, timestamp, ali_uid)) == 24


def test_a_good_callback_verifies_and_says_which_task() -> None:
    hint = verify(good_query(), expected_ali_uid=UID)
    assert hint == CallbackHint(TASK, NOW, UID, "TaskComplete")


def test_event_is_optional_and_not_signed() -> None:
    query = good_query()
    del query["event"]
    assert verify(query).event is None


@pytest.mark.parametrize(
    "mangle",
    [
        lambda s: s,
        lambda s: s.replace("+", " "),  # a form decoder on the way turned + into a space
        lambda s: quote(s, safe=""),  # still percent-encoded (decoded once too few)
        lambda s: s.rstrip("="),  # padding stripped
        lambda s: s.replace("+", "-").replace("/", "_"),  # URL-safe alphabet
        lambda s: f"  {s} ",
    ],
)
def test_signature_survives_transit_mangling(mangle) -> None:  # type: ignore[no-untyped-def]
    # find a timestamp whose signature holds both '+' and '/' so every mangling matters
    stamp = next(t for t in range(NOW, NOW + 10_000) if {"+", "/"} <= set(oracle(TASK, str(t), UID)))
    query = good_query(stamp)
    query["signature"] = mangle(query["signature"])
    verify(query, now_ms=stamp)


@pytest.mark.parametrize(
    "signature",
    [
        "",
        "AAAAAAAAAAAAAAAAAAAAAA==",  # well-formed, wrong
        "not base64 at all!",
        base64.b64encode(b"x" * 17).decode(),  # not 16 bytes
        "A" * 500,
        "%ZZ",
        "=" * 24,
    ],
)
def test_a_bad_signature_is_refused(signature: str) -> None:
    query = good_query()
    query["signature"] = signature
    assert reason_of(lambda: verify(query)) in ("signature", "missing", "too_large")


def test_a_signature_for_other_values_is_refused() -> None:
    for field, value in (("taskId", "OTHER-TASK"), ("timestamp", str(NOW + 1)), ("aliUid", "1688000000000002")):
        query = good_query()
        query[field] = value
        assert reason_of(lambda q=query: verify(q)) == "signature", field


def test_verify_compares_in_constant_time() -> None:
    """The comparison is ``hmac.compare_digest`` on the decoded bytes (checked by reading the
    code: timing cannot be asserted in a test); here, only that the decoded form is compared."""
    query = good_query()
    query["signature"] = query["signature"][:-3] + "A=="  # differs in the last byte only
    assert reason_of(lambda: verify(query)) == "signature"


# --------------------------------------------------------------------------- freshness and account


def test_stale_and_future_timestamps_are_refused() -> None:
    assert verify(good_query(NOW - 599_000), now_ms=NOW)
    assert reason_of(lambda: verify(good_query(NOW - 601_000), now_ms=NOW)) == "stale"
    assert verify(good_query(NOW + 59_000), now_ms=NOW)
    assert reason_of(lambda: verify(good_query(NOW + 61_000), now_ms=NOW)) == "future"
    assert verify(good_query(NOW + 119_000), now_ms=NOW, future_skew_seconds=120)


def test_another_accounts_callback_is_refused_when_an_account_is_expected() -> None:
    other = good_query(ali_uid="1688000000000999")
    assert verify(other).ali_uid == "1688000000000999"  # no expectation: accepted
    assert reason_of(lambda: verify(other, expected_ali_uid=UID)) == "ali_uid"


# --------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("taskId", None, "missing"),
        ("taskId", "", "missing"),
        ("taskId", "../../etc/passwd", "malformed"),
        ("taskId", "a b", "malformed"),
        ("taskId", "x" * 129, "malformed"),
        ("taskId", "x" * 100_000, "too_large"),
        ("taskId", "\ud800", "malformed"),
        ("taskId", "任务", "malformed"),
        ("timestamp", None, "missing"),
        ("timestamp", "12a", "malformed"),
        ("timestamp", "-5", "malformed"),
        ("timestamp", "0123", "malformed"),  # the text is signed: a leading zero would not round-trip
        ("timestamp", "1" * 17, "malformed"),
        ("timestamp", "1.5", "malformed"),
        ("aliUid", None, "missing"),
        ("aliUid", "1;drop", "malformed"),
        ("signature", None, "missing"),
        ("event", "Task Complete<script>", "malformed"),
    ],
)
def test_missing_and_malformed_fields(field: str, value: str | None, reason: str) -> None:
    query = good_query()
    if value is None:
        del query[field]
    else:
        query[field] = value
    assert reason_of(lambda: parse_callback(query)) == reason


@pytest.mark.parametrize(
    "query",
    [
        None,
        ["taskId", TASK],
        "taskId=x",
        {"taskId": 5, "timestamp": str(NOW), "aliUid": UID, "signature": "x"},
        {"taskId": True, "timestamp": str(NOW), "aliUid": UID, "signature": "x"},
        {"taskId": {"nested": "x"}, "timestamp": str(NOW), "aliUid": UID, "signature": "x"},
        {"taskId": [TASK, TASK], "timestamp": str(NOW), "aliUid": UID, "signature": "x"},
        {f"k{i}": "v" for i in range(10_000)},
    ],
)
def test_junk_queries_are_refused(query: object) -> None:
    assert reason_of(lambda: parse_callback(query)) in ("malformed", "too_large")  # type: ignore[arg-type]


def test_a_list_of_one_value_is_accepted() -> None:
    query = {name: [value] for name, value in good_query().items()}
    hint, _ = parse_callback(query)  # type: ignore[arg-type]
    assert hint.task_id == TASK


def test_a_repeated_parameter_joined_by_a_comma_is_malformed() -> None:
    query = good_query()
    query["taskId"] = f"{TASK},{TASK}"  # FC joins repeated query parameters with commas
    assert reason_of(lambda: parse_callback(query)) == "malformed"


def test_huge_junk_is_not_echoed() -> None:
    junk = "<" + "A" * 50_000
    with pytest.raises(InvalidCallbackError) as info:
        parse_callback({**good_query(), "taskId": junk[:500]})
    assert "A" * 60 not in str(info.value) and "'<AAA" in str(info.value)


# --------------------------------------------------------------------------- POST bodies


@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded", "application/x-www-form-urlencoded; charset=utf-8", None])
def test_form_body(content_type: str | None) -> None:
    body = "&".join(f"{k}={quote(v, safe='')}" for k, v in good_query().items())
    hint, signature = parse_callback({}, body.encode(), content_type)
    verify_callback(hint, signature, now_ms=NOW, max_age_seconds=MAX_AGE)


@pytest.mark.parametrize("content_type", ["application/json", "application/json;charset=UTF-8", None])
def test_json_body(content_type: str | None) -> None:
    data: dict[str, object] = {**good_query(), "other": {"deep": [1, 2, {"x": None}]}}
    data["timestamp"] = NOW  # a number in JSON is fine
    hint, signature = parse_callback({}, json.dumps(data), content_type)
    verify_callback(hint, signature, now_ms=NOW, max_age_seconds=MAX_AGE)


def test_query_and_body_together_must_agree() -> None:
    query = good_query()
    body = json.dumps({"taskId": TASK, "extra": 1})
    assert parse_callback(query, body, "application/json")[0].task_id == TASK
    conflicting = json.dumps({"taskId": "OTHER"})
    assert reason_of(lambda: parse_callback(query, conflicting, "application/json")) == "conflict"
    partial = {k: v for k, v in query.items() if k != "signature"}
    assert parse_callback(partial, f"signature={quote(query['signature'], safe='')}", "application/x-www-form-urlencoded")[1] == query["signature"]


def test_an_empty_body_adds_nothing() -> None:
    assert parse_callback(good_query(), b"", "application/json")[0].task_id == TASK
    assert parse_callback(good_query(), "   ", None)[0].task_id == TASK


@pytest.mark.parametrize(
    ("body", "content_type", "reason"),
    [
        (b"\xff\xfe\x00junk", "application/json", "malformed"),  # invalid UTF-8
        (b"\xc3\x28", "application/x-www-form-urlencoded", "malformed"),
        ("{not json", "application/json", "malformed"),
        ("[1, 2]", "application/json", "malformed"),
        ("[" * 5000 + "]" * 5000, "application/json", "malformed"),  # deep JSON
        ('{"a":' * 2500 + "1" + "}" * 2500, "application/json", "malformed"),  # deep, yet under the size bound
        (b"x" * 1_000_000, "application/json", "too_large"),
        ("&".join(f"k{i}=v" for i in range(2000)), "application/x-www-form-urlencoded", "too_large"),
        (json.dumps({"taskId": ["a", "b"]}), "application/json", "malformed"),
        (json.dumps({"taskId": 1.5}), "application/json", "malformed"),
        (json.dumps({"taskId": None}), "application/json", "malformed"),
        ("\ud800", None, "malformed"),
    ],
)
def test_hostile_bodies(body: bytes | str, content_type: str | None, reason: str) -> None:
    assert reason_of(lambda: parse_callback({}, body, content_type)) == reason


def test_a_body_of_the_wrong_type_is_refused() -> None:
    assert reason_of(lambda: parse_callback(good_query(), {"taskId": TASK})) == "malformed"  # type: ignore[arg-type]


# --------------------------------------------------------------------------- the FC3 HTTP-trigger event


def fc_event(method: str = "GET", query: dict[str, str] | None = None, body: bytes = b"", base64_body: bool = False, **extra: object) -> dict[str, object]:
    return {
        "version": "v1",
        "rawPath": "/callback%20x",
        "body": base64.b64encode(body).decode() if base64_body else body.decode("utf-8"),
        "isBase64Encoded": base64_body,
        "headers": {"Content-Type": "application/x-www-form-urlencoded", "User-Agent": "sca"},
        "queryParameters": query if query is not None else good_query(),
        "requestContext": {
            "accountId": "123456",
            "domainName": "abc.cn-shanghai.fcapp.run",
            "requestId": "1-64f6cd87-abc",
            "time": "2026-11-20T08:30:00Z",
            "http": {"method": method, "path": "/callback x", "protocol": "HTTP/1.1", "sourceIp": "11.11.11.11", "userAgent": "sca"},
        },
        **extra,
    }


def test_http_event_as_fc_sends_it() -> None:
    for raw in (json.dumps(fc_event()).encode(), json.dumps(fc_event()), fc_event()):
        event = parse_http_event(raw)
        assert isinstance(event, HttpEvent)
        assert event.method == "GET" and event.path == "/callback x" and event.raw_path == "/callback%20x"
        assert event.query == good_query() and event.body == b""
        assert event.header("content-type") == event.header("Content-Type") == "application/x-www-form-urlencoded"
        assert event.source_ip == "11.11.11.11" and event.request_id == "1-64f6cd87-abc"
        assert verify(event.query).task_id == TASK


def test_http_event_body_plain_and_base64() -> None:
    form = "&".join(f"{k}={quote(v, safe='')}" for k, v in good_query().items()).encode()
    for base64_body in (False, True):
        event = parse_http_event(fc_event("post", query={}, body=form, base64_body=base64_body))
        assert event.method == "POST" and event.body == form
        hint, signature = parse_callback(event.query, event.body, event.header("content-type"))
        verify_callback(hint, signature, now_ms=NOW, max_age_seconds=MAX_AGE)
    binary = bytes(range(256))
    assert parse_http_event(fc_event("POST", body=binary, base64_body=True)).body == binary


def test_http_event_minimal_and_header_spellings() -> None:
    event = parse_http_event({"requestContext": {"http": {"method": "GET"}}, "headers": {"X-A": "1", "x-a": "2"}})
    assert event.path == "/" and event.query == {} and event.body == b"" and event.header("x-a") in ("1,2", "2,1")


@pytest.mark.parametrize(
    "raw",
    [
        b"\xff\xfe not utf-8",
        b"not json",
        b"[1, 2]",
        b"[" * 100_000,  # deep JSON
        b'{"a":' * 50_000,
        "null",
        {},  # no method
        {"requestContext": {"http": {"method": "GET /x"}}},
        {"requestContext": {"http": {"method": 5}}},
        {"requestContext": "x"},
        {"requestContext": {"http": {"method": "GET"}}, "queryParameters": {"a": 1}},
        {"requestContext": {"http": {"method": "GET"}}, "queryParameters": {"a": ["x"]}},
        {"requestContext": {"http": {"method": "GET"}}, "headers": ["x"]},
        {"requestContext": {"http": {"method": "GET"}}, "body": 5},
        {"requestContext": {"http": {"method": "GET"}}, "body": "%%%", "isBase64Encoded": True},
        {"requestContext": {"http": {"method": "GET"}}, "body": "aGk", "isBase64Encoded": True},
        {"requestContext": {"http": {"method": "GET"}}, "body": "x", "isBase64Encoded": "yes"},
        {"requestContext": {"http": {"method": "GET"}}, "body": "\ud800"},
        '{"requestContext": {"http": {"method": "GET"}}, "body": "\\ud800"}',
    ],
)
def test_malformed_http_events(raw: object) -> None:
    with pytest.raises(InvalidEventError) as info:
        parse_http_event(raw)  # type: ignore[arg-type]
    assert len(str(info.value)) < 500


# --------------------------------------------------------------------------- end to end


def as_fc_event(got: Received) -> bytes:
    """What FC would hand the callback function for a request the sandbox sent (decoded query)."""
    return json.dumps(
        {
            "version": "v1",
            "rawPath": got.path,
            "headers": got.headers,
            "queryParameters": dict(parse_qsl(got.raw_query, keep_blank_values=True)),
            "body": got.body.decode(),
            "isBase64Encoded": False,
            "requestContext": {"requestId": "r-1", "http": {"method": got.method, "path": got.path, "sourceIp": "127.0.0.1"}},
        }
    ).encode()


@pytest.mark.anyio
@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_sandbox_callback_through_the_fc_event_verifies(method: str) -> None:
    """Sandbox → real loopback receiver → FC3 event → parse_http_event → parse/verify."""
    quick = options(task_seconds=0.1, task_jitter_seconds=0.0, callback_method=method)
    with running_receiver() as receiver, running_sandbox(quick) as server:
        batch = UploadAudioDataJson(call_list=[{"voice_file_url": "http://127.0.0.1/e2e.mkv", "call_uuid": f"e2e-{method}"}], callback_url=receiver.url + "/hook")
        task_id = (await sca_client(server).upload_audio_data(batch)).task_id
        (got,) = receiver.wait_for(1)
    event = parse_http_event(as_fc_event(got))
    assert event.method == method and urlsplit(receiver.url + event.path).path == "/hook"
    hint, signature = parse_callback(event.query, event.body or None, event.header("content-type"))
    verify_callback(hint, signature, now_ms=int(time.time() * 1000), max_age_seconds=MAX_AGE, expected_ali_uid=DEFAULT_ALI_UID)
    assert hint.task_id == task_id and hint.event == "TaskComplete"


def test_the_runtime_module_needs_only_the_standard_library() -> None:
    """The callback function imports ``qcflow.callback``: stdlib and ``qcflow.errors``, nothing else."""
    code = "import sys, qcflow.callback; print(__import__('json').dumps(sorted(sys.modules)))"
    loaded = json.loads(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout)
    ours = sorted(m for m in loaded if m.startswith("qcflow"))
    assert ours == ["qcflow", "qcflow.callback", "qcflow.errors"], ours
    assert not [m for m in loaded if m.split(".")[0] in ("pydantic", "httpx", "alibabacloud_oss_v2", "uvicorn")]
