"""The object store on Alibaba Cloud OSS, through the official OSS SDK V2 (``alibabacloud_oss_v2``).

Only ``open_store`` imports this module, and only for an ``oss://`` URL: the SDK costs
~190 ms of import on a cold start that a ``file:`` store never needs to pay.

How the contract maps onto OSS:

- ``create_if_absent`` is ``PutObject`` with ``x-oss-forbid-overwrite: true``; OSS answers
  409 ``FileAlreadyExists`` if the key exists. The SDK retries a PUT whose answer was lost
  (timeout, 5xx), and that retry meets our own object and gets 409 — so every such put
  carries a random ``x-oss-meta-qcflow-claim`` token, and on 409 one ``HeadObject`` tells
  "it was us" (True) from "someone else" (False). OSS documents that the header protects only
  buckets with versioning never enabled: keep versioning off for the store's bucket.
- ``open_writer`` buffers ``part_size`` bytes and uploads parts (multipart upload); the
  object appears only at ``CompleteMultipartUpload``. Any failure, or an exception in the
  caller's block, aborts the upload. A write smaller than one part is a single PutObject.
- Requests are signed with V4 (``OSS4-HMAC-SHA256``), retried on 5xx, timeouts and broken
  connections by the SDK's ``StandardRetryer`` with full-jitter backoff from ``Settings``.
- SDK exceptions become ``qcflow.errors``: 404 → ``NotFoundError`` (``NoSuchBucket`` →
  ``ConfigError`` naming ``QCFLOW_STORE``), 401/403 → ``AuthError``, 5xx → ``ServiceUnavailableError``,
  throttling codes → ``ThrottledError``, transport faults → ``TransportError``, anything
  else → ``RequestError``; each keeps OSS's error code, request id and HTTP status.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any, NoReturn

import alibabacloud_oss_v2 as oss
from alibabacloud_oss_v2 import exceptions as oss_exc

from qcflow.credentials import Credentials, CredentialsProvider, credentials_from_env
from qcflow.errors import (
    AuthError,
    ConfigError,
    NotFoundError,
    QcflowError,
    RequestError,
    ServiceUnavailableError,
    TransportError,
    error_class_for_code,
)
from qcflow.store.base import (
    DEFAULT_CONTENT_TYPE,
    CommitOnExit,
    DEFAULT_PART_SIZE,
    ObjectInfo,
    StoredObject,
    check_expires,
)
from qcflow.store.keys import (
    join_key,
    validate_content_type,
    validate_key,
    validate_metadata,
    validate_prefix,
)

if TYPE_CHECKING:
    from qcflow.config import Settings

#: Internal metadata carrying create_if_absent's per-call token (stripped from results).
CLAIM_META = "qcflow-claim"
MIN_PART_SIZE = 100 * 1024  # OSS: every part but the last must be at least 100 KiB
MAX_PART_SIZE = 5 * 1024 * 1024 * 1024
LIST_PAGE_SIZE = 1000  # OSS's maximum max-keys


# ---------------------------------------------------------------------- errors
def map_oss_error(exc: BaseException, action: str, key: str | None = None) -> QcflowError:
    """Translate an SDK exception into the qcflow hierarchy, keeping OSS's code and RequestId."""
    inner: BaseException = exc
    while isinstance(inner, oss_exc.OperationError) and inner.unwrap() is not None:
        inner = inner.unwrap()
    what = f" {key!r}" if key else ""

    if isinstance(inner, QcflowError):
        return inner
    if isinstance(inner, oss_exc.ServiceError):
        status = int(inner.status_code or 0)
        code = inner.code if inner.code and inner.code != "BadErrorResponse" else None
        message = inner.message or f"OSS answered HTTP {status}"
        kwargs: dict[str, Any] = dict(code=code, request_id=inner.request_id or None, http_status=status, action=action)
        if code == "NoSuchBucket":
            return ConfigError(f"QCFLOW_STORE names a bucket that does not exist: {message}", **kwargs)
        if status == 404:
            return NotFoundError(f"no object{what}: {message}", **kwargs)
        if status in (401, 403):
            return AuthError(message, **kwargs)
        cls = error_class_for_code(code, status)
        if cls is RequestError and (status >= 500 or status in (408, 429)):
            cls = ServiceUnavailableError
        return cls(message, **kwargs)
    if isinstance(inner, oss_exc.CredentialsEmptyError):
        return ConfigError("OSS credentials are empty: set ALIBABA_CLOUD_ACCESS_KEY_ID/SECRET", action=action)
    if isinstance(inner, oss_exc.CredentialsFetchError):
        cause = inner.kwargs.get("error")
        if isinstance(cause, QcflowError):
            return cause
        return TransportError(f"could not fetch credentials: {cause}", action=action)
    if isinstance(inner, (oss_exc.RequestError, oss_exc.ResponseError, oss_exc.InconsistentError)):
        return TransportError(f"{action}{what}: {inner}", action=action)
    return RequestError(f"{action}{what}: {inner}", action=action)


