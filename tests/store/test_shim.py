"""The dialect shim translates spelling only: checked against a fake backend that records
what it was asked and answers a fixed status."""

from __future__ import annotations

from typing import Any

from tests.store.oss_shim import OssDialectShim


class FakeBackend:
    def __init__(self, status: str, body: bytes = b"", headers: list[tuple[str, str]] | None = None) -> None:
        self.status, self.body, self.headers = status, body, headers or []
        self.environ: dict[str, Any] = {}

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        self.environ = dict(environ)
        start_response(self.status, [("Content-Type", "application/xml"), *self.headers])
        return [self.body]


def call(app: Any, **environ: Any) -> tuple[str, dict[str, str], bytes]:
    out: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        out["status"], out["headers"] = status, dict(headers)

    body = b"".join(app({"REQUEST_METHOD": "PUT", "QUERY_STRING": "", **environ}, start_response))
    return out["status"], out["headers"], body


def test_412_passes_through_unless_forbid_overwrite_was_asked() -> None:
    backend = FakeBackend("412 Precondition Failed", b"<Error><Code>PreconditionFailed</Code></Error>")
    status, _, body = call(OssDialectShim(backend), HTTP_IF_MATCH='"abc"')
    assert status.startswith("412") and b"PreconditionFailed" in body


def test_forbid_overwrite_is_if_none_match_and_412_is_409() -> None:
    backend = FakeBackend("412 Precondition Failed", b"<Error/>", [("x-amzn-requestid", "R1")])
    status, headers, body = call(OssDialectShim(backend), HTTP_X_OSS_FORBID_OVERWRITE="true")
    assert backend.environ["HTTP_IF_NONE_MATCH"] == "*"
    assert "HTTP_X_OSS_FORBID_OVERWRITE" not in backend.environ
    assert status.startswith("409") and b"<Code>FileAlreadyExists</Code>" in body and b"R1" in body
    assert headers["x-oss-request-id"] == "R1"


def test_success_is_not_touched_by_forbid_overwrite() -> None:
    backend = FakeBackend("200 OK")
    status, _, _ = call(OssDialectShim(backend), HTTP_X_OSS_FORBID_OVERWRITE="true")
    assert status == "200 OK"


def test_v4_scope_metadata_and_namespace() -> None:
    xml = (b'<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Contents><Key>k</Key>'
           b"</Contents></ListBucketResult>")
    backend = FakeBackend("200 OK", xml, [("x-amz-meta-run", "1")])
    status, headers, body = call(
        OssDialectShim(backend), REQUEST_METHOD="GET", QUERY_STRING="list-type=2&continuation-token=",
        HTTP_AUTHORIZATION="OSS4-HMAC-SHA256 Credential=AK/20240101/cn-hangzhou/oss/aliyun_v4_request,Signature=abc",
        HTTP_X_OSS_META_RUN="1",
    )
    assert backend.environ["HTTP_AUTHORIZATION"] == \
        "AWS4-HMAC-SHA256 Credential=AK/20240101/cn-hangzhou/s3/aws4_request,Signature=abc"
    assert backend.environ["HTTP_X_AMZ_META_RUN"] == "1"
    assert backend.environ["QUERY_STRING"] == "list-type=2"
    assert body == b"<ListBucketResult><Contents><Key>k</Key><Type>Normal</Type></Contents></ListBucketResult>"
    assert headers["x-oss-meta-run"] == "1" and headers["Content-Length"] == str(len(body))


_XML = (b'<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Contents><Key>k</Key>'
        b"</Contents></ListBucketResult>")


def test_object_data_is_never_translated() -> None:
    for method in ("GET", "PUT"):
        backend = FakeBackend("200 OK", _XML)
        status, headers, body = call(OssDialectShim(backend), REQUEST_METHOD=method, PATH_INFO="/bkt/doc.xml")
        assert body == _XML and headers["Content-Length"] == str(len(_XML))


def test_api_answers_are_translated() -> None:
    for path, query in [("/bkt", "list-type=2"), ("/bkt/", "versioning"), ("/bkt/k", "uploads"),
                        ("/bkt/k", "uploadId=U1")]:
        backend = FakeBackend("200 OK", _XML)
        _, _, body = call(OssDialectShim(backend), REQUEST_METHOD="GET", PATH_INFO=path, QUERY_STRING=query)
        assert b"xmlns" not in body, (path, query)
    # an error body for an object request is an API answer too
    backend = FakeBackend("404 Not Found", b'<Error xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Code>NoSuchKey'
                                           b"</Code></Error>")
    _, _, body = call(OssDialectShim(backend), REQUEST_METHOD="GET", PATH_INFO="/bkt/k")
    assert body == b"<Error><Code>NoSuchKey</Code></Error>"


def test_versioning_answer_gets_oss_root_element() -> None:
    backend = FakeBackend("200 OK", b'<?xml version="1.0"?>\n<GetBucketVersioningResponse xmlns="http://s3.amazonaws'
                                    b'.com/doc/2006-03-01/"><Status>Enabled</Status></GetBucketVersioningResponse>')
    _, _, body = call(OssDialectShim(backend), REQUEST_METHOD="GET", PATH_INFO="/bkt", QUERY_STRING="versioning")
    assert body == b'<?xml version="1.0"?>\n<VersioningConfiguration><Status>Enabled</Status></VersioningConfiguration>'
