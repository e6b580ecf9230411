"""OSS-adapter specifics: signing, credentials, endpoints, retries and error mapping.

Faults are injected by the harness's ``FaultInjector`` (outside the dialect shim), so the
SDK's real retryer and the adapter's real error handling are what is exercised.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import alibabacloud_oss_v2 as oss
import pytest

from qcflow.credentials import Credentials
from qcflow.errors import (
    AuthError,
    ConfigError,
    NotFoundError,
    RequestError,
    RetryableError,
    ServiceUnavailableError,
    ThrottledError,
    TransportError,
)
from qcflow.store.oss import CLAIM_META, OssStore, build_client, map_oss_error

from tests.store.conftest import BUCKET, CREDS, MotoOss, _Fault, make_oss_store, oss_settings


def _oss_error(status: int, code: str, request_id: str = "RID-1") -> oss.exceptions.OperationError:
    inner = oss.exceptions.ServiceError(status_code=status, code=code, message=f"{code} happened",
                                        request_id=request_id, ec="0000-00000000",
                                        timestamp=None, request_target="PUT http://x/k")
    return oss.exceptions.OperationError(name="PutObject", error=inner)


@pytest.mark.parametrize(("status", "code", "cls"), [
    (404, "NoSuchKey", NotFoundError),
    (404, "BadErrorResponse", NotFoundError),  # HEAD 404 has no body
    (404, "NoSuchBucket", ConfigError),
    (403, "AccessDenied", AuthError),
    (403, "SignatureDoesNotMatch", AuthError),
    (401, "Unauthorized", AuthError),
    (403, "InvalidAccessKeyId", AuthError),
    (403, "RequestTimeTooSkewed", AuthError),
    (403, "InvalidObjectState", RequestError),  # an archived object: about the object, not the deployment
    (500, "InternalError", ServiceUnavailableError),
    (502, "BadErrorResponse", ServiceUnavailableError),
    (503, "ServiceUnavailable", ServiceUnavailableError),
    (503, "Throttling", ThrottledError),
    (429, "SomethingNew", ServiceUnavailableError),
    (409, "FileAlreadyExists", RequestError),
    (400, "InvalidArgument", RequestError),
])
def test_error_mapping(status: int, code: str, cls: type) -> None:
    err = map_oss_error(_oss_error(status, code), "PutObject", "k")
    assert type(err) is cls
    assert err.http_status == status
    assert err.request_id == "RID-1"
    assert err.action == "PutObject"
    assert err.code == (None if code == "BadErrorResponse" else code)
    assert "RID-1" in str(err)


def test_transport_errors_are_retryable() -> None:
    err = map_oss_error(oss.exceptions.OperationError(
        name="GetObject", error=oss.exceptions.RequestError(error=ConnectionResetError("reset"))), "GetObject")
    assert isinstance(err, TransportError) and err.retryable
    cfg = map_oss_error(oss.exceptions.OperationError(name="GetObject", error=oss.exceptions.CredentialsEmptyError()),
                        "GetObject")
    assert isinstance(cfg, ConfigError)


# ------------------------------------------------------------ against moto
def test_requests_are_v4_signed_with_sts_token(moto_oss: MotoOss, oss_store: OssStore) -> None:
    oss_store.put("k", b"v")
    put = [r for r in moto_oss.injector.seen if r["method"] == "PUT"][-1]
    assert put["authorization"].startswith(f"OSS4-HMAC-SHA256 Credential={CREDS.access_key_id}/")
    assert "/cn-hangzhou/oss/aliyun_v4_request" in put["authorization"]
    assert put["security_token"] == CREDS.security_token
    assert put["path"].startswith(f"/{BUCKET}/{oss_store.prefix}/")  # path style on an IP endpoint


def test_create_if_absent_sends_forbid_overwrite(moto_oss: MotoOss, oss_store: OssStore) -> None:
    assert oss_store.create_if_absent("c", b"1")
    assert [r["forbid_overwrite"] for r in moto_oss.injector.seen if r["method"] == "PUT"] == ["true"]


def test_credentials_provider_asked_on_every_request(moto_oss: MotoOss) -> None:
    calls: list[int] = []

    def provider() -> Credentials:
        calls.append(1)
        return Credentials("rotating-ak", "secret", f"token-{len(calls)}")

    store = make_oss_store(moto_oss, credentials=provider)
    store.put("a", b"1")
    store.get("a")
    assert len(calls) == 2
    tokens = [r["security_token"] for r in moto_oss.injector.seen if r["authorization"].startswith("OSS4")]
    assert tokens[-2:] == ["token-1", "token-2"]


def test_retries_5xx_then_succeeds(moto_oss: MotoOss, oss_store: OssStore) -> None:
    moto_oss.injector.add(_Fault(remaining=2, kind="answer", status="503 Service Unavailable"))
    etag = oss_store.put("retry", b"data")
    assert oss_store.get("retry").body == b"data"
    assert etag
    assert sum(1 for r in moto_oss.injector.seen if r["method"] == "PUT") == 3


def test_persistent_5xx_is_retryable_error(moto_oss: MotoOss, oss_store: OssStore) -> None:
    body = b"<Error><Code>InternalError</Code><Message>boom</Message><RequestId>RID-503</RequestId></Error>"
    moto_oss.injector.add(_Fault(remaining=10, kind="answer", status="500 Internal Server Error", body=body))
    with pytest.raises(ServiceUnavailableError) as info:
        oss_store.get("whatever")
    assert info.value.retryable and info.value.code == "InternalError" and info.value.request_id == "RID-503"
    assert sum(1 for r in moto_oss.injector.seen if r["method"] == "GET") == 3  # max_attempts


def test_access_denied_is_auth_error(moto_oss: MotoOss, oss_store: OssStore) -> None:
    body = b"<Error><Code>AccessDenied</Code><Message>no</Message><RequestId>RID-403</RequestId></Error>"
    moto_oss.injector.add(_Fault(remaining=1, kind="answer", status="403 Forbidden", body=body))
    with pytest.raises(AuthError) as info:
        oss_store.put("k", b"v")
    assert (info.value.code, info.value.request_id, info.value.http_status) == ("AccessDenied", "RID-403", 403)
    assert sum(1 for r in moto_oss.injector.seen if r["method"] == "PUT") == 1  # not retried


def test_timeout_is_transport_error(moto_oss: MotoOss) -> None:
    store = make_oss_store(moto_oss, http_timeout_seconds=0.3, max_attempts=1)
    moto_oss.injector.add(_Fault(remaining=1, kind="delay", seconds=0.8))
    with pytest.raises(TransportError) as info:
        store.get("slow")
    assert isinstance(info.value, RetryableError)


def test_not_found_keeps_request_id(oss_store: OssStore) -> None:
    with pytest.raises(NotFoundError) as info:
        oss_store.get("missing")
    assert info.value.http_status == 404 and info.value.code == "NoSuchKey" and info.value.request_id


def test_missing_bucket_is_config_error(moto_oss: MotoOss) -> None:
    store = OssStore.from_settings("no-such-bucket", "p", oss_settings(moto_oss.endpoint), CREDS)
    with pytest.raises(ConfigError, match="QCFLOW_STORE"):
        store.put("k", b"v")


def test_create_if_absent_lost_answer_is_still_ours(moto_oss: MotoOss, oss_store: OssStore) -> None:
    """The first PUT lands but its answer is lost (503); the SDK retries and meets its own
    object (409). The claim token makes that a win, not a lost claim."""
    moto_oss.injector.add(_Fault(remaining=1, kind="lose", status="503 Service Unavailable",
                                 match=lambda env: env["REQUEST_METHOD"] == "PUT"))
    assert oss_store.create_if_absent("state/ledger/lost.json", b"mine") is True
    puts = [r for r in moto_oss.injector.seen if r["method"] == "PUT"]
    assert len(puts) == 2  # the retry happened and got 409
    assert oss_store.get("state/ledger/lost.json").body == b"mine"
    # ...while somebody else's claim is still reported as theirs.
    assert oss_store.create_if_absent("state/ledger/lost.json", b"other") is False


def test_claim_token_is_stored_but_hidden(oss_store: OssStore) -> None:
    assert oss_store.create_if_absent("t", b"1", metadata={"a": "b"})
    raw = oss_store._client.head_object(oss.HeadObjectRequest(bucket=BUCKET, key=f"{oss_store.prefix}/t"))
    assert set(raw.metadata) == {"a", CLAIM_META}
    assert dict(oss_store.head("t").metadata) == {"a": "b"}


def _uploads(store: OssStore) -> list[str]:
    uploads = store._client.list_multipart_uploads(oss.ListMultipartUploadsRequest(bucket=BUCKET))
    return [u.upload_id for u in (uploads.uploads or []) if u.key.startswith(store.prefix + "/")]


def test_writer_failure_aborts_upload(moto_oss: MotoOss, oss_store: OssStore) -> None:
    moto_oss.injector.add(_Fault(remaining=10, kind="answer", status="500 Internal Server Error",
                                 match=lambda env: "partNumber=3" in env.get("QUERY_STRING", "")))
    with pytest.raises(ServiceUnavailableError):
        with oss_store.open_writer("big", part_size=100 * 1024) as w:
            for _ in range(3):
                w.write(b"x" * 100 * 1024)
            assert _uploads(oss_store) == [w._upload_id]  # positive control: the upload is in flight
            for _ in range(3):
                w.write(b"x" * 100 * 1024)
    with pytest.raises(NotFoundError):
        oss_store.head("big")
    assert _uploads(oss_store) == []
    assert any(r["method"] == "DELETE" and "uploadId=" in r["query"] for r in moto_oss.injector.seen)


def test_part_size_bounds(oss_store: OssStore) -> None:
    with pytest.raises(RequestError):
        oss_store.open_writer("k", part_size=1024)


def test_prefix_isolation(moto_oss: MotoOss) -> None:
    a = make_oss_store(moto_oss, "iso/a")
    b = make_oss_store(moto_oss, "iso/ab")
    a.put("x", b"1")
    b.put("x", b"2")
    assert [i.key for i in a.list()] == ["x"]
    assert [i.key for i in b.list()] == ["x"]
    assert a.get("x").body == b"1" and b.get("x").body == b"2"


# ------------------------------------------------------------ no network
def _presign_host(**settings: Any) -> str:
    from urllib.parse import urlsplit

    sliced = oss_settings(None, **settings)
    client = build_client(sliced.store, sliced.http, CREDS)
    url = client.presign(oss.GetObjectRequest(bucket="bkt", key="k"), expires=timedelta(minutes=1)).url
    return urlsplit(url).scheme + "://" + urlsplit(url).netloc


def test_endpoints_from_settings() -> None:
    assert _presign_host(region="cn-shanghai") == "https://bkt.oss-cn-shanghai.aliyuncs.com"
    assert _presign_host(region="cn-shanghai", oss_internal=True) == "https://bkt.oss-cn-shanghai-internal.aliyuncs.com"
    assert _presign_host(region="cn-beijing", oss_endpoint="oss-cn-beijing-internal.aliyuncs.com") == \
        "https://bkt.oss-cn-beijing-internal.aliyuncs.com"


# ------------------------------------------------- review regressions
def _raw_server(handler: Any) -> tuple[Any, str]:
    """A one-shot-per-connection HTTP server on loopback that answers raw bytes: for
    answers a WSGI server will not send (a body shorter than its Content-Length)."""
    import socket
    import threading

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)

    def loop() -> None:
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                conn.sendall(handler(data))

    threading.Thread(target=loop, daemon=True).start()
    return sock, f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_truncated_get_body_is_transport_error() -> None:
    sock, endpoint = _raw_server(lambda req: b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nETag: \"x\"\r\n"
                                             b"Content-Type: application/octet-stream\r\n\r\n" + b"a" * 50)
    try:
        store = OssStore.from_settings(BUCKET, "p", oss_settings(endpoint, max_attempts=1), CREDS)
        with pytest.raises(TransportError) as info:
            store.get("k")
    finally:
        sock.close()
    assert info.value.retryable and str(info.value).count("GetObject") == 1


@pytest.mark.parametrize("detail", [
    __import__("requests").exceptions.ChunkedEncodingError("Connection broken: IncompleteRead"),
    __import__("requests").exceptions.ConnectionError("reset"),
    __import__("requests").exceptions.ReadTimeout("slow"),
    __import__("urllib3").exceptions.ProtocolError("Connection broken"),
    __import__("urllib3").exceptions.IncompleteRead(50, 50),
    ConnectionResetError("reset"),
])
def test_network_faults_are_transport_errors(detail: BaseException) -> None:
    for exc in (detail, oss.exceptions.OperationError(name="GetObject", error=oss.exceptions.RequestError(error=detail))):
        err = map_oss_error(exc, "GetObject", "k")
        assert type(err) is TransportError and err.retryable


@pytest.mark.parametrize("detail", [
    __import__("requests").exceptions.InvalidHeader("Invalid leading whitespace in header value: ' x'"),
    __import__("requests").exceptions.InvalidURL("bad url"),
    ValueError("something local"),
])
def test_client_side_errors_are_not_retryable(detail: BaseException) -> None:
    err = map_oss_error(oss.exceptions.OperationError(name="PutObject", error=oss.exceptions.RequestError(error=detail)),
                        "PutObject", "k")
    assert type(err) is RequestError and not err.retryable
    assert str(err).startswith("PutObject: ") and str(err).count("PutObject") == 1


def test_error_message_names_action_once(oss_store: OssStore) -> None:
    with pytest.raises(NotFoundError) as info:
        oss_store.get("missing")
    assert str(info.value).count("GetObject") == 1
    with pytest.raises(NotFoundError) as head:
        oss_store.head("missing")
    assert str(head.value).count("HeadObject") == 1 and "parse xml" not in str(head.value)


def test_header_refused_by_requests_is_never_sent(moto_oss: MotoOss, oss_store: OssStore) -> None:
    from qcflow.store import InvalidMetadataError

    with pytest.raises(InvalidMetadataError):
        oss_store.put("k", b"v", metadata={"a": " x"})
    assert not [r for r in moto_oss.injector.seen if r["method"] == "PUT"]


_LIST = (lambda env: env["REQUEST_METHOD"] == "GET" and "list-type=2" in env.get("QUERY_STRING", ""))


@pytest.mark.parametrize("body", [
    b"<html>captive portal</html>",
    b'<?xml version="1.0"?><ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>qcflow-test</Name>'
    b"<KeyCount>1</KeyCount><IsTruncated>false</IsTruncated><Contents><Key>x/a</Key><Size>1</Size></Contents>"
    b"</ListBucketResult>",
    b'<?xml version="1.0"?><ListBucketResult><Name>qcflow-test</Name><KeyCount>5</KeyCount>'
    b"<IsTruncated>false</IsTruncated><Contents><Key>x/a</Key><Size>1</Size></Contents></ListBucketResult>",
])
def test_unparseable_listing_is_retryable_not_empty(moto_oss: MotoOss, oss_store: OssStore, body: bytes) -> None:
    oss_store.put("a", b"1")
    moto_oss.injector.add(_Fault(remaining=1, kind="answer", status="200 OK", body=body, match=_LIST))
    with pytest.raises(ServiceUnavailableError, match="listing answer could not be parsed") as info:
        list(oss_store.list())
    assert info.value.retryable
    assert [i.key for i in oss_store.list()] == ["a"]  # positive control: a real answer parses


def test_listing_skips_invalid_keys_with_warning(oss_store: OssStore, caplog: pytest.LogCaptureFixture) -> None:
    oss_store.put("results/a.jsonl", b"1")
    for raw in ("results/", "results//b", "back\\slash", "results/.qcflow-tmp/t"):  # a console folder marker etc.
        oss_store._client.put_object(oss.PutObjectRequest(bucket=BUCKET, key=f"{oss_store.prefix}/{raw}", body=b""))
    with caplog.at_level("WARNING", logger="qcflow.store"):
        listed = [i.key for i in oss_store.list()]
    assert listed == ["results/a.jsonl"]
    warned = [r for r in caplog.records if r.name == "qcflow.store" and r.levelname == "WARNING"]
    assert sorted(r.args[1] for r in warned) == sorted(["results/", "results//b", "back\\slash", "results/.qcflow-tmp/t"])
    assert all(CREDS.access_key_secret not in r.getMessage() for r in warned)


def test_claim_with_every_answer_lost_is_uncertain_and_retry_with_token_wins(moto_oss: MotoOss,
                                                                               oss_store: OssStore) -> None:
    """Every attempt's answer is lost (the first one landed): the call fails retryably and
    says the object may exist; the caller's retry with the same claim_token learns it won."""
    put = (lambda env: env["REQUEST_METHOD"] == "PUT")
    moto_oss.injector.add(_Fault(remaining=3, kind="lose", status="503 Service Unavailable", match=put))
    with pytest.raises(RetryableError) as info:
        oss_store.create_if_absent("state/ledger/lost.json", b"mine", claim_token="invocation-42")
    assert info.value.prior_attempt_uncertain and "may have been applied" in str(info.value)
    assert oss_store.create_if_absent("state/ledger/lost.json", b"mine", claim_token="invocation-42") is True
    assert oss_store.create_if_absent("state/ledger/lost.json", b"mine") is False  # a fresh token is not ours
    assert oss_store.get("state/ledger/lost.json").body == b"mine"