def _raise(exc: BaseException, action: str, key: str | None = None) -> NoReturn:
    raise map_oss_error(exc, action, key) from exc


# ----------------------------------------------------------------- the client
def _credentials_provider(credentials: Credentials | CredentialsProvider | None) -> Any:
    """Adapt qcflow credentials to the SDK. A provider is asked on every request, so STS
    credentials that rotate (FC's role) are picked up; ``None`` reads the standard
    ``ALIBABA_CLOUD_*`` variables each time."""
    if isinstance(credentials, Credentials):
        return oss.credentials.StaticCredentialsProvider(
            credentials.access_key_id, credentials.access_key_secret, credentials.security_token
        )
    provider: CredentialsProvider = credentials if credentials is not None else credentials_from_env

    def fetch() -> oss.credentials.Credentials:
        c = provider()
        return oss.credentials.Credentials(c.access_key_id, c.access_key_secret, c.security_token)

    return oss.credentials.CredentialsProviderFunc(fetch)


def build_client(settings: Settings, credentials: Credentials | CredentialsProvider | None = None) -> oss.Client:
    """An SDK client from ``Settings``: region, endpoint (explicit, else the region's public
    or — with ``oss_internal`` — internal ``oss-<region>-internal.aliyuncs.com``), V4 signing,
    timeouts and the retry policy."""
    cfg = oss.config.Config(
        region=settings.region,
        signature_version="v4",
        credentials_provider=_credentials_provider(credentials),
        retryer=oss.retry.StandardRetryer(
            max_attempts=settings.max_attempts,
            base_delay=settings.backoff_initial_seconds,
            max_backoff=settings.backoff_max_seconds,
        ),
        connect_timeout=settings.http_connect_timeout_seconds,
        readwrite_timeout=settings.http_timeout_seconds,
    )
    if settings.oss_endpoint:
        cfg.endpoint = settings.oss_endpoint  # a host (https assumed) or a URL with scheme
    else:
        cfg.use_internal_endpoint = bool(settings.oss_internal)
    return oss.Client(cfg)


