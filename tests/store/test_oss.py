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


def test_writer_failure_aborts_upload(moto_oss: MotoOss, oss_store: OssStore) -> None:
    moto_oss.injector.add(_Fault(remaining=10, kind="answer", status="500 Internal Server Error",
                                 match=lambda env: "partNumber=3" in env.get("QUERY_STRING", "")))
    with pytest.raises(ServiceUnavailableError):
        with oss_store.open_writer("big", part_size=100 * 1024) as w:
            for _ in range(6):
                w.write(b"x" * 100 * 1024)
    with pytest.raises(NotFoundError):
        oss_store.head("big")
    uploads = oss_store._client.list_multipart_uploads(oss.ListMultipartUploadsRequest(bucket=BUCKET))
    assert not [u for u in (uploads.uploads or []) if u.key.startswith(oss_store.prefix)]
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

    client = build_client(oss_settings(None, **settings), CREDS)
    url = client.presign(oss.GetObjectRequest(bucket="bkt", key="k"), expires=timedelta(minutes=1)).url
    return urlsplit(url).scheme + "://" + urlsplit(url).netloc


def test_endpoints_from_settings() -> None:
    assert _presign_host(region="cn-shanghai") == "https://bkt.oss-cn-shanghai.aliyuncs.com"
    assert _presign_host(region="cn-shanghai", oss_internal=True) == "https://bkt.oss-cn-shanghai-internal.aliyuncs.com"
    assert _presign_host(region="cn-beijing", oss_endpoint="oss-cn-beijing-internal.aliyuncs.com") == \
        "https://bkt.oss-cn-beijing-internal.aliyuncs.com"
