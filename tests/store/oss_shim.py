"""A WSGI middleware that lets moto's S3 server answer the OSS SDK V2 — dialect only.

moto has no OSS backend, but OSS's object API is S3's with a different dialect. This shim
sits between ``alibabacloud_oss_v2`` (talking real HTTP) and moto's
``DomainDispatcherApplication`` and rewrites spelling, never outcomes: every answer
(exists or not, created or refused, listed or not, which bytes) is decided by moto's S3
backend, and the code under test decides what to do with it.

What is translated, and nothing else:

Requests (OSS → S3)
  1. ``Authorization: OSS4-HMAC-SHA256 Credential=AK/DATE/REGION/oss/aliyun_v4_request,...``
     becomes an ``AWS4-HMAC-SHA256`` header whose scope names service ``s3``, so moto routes
     the request to its S3 backend. The signature is kept verbatim; moto never checks it.
  2. A V4 presigned URL's query (``x-oss-signature-version``, ``x-oss-credential``,
     ``x-oss-date``, ``x-oss-expires``, ``x-oss-signature``, ``x-oss-security-token``) is
     renamed to S3's ``X-Amz-*`` parameters with the scope rewritten as in (1), so moto
     treats the URL as presigned rather than anonymous (which it would answer 403).
  3. ``x-oss-meta-<name>`` headers become ``x-amz-meta-<name>``.
  4. ``x-oss-forbid-overwrite: true`` becomes ``If-None-Match: *`` (S3's create-if-absent
     on PutObject and CompleteMultipartUpload); ``false`` is dropped (it is the default).
  5. An empty ``continuation-token=`` query parameter is dropped (S3 rejects it with 400;
     OSS treats it as "first page").
  6. Requests translated by (4) are handed to moto one at a time (a lock). moto evaluates
     ``If-None-Match`` as check-then-put, which is not atomic across its server threads,
     while OSS evaluates ``x-oss-forbid-overwrite`` atomically. The lock does not evaluate
     the condition — moto still does — it only gives moto's check OSS's atomicity.

Responses (S3 → OSS)
  7. The S3 XML namespace ``xmlns="http://s3.amazonaws.com/doc/2006-03-01/"`` is removed:
     OSS's XML has none, and without this the SDK finds no ``Contents`` (a listing comes back
     empty, silently) and no ``UploadId``. Only *API* answers are translated — bucket-level
     requests (listings, versioning, batch delete), multipart ones (``?uploads``,
     ``?uploadId=``) and error bodies — never an object's bytes: a GET of an object whose
     body happens to look like S3 XML returns it untouched.
  8. Each ``<Contents>`` of a ListBucketResult gets OSS's ``<Type>Normal</Type>``; moto's
     ``<GetBucketVersioningResponse>`` root is named ``<VersioningConfiguration>``, as OSS
     (and S3) name it.
  9. ``x-amz-meta-<name>`` headers become ``x-oss-meta-<name>``; moto's request id
     (``x-amzn-requestid`` / ``x-amz-request-id``) is also sent as ``x-oss-request-id``,
     ``x-amz-version-id`` also as ``x-oss-version-id``.
 10. A 412 ``PreconditionFailed`` answer to a request translated by (4) becomes OSS's 409
     ``FileAlreadyExists`` error body (what OSS answers a forbidden overwrite). Every other
     status passes through unchanged; ``Content-Length`` is recomputed after (7)-(10), and
     HEAD answers keep the object's length.

Multipart needs nothing beyond (7): with the namespace gone the SDK reads ``UploadId``,
and CompleteMultipartUpload's body is the same XML in both dialects. The contract suite
checks that a completed multipart object has its full size and bytes.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qsl, urlencode, quote

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

_S3_XMLNS = b' xmlns="http://s3.amazonaws.com/doc/2006-03-01/"'
_OSS4 = re.compile(r"^OSS4-HMAC-SHA256\s+Credential=([^/,]+)/(\d{8})/([^/,]+)/oss/aliyun_v4_request(.*)$", re.S)
_CONTENTS_CLOSE = b"</Contents>"
_PRESIGN_PARAMS = {
    "x-oss-signature-version": "X-Amz-Algorithm",
    "x-oss-credential": "X-Amz-Credential",
    "x-oss-date": "X-Amz-Date",
    "x-oss-expires": "X-Amz-Expires",
    "x-oss-signature": "X-Amz-Signature",
    "x-oss-security-token": "X-Amz-Security-Token",
}
_PRESIGN_VALUE: dict[str, Callable[[str], str]] = {
    "x-oss-signature-version": lambda v: v.replace("OSS4-HMAC-SHA256", "AWS4-HMAC-SHA256"),
    "x-oss-credential": lambda v: v.replace("/oss/aliyun_v4_request", "/s3/aws4_request"),
}


def _file_exists_body(request_id: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<Error>'
        "<Code>FileAlreadyExists</Code>"
        "<Message>The object you specified already exists and can not be overwritten.</Message>"
        f"<RequestId>{request_id}</RequestId><HostId>127.0.0.1</HostId>"
        "<EC>0017-00000411</EC></Error>"
    ).encode()


class OssDialectShim:
    """Wrap moto's WSGI app so the OSS SDK V2 can talk to it (see the module docstring)."""

    def __init__(self, app: WSGIApp) -> None:
        self._app = app
        self._conditional_lock = threading.Lock()

    # ---------------------------------------------------------------- requests
    def _translate_request(self, environ: dict[str, Any]) -> bool:
        """Rewrite ``environ`` in place; True when create-if-absent was asked for."""
        auth = environ.get("HTTP_AUTHORIZATION", "")
        m = _OSS4.match(auth)
        if m:
            key_id, date, region, rest = m.groups()
            environ["HTTP_AUTHORIZATION"] = (
                f"AWS4-HMAC-SHA256 Credential={key_id}/{date}/{region}/s3/aws4_request{rest}"
            )

        for name in [n for n in environ if n.startswith("HTTP_X_OSS_META_")]:
            environ["HTTP_X_AMZ_META_" + name[len("HTTP_X_OSS_META_"):]] = environ.pop(name)

        forbid = str(environ.pop("HTTP_X_OSS_FORBID_OVERWRITE", "")).strip().lower() == "true"
        if forbid:
            environ["HTTP_IF_NONE_MATCH"] = "*"

        query = environ.get("QUERY_STRING", "")
        if "continuation-token" in query or "x-oss-signature" in query:
            pairs = parse_qsl(query, keep_blank_values=True)
            kept: list[tuple[str, str]] = []
            for k, v in pairs:
                if k == "continuation-token" and v == "":
                    continue
                if k in _PRESIGN_PARAMS:
                    k, v = _PRESIGN_PARAMS[k], _PRESIGN_VALUE.get(k, lambda x: x)(v)
                kept.append((k, v))
            if "x-oss-signature" in query:
                kept.append(("X-Amz-SignedHeaders", "host"))
            environ["QUERY_STRING"] = urlencode(kept, quote_via=quote)
        return forbid

    # --------------------------------------------------------------- responses
    @staticmethod
    def _translate_headers(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        for name, value in headers:
            lower = name.lower()
            if lower.startswith("x-amz-meta-"):
                out.append(("x-oss-meta-" + name[len("x-amz-meta-"):], value))
                continue
            out.append((name, value))
            if lower in ("x-amz-request-id", "x-amzn-requestid"):
                out.append(("x-oss-request-id", value))
            elif lower == "x-amz-version-id":
                out.append(("x-oss-version-id", value))
        return out

    @staticmethod
    def _is_api_answer(environ: dict[str, Any], status: str) -> bool:
        """True for answers the S3 API itself writes (XML to translate); False for object
        data, which must reach the client byte for byte."""
        if not status.startswith("2"):
            return True  # an error body
        if len(environ.get("PATH_INFO", "").strip("/").split("/", 1)) < 2:
            return True  # bucket level: listing, versioning, batch delete
        names = {k for k, _ in parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True)}
        return bool(names & {"uploads", "uploadId"})  # multipart init / complete / list parts

    @staticmethod
    def _translate_body(body: bytes) -> bytes:
        if not body.lstrip().startswith(b"<"):
            return body
        body = body.replace(_S3_XMLNS, b"")
        if b"<ListBucketResult" in body and _CONTENTS_CLOSE in body:
            body = body.replace(_CONTENTS_CLOSE, b"<Type>Normal</Type>" + _CONTENTS_CLOSE)
        for tag in (b"<GetBucketVersioningResponse", b"</GetBucketVersioningResponse>"):
            body = body.replace(tag, tag.replace(b"GetBucketVersioningResponse", b"VersioningConfiguration"))
        return body

    # -------------------------------------------------------------------- WSGI
    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        forbid = self._translate_request(environ)
        captured: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], None]:
            captured["status"] = status
            captured["headers"] = list(headers)
            return lambda _data: None  # moto returns its body; the legacy write() is unused

        if forbid:
            with self._conditional_lock:
                body = b"".join(self._app(environ, capture))
        else:
            body = b"".join(self._app(environ, capture))

        status: str = captured["status"]
        headers = self._translate_headers(captured["headers"])

        if forbid and status.startswith("412"):
            request_id = next((v for k, v in headers if k.lower() == "x-oss-request-id"), "shim")
            status = "409 Conflict"
            body = _file_exists_body(request_id)
            headers = [(k, v) for k, v in headers if k.lower() not in ("content-type", "content-length")]
            headers.append(("Content-Type", "application/xml"))
        else:
            if self._is_api_answer(environ, status):
                body = self._translate_body(body)
            headers = [(k, v) for k, v in headers if k.lower() != "content-length"]

        if environ.get("REQUEST_METHOD") == "HEAD":
            # HEAD keeps the length of the object it describes; there is no body to send.
            headers.extend((k, v) for k, v in captured["headers"] if k.lower() == "content-length")
            start_response(status, headers)
            return [b""]
        headers.append(("Content-Length", str(len(body))))
        start_response(status, headers)
        return [body]