# ----------------------------------------------------------------- the store
class OssStore:
    """``ObjectStore`` on ``oss://bucket/prefix``. Thread-safe: the SDK client is shared."""

    def __init__(self, client: oss.Client, bucket: str, prefix: str = "", *, url: str | None = None,
                 list_page_size: int = LIST_PAGE_SIZE) -> None:
        self._client = client
        self.bucket = bucket
        self.prefix = validate_prefix(prefix).rstrip("/")
        self.url = url or f"oss://{bucket}/{self.prefix}"
        if not 1 <= list_page_size <= LIST_PAGE_SIZE:
            raise ValueError("list_page_size must be 1..1000")
        self.list_page_size = list_page_size

    @classmethod
    def from_settings(cls, bucket: str, prefix: str, settings: Settings,
                      credentials: Credentials | CredentialsProvider | None = None, *, url: str | None = None) -> OssStore:
        return cls(build_client(settings, credentials), bucket, prefix, url=url)

    def __repr__(self) -> str:
        return f"OssStore({self.url!r})"

    def _full(self, key: str) -> str:
        return join_key(self.prefix, validate_key(key))

    def _rel(self, full: str) -> str:
        return full[len(self.prefix) + 1:] if self.prefix else full

    @staticmethod
    def _user_meta(meta: Mapping[str, str] | None) -> dict[str, str]:
        return {k.lower(): v for k, v in (meta or {}).items() if k.lower() != CLAIM_META}

    # ------------------------------------------------------------------- reads
    def get(self, key: str) -> StoredObject:
        full = self._full(key)
        try:
            result = self._client.get_object(oss.GetObjectRequest(bucket=self.bucket, key=full))
            try:
                body = result.body.content
            finally:
                result.body.close()
        except Exception as exc:
            _raise(exc, "GetObject", key)
        return StoredObject(key, body, result.etag or "", result.content_type, self._user_meta(result.metadata),
                            result.last_modified)

    def head(self, key: str) -> ObjectInfo:
        full = self._full(key)
        try:
            result = self._client.head_object(oss.HeadObjectRequest(bucket=self.bucket, key=full))
        except Exception as exc:
            _raise(exc, "HeadObject", key)
        return self._info(key, result)

    def _info(self, key: str, result: Any) -> ObjectInfo:
        return ObjectInfo(key, int(result.content_length or 0), result.etag or "", result.last_modified,
                          result.content_type, self._user_meta(result.metadata))

    def list(self, prefix: str = "", *, start_after: str | None = None) -> Iterator[ObjectInfo]:
        validate_prefix(prefix)
        full_prefix = join_key(self.prefix, prefix) if prefix else (f"{self.prefix}/" if self.prefix else "")
        request = oss.ListObjectsV2Request(
            bucket=self.bucket,
            prefix=full_prefix or None,
            start_after=join_key(self.prefix, start_after) if start_after else None,
            max_keys=self.list_page_size,
        )
        return self._pages(request)

    def _pages(self, request: Any) -> Iterator[ObjectInfo]:
        paginator = self._client.list_objects_v2_paginator()
        pages = paginator.iter_page(request)
        while True:
            try:
                page = next(pages)
            except StopIteration:
                return
            except Exception as exc:
                _raise(exc, "ListObjectsV2")
            for item in page.contents or []:
                yield ObjectInfo(self._rel(item.key), int(item.size or 0), item.etag or "", item.last_modified)

    # ------------------------------------------------------------------ writes
    def put(self, key: str, data: bytes, *, content_type: str = DEFAULT_CONTENT_TYPE,
            metadata: Mapping[str, str] | None = None) -> str:
        full = self._full(key)
        request = oss.PutObjectRequest(bucket=self.bucket, key=full, body=bytes(data),
                                       content_type=validate_content_type(content_type),
                                       metadata=validate_metadata(dict(metadata) if metadata else None) or None)
        try:
            result = self._client.put_object(request)
        except Exception as exc:
            _raise(exc, "PutObject", key)
        return result.etag or ""

    def create_if_absent(self, key: str, data: bytes, *, content_type: str = DEFAULT_CONTENT_TYPE,
                         metadata: Mapping[str, str] | None = None) -> bool:
        full = self._full(key)
        token = uuid.uuid4().hex
        meta = validate_metadata(dict(metadata) if metadata else None)
        meta[CLAIM_META] = token
        request = oss.PutObjectRequest(bucket=self.bucket, key=full, body=bytes(data),
                                       content_type=validate_content_type(content_type),
                                       metadata=meta, forbid_overwrite=True)
        try:
            self._client.put_object(request)
            return True
        except Exception as exc:
            err = map_oss_error(exc, "PutObject", key)
            if err.http_status != 409 or err.code != "FileAlreadyExists":
                raise err from exc
        # 409: someone's object is there — possibly ours, if the SDK retried a PUT whose
        # first answer was lost. Our token tells.
        try:
            existing = self._client.head_object(oss.HeadObjectRequest(bucket=self.bucket, key=full))
        except Exception as exc:
            err = map_oss_error(exc, "HeadObject", key)
            if isinstance(err, NotFoundError):
                return False  # it existed at our PUT and was deleted since: not ours
            raise err from exc
        return {k.lower(): v for k, v in (existing.metadata or {}).items()}.get(CLAIM_META) == token

    def delete(self, key: str) -> None:
        full = self._full(key)
        try:
            self._client.delete_object(oss.DeleteObjectRequest(bucket=self.bucket, key=full))
        except Exception as exc:
            err = map_oss_error(exc, "DeleteObject", key)
            if isinstance(err, NotFoundError) and not isinstance(err, ConfigError):
                return
            raise err from exc

    def open_writer(self, key: str, *, content_type: str = DEFAULT_CONTENT_TYPE,
                    metadata: Mapping[str, str] | None = None, part_size: int = DEFAULT_PART_SIZE) -> OssWriter:
        full = self._full(key)
        if not MIN_PART_SIZE <= part_size <= MAX_PART_SIZE:
            raise RequestError(f"part_size must be between {MIN_PART_SIZE} and {MAX_PART_SIZE} bytes, got {part_size}")
        return OssWriter(self, key, full, validate_content_type(content_type),
                         validate_metadata(dict(metadata) if metadata else None), part_size)

    def signed_get_url(self, key: str, expires: timedelta) -> str:
        full = self._full(key)
        check_expires(expires)
        try:
            result = self._client.presign(oss.GetObjectRequest(bucket=self.bucket, key=full), expires=expires)
        except Exception as exc:
            _raise(exc, "Presign", key)
        return result.url