def test_head_failure_after_409_is_uncertain(moto_oss: MotoOss, oss_store: OssStore) -> None:
    assert oss_store.create_if_absent("c", b"1")
    moto_oss.injector.add(_Fault(remaining=10, kind="answer", status="503 Service Unavailable",
                                 match=lambda env: env["REQUEST_METHOD"] == "HEAD"))
    with pytest.raises(ServiceUnavailableError) as info:
        oss_store.create_if_absent("c", b"2")
    assert info.value.prior_attempt_uncertain
    assert [r["method"] for r in moto_oss.injector.seen].count("PUT") == 2  # the second PUT's 409 was answered


_COMPLETE = (lambda env: env["REQUEST_METHOD"] == "POST" and "uploadId=" in env.get("QUERY_STRING", ""))
_NO_SUCH_UPLOAD = (b"<Error><Code>NoSuchUpload</Code><Message>The specified upload does not exist.</Message>"
                   b"<RequestId>RID-404</RequestId></Error>")


def test_lost_complete_answer_then_no_such_upload_is_success(moto_oss: MotoOss, oss_store: OssStore) -> None:
    """The Complete lands but its answer is lost; real OSS answers the SDK's retry 404
    NoSuchUpload (emulated here by the fault injector, as moto would accept it twice). The
    upload's token on the committed object makes that a success."""
    moto_oss.injector.add(_Fault(remaining=1, kind="lose", status="503 Service Unavailable", match=_COMPLETE))
    moto_oss.injector.add(_Fault(remaining=1, kind="answer", status="404 Not Found", body=_NO_SUCH_UPLOAD,
                                 match=_COMPLETE))
    data = b"z" * (3 * 100 * 1024)
    with oss_store.open_writer("results/part.jsonl", part_size=100 * 1024, metadata={"rows": "3"}) as w:
        w.write(data)
    assert sum(1 for r in moto_oss.injector.seen if _COMPLETE({"REQUEST_METHOD": r["method"],
                                                               "QUERY_STRING": r["query"]})) == 2
    got = oss_store.get("results/part.jsonl")
    assert got.body == data and got.etag == w.etag and w.etag
    assert dict(got.metadata) == {"rows": "3"}  # the upload's token is hidden


def test_no_such_upload_without_our_object_fails(moto_oss: MotoOss, oss_store: OssStore) -> None:
    moto_oss.injector.add(_Fault(remaining=1, kind="answer", status="404 Not Found", body=_NO_SUCH_UPLOAD,
                                 match=_COMPLETE))
    with pytest.raises(NotFoundError, match="NoSuchUpload|upload"):
        with oss_store.open_writer("results/gone.jsonl", part_size=100 * 1024) as w:
            w.write(b"z" * (3 * 100 * 1024))
    assert w.etag is None
    with pytest.raises(NotFoundError):
        oss_store.head("results/gone.jsonl")


def test_versioned_bucket_is_refused_for_create_if_absent(moto_oss: MotoOss) -> None:
    for status in ("Enabled", "Suspended"):
        bucket = f"qcflow-versioned-{status.lower()}"
        moto_oss.create_bucket(bucket, versioning=status)
        store = OssStore.from_settings(bucket, "p", oss_settings(moto_oss.endpoint), CREDS)
        with pytest.raises(ConfigError, match=f"QCFLOW_STORE.*versioning {status}.*another bucket"):
            store.create_if_absent("state/ledger/a", b"1")
        with pytest.raises(NotFoundError):
            store.head("state/ledger/a")  # refused before any PUT
        store.put("plain", b"ok")  # other operations are unaffected
        assert store.get("plain").body == b"ok"