class OssWriter(CommitOnExit):
    """Multipart upload that becomes visible only at completion (see the module docstring)."""

    def __init__(self, store: OssStore, key: str, full: str, content_type: str, metadata: dict[str, str],
                 part_size: int) -> None:
        self._store = store
        self._client = store._client
        self._key = key
        self._full = full
        self._content_type = content_type
        self._metadata = metadata
        self._part_size = part_size
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: list[Any] = []
        self._closed = False
        self.etag: str | None = None

    def _call(self, action: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except Exception as exc:
            self.abort()
            _raise(exc, action, self._key)

    def write(self, data: bytes) -> None:
        if self._closed:
            raise RequestError(f"writer for {self._key!r} is already closed")
        self._buffer += data
        while len(self._buffer) >= self._part_size * 2:
            # Keep at least one part buffered so the last part is never empty.
            self._upload_part(bytes(self._buffer[: self._part_size]))
            del self._buffer[: self._part_size]

    def _upload_part(self, chunk: bytes) -> None:
        if self._upload_id is None:
            init = self._call("InitiateMultipartUpload", lambda: self._client.initiate_multipart_upload(
                oss.InitiateMultipartUploadRequest(bucket=self._store.bucket, key=self._full,
                                                   content_type=self._content_type,
                                                   metadata=self._metadata or None)))
            if not init.upload_id:
                self.abort()
                raise RequestError(f"InitiateMultipartUpload for {self._key!r} returned no UploadId")
            self._upload_id = init.upload_id
        number = len(self._parts) + 1
        result = self._call("UploadPart", lambda: self._client.upload_part(oss.UploadPartRequest(
            bucket=self._store.bucket, key=self._full, upload_id=self._upload_id, part_number=number, body=chunk)))
        self._parts.append(oss.UploadPart(part_number=number, etag=result.etag))

    def commit(self) -> str:
        if self._closed:
            raise RequestError(f"writer for {self._key!r} is already closed")
        if self._upload_id is None:
            # Smaller than two parts: one PutObject is just as atomic and cheaper.
            self._closed = True
            etag = self._store.put(self._key, bytes(self._buffer), content_type=self._content_type,
                                   metadata=self._metadata)
        else:
            if self._buffer:
                self._upload_part(bytes(self._buffer))
                self._buffer.clear()
            result = self._call("CompleteMultipartUpload", lambda: self._client.complete_multipart_upload(
                oss.CompleteMultipartUploadRequest(
                    bucket=self._store.bucket, key=self._full, upload_id=self._upload_id,
                    complete_multipart_upload=oss.CompleteMultipartUpload(parts=self._parts))))
            self._closed = True
            etag = result.etag or ""
        self._buffer = bytearray()
        self.etag = etag
        return etag

    def abort(self) -> None:
        """Discard everything; best effort on OSS (a bucket lifecycle rule that aborts
        incomplete multipart uploads after a day catches what a crashed process leaves)."""
        self._closed = True
        self._buffer = bytearray()
        upload_id, self._upload_id = self._upload_id, None
        if upload_id is not None:
            try:
                self._client.abort_multipart_upload(oss.AbortMultipartUploadRequest(
                    bucket=self._store.bucket, key=self._full, upload_id=upload_id))
            except Exception:  # noqa: BLE001 - the original failure matters more
                pass