def test_versioning_checked_once_per_store(moto_oss: MotoOss, oss_store: OssStore) -> None:
    assert oss_store.create_if_absent("a", b"1")
    assert oss_store.create_if_absent("b", b"1")
    assert not oss_store.create_if_absent("a", b"2")
    assert sum(1 for r in moto_oss.injector.seen if r["method"] == "GET" and "versioning" in r["query"]) == 1


_VERSIONING = (lambda env: env["REQUEST_METHOD"] == "GET" and "versioning" in env.get("QUERY_STRING", ""))
_DENIED = b"<Error><Code>AccessDenied</Code><Message>no</Message><RequestId>RID-403</RequestId></Error>"


def _deny_versioning(moto: MotoOss) -> None:
    moto.injector.add(_Fault(remaining=100, kind="answer", status="403 Forbidden", body=_DENIED, match=_VERSIONING))


def test_versioning_checked_once_when_many_threads_claim_at_once(moto_oss: MotoOss, oss_store: OssStore) -> None:
    """A cold start of a push with many threads: the first claims all wait for one check."""
    import threading

    n = 8
    barrier = threading.Barrier(n)
    moto_oss.injector.add(_Fault(remaining=1, kind="delay", seconds=0.2, match=_VERSIONING))  # a slow answer
    results: list[bool] = []

    def claim(i: int) -> None:
        barrier.wait()
        results.append(oss_store.create_if_absent(f"state/ledger/{i}", b"1"))

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results == [True] * n
    assert sum(1 for r in moto_oss.injector.seen if _VERSIONING({"REQUEST_METHOD": r["method"],
                                                                 "QUERY_STRING": r["query"]})) == 1


def test_versioning_check_denied_refuses_before_any_claim(moto_oss: MotoOss, oss_store: OssStore,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    """Fail closed: without the versioning answer a claim might "win" on a versioned bucket."""
    assert oss_store.allow_unverified_versioning is False  # the default of Settings
    _deny_versioning(moto_oss)
    for _ in range(2):  # a refusal is not remembered as "checked"
        with pytest.raises(ConfigError) as info:
            oss_store.create_if_absent("state/ledger/a", b"1", claim_token="tok-1")
        err = info.value
        assert "QCFLOW_STORE_ALLOW_UNVERIFIED_VERSIONING" in str(err) and "oss:GetBucketVersioning" in str(err)
        assert (err.code, err.http_status, err.request_id, err.action) == ("AccessDenied", 403, "RID-403",
                                                                             "GetBucketVersioning")
        assert CREDS.access_key_secret not in str(err) and CREDS.security_token not in str(err)
    assert [r["method"] for r in moto_oss.injector.seen if r["method"] != "GET"] == []  # no claim was sent
    with pytest.raises(NotFoundError):
        oss_store.head("state/ledger/a")
    oss_store.put("plain", b"ok")  # other operations do not need the check
    assert oss_store.get("plain").body == b"ok"
    # Granting the permission takes effect at the next call (positive control: the same call works).
    with moto_oss.injector.lock:
        moto_oss.injector.faults.clear()
    assert oss_store.create_if_absent("state/ledger/a", b"1", claim_token="tok-1") is True
    assert not [r for r in caplog.records if r.name == "qcflow.store" and r.levelname == "WARNING"]


def test_versioning_check_denied_with_opt_out_warns_once_and_proceeds(moto_oss: MotoOss,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    moto_oss.injector.reset()
    store = make_oss_store(moto_oss, store_allow_unverified_versioning=True)  # through from_settings
    assert store.allow_unverified_versioning is True
    _deny_versioning(moto_oss)
    with caplog.at_level("WARNING", logger="qcflow.store"):
        assert store.create_if_absent("a", b"1")
        assert store.create_if_absent("b", b"1")
        assert not store.create_if_absent("a", b"2")
    warnings = [r for r in caplog.records if r.name == "qcflow.store"]
    assert [r.levelname for r in warnings] == ["WARNING"]
    assert "versioning" in warnings[0].getMessage() and "QCFLOW_STORE_ALLOW_UNVERIFIED_VERSIONING" in \
        warnings[0].getMessage()
    assert sum(1 for r in moto_oss.injector.seen if _VERSIONING({"REQUEST_METHOD": r["method"],
                                                                 "QUERY_STRING": r["query"]})) == 1
    assert store.get("a").body == b"1"
    moto_oss.injector.reset()


def test_opt_out_does_not_admit_a_versioned_bucket(moto_oss: MotoOss) -> None:
    """The opt-out covers an unreadable answer only: a bucket known to be versioned is refused."""
    moto_oss.create_bucket("qcflow-versioned-optout", versioning="Enabled")
    store = OssStore.from_settings("qcflow-versioned-optout", "p",
                                   oss_settings(moto_oss.endpoint, store_allow_unverified_versioning=True), CREDS)
    with pytest.raises(ConfigError, match="versioning Enabled"):
        store.create_if_absent("state/ledger/a", b"1")


def test_open_store_threads_the_opt_out(moto_oss: MotoOss) -> None:
    from qcflow.store import open_store

    url = f"oss://{BUCKET}/t/open-store"
    for value in (False, True):
        store = open_store(url, settings=oss_settings(moto_oss.endpoint, store_allow_unverified_versioning=value),
                           credentials=CREDS)
        assert store.allow_unverified_versioning is value  # type: ignore[attr-defined]


def test_head_on_missing_bucket_is_config_error(moto_oss: MotoOss) -> None:
    store = OssStore.from_settings("no-such-bucket", "p", oss_settings(moto_oss.endpoint), CREDS)
    with pytest.raises(ConfigError, match="QCFLOW_STORE"):
        store.head("k")


def test_part_size_keeps_single_put_under_5_gib(oss_store: OssStore) -> None:
    from qcflow.store.oss import MAX_PART_SIZE, MAX_PUT_SIZE

    assert 2 * MAX_PART_SIZE <= MAX_PUT_SIZE  # up to two parts' worth may go out as one PutObject
    oss_store.open_writer("k", part_size=MAX_PART_SIZE)
    with pytest.raises(RequestError):
        oss_store.open_writer("k", part_size=MAX_PART_SIZE + 1)


def test_versioning_check_that_fails_on_the_server_or_the_network_fails_closed(moto_oss: MotoOss) -> None:
    """Not only a denial: a 5xx or a dead connection on GetBucketVersioning leaves the bucket unchecked, so no
    claim is sent (a versioned bucket would let every claimant win) and the next call checks again."""
    moto_oss.injector.reset()
    store = make_oss_store(moto_oss)
    moto_oss.injector.add(_Fault(remaining=100, kind="answer", status="503 Service Unavailable",
                                 body=b"<Error><Code>ServiceUnavailable</Code></Error>", match=_VERSIONING))
    for _ in range(2):
        with pytest.raises(RetryableError) as info:
            store.create_if_absent("state/ledger/b", b"1", claim_token="tok-1")
        assert info.value.action == "GetBucketVersioning", info.value
    assert [r["method"] for r in moto_oss.injector.seen if r["method"] != "GET"] == [], "no claim was sent"
    with moto_oss.injector.lock:
        moto_oss.injector.faults.clear()
        asked = sum(1 for r in moto_oss.injector.seen if _VERSIONING({"REQUEST_METHOD": r["method"],
                                                                     "QUERY_STRING": r["query"]}))
    assert store.create_if_absent("state/ledger/b", b"1", claim_token="tok-1") is True
    asked_again = sum(1 for r in moto_oss.injector.seen if _VERSIONING({"REQUEST_METHOD": r["method"],
                                                                       "QUERY_STRING": r["query"]}))
    assert asked_again == asked + 1, "a failed check is not remembered: the next call asks again"

    import socket

    with socket.socket() as probe:  # a port nothing listens on: connections are refused
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}"
    unreachable = OssStore.from_settings(BUCKET, "p", oss_settings(dead, max_attempts=1), CREDS)
    for _ in range(2):  # each call fails at the check: a failed check is not taken as "checked"
        with pytest.raises(RetryableError) as info:
            unreachable.create_if_absent("state/ledger/c", b"1", claim_token="tok-1")
        assert info.value.action == "GetBucketVersioning", info.value


@pytest.mark.parametrize("configured", [False, True])
def test_a_missing_recordings_bucket_blames_where_its_name_came_from(moto_oss: MotoOss, configured: bool) -> None:
    """Issue 22 #9: an event's bucket that does not exist blames the event, a configured one
    QCFLOW_RECORDINGS_URL; neither blames QCFLOW_STORE (whose bucket is there)."""
    import asyncio

    from qcflow.errors import ConfigError
    from qcflow.services import build_services

    moto_oss.create_bucket(BUCKET)
    extra = {"recordings_url": "oss://no-such-recordings"} if configured else {}
    settings = oss_settings(moto_oss.endpoint, **extra)

    async def listing() -> str:
        services = await build_services(lambda: CREDS, settings)
        try:
            store = services.recordings(services.recordings_url_for(None if configured else "no-such-recordings"))
            with pytest.raises(ConfigError) as info:
                list(store.list("ccc/"))
            return str(info.value)
        finally:
            await services.aclose()

    message = asyncio.run(listing())
    assert "does not exist" in message and "QCFLOW_STORE" not in message, message
    assert ("QCFLOW_RECORDINGS_URL names" in message) if configured else ("the OSS event" in message), message
