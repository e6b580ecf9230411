"""The object store on Alibaba Cloud OSS, through the official OSS SDK V2 (``alibabacloud_oss_v2``).

Only ``open_store`` imports this module, and only for an ``oss://`` URL: the SDK costs
~190 ms of import on a cold start that a ``file:`` store never needs to pay.

How the contract maps onto OSS:

- ``create_if_absent`` is ``PutObject`` with ``x-oss-forbid-overwrite: true``; OSS answers
  409 ``FileAlreadyExists`` if the key exists. The SDK retries a PUT whose answer was lost
  (timeout, 5xx), and that retry meets our own object and gets 409 — so every such put
  carries an ``x-oss-meta-qcflow-claim`` token (the caller's ``claim_token``, else a random
  one), and on 409 one ``HeadObject`` tells "it was us" (True) from "someone else" (False).
  A PUT that ends in a ``RetryableError`` is marked ``prior_attempt_uncertain``.
  OSS documents that the header protects only buckets with versioning never enabled, so
  before its first ``create_if_absent`` a store reads the bucket's versioning once and
  refuses (``ConfigError``) a bucket where it is Enabled or Suspended. If that read is
  denied (403) it fails closed too — a ``ConfigError`` naming the missing permission
  ``oss:GetBucketVersioning`` and the opt-out ``QCFLOW_STORE_ALLOW_UNVERIFIED_VERSIONING``
  — because on a versioned bucket every claimant would win; with the opt-out it logs a
  WARNING and goes on. Atomicity on real OSS rests on ``x-oss-forbid-overwrite`` alone. The
  test suite cannot show it: there the adapter talks to moto behind a dialect shim, moto
  evaluates ``If-None-Match`` as a non-atomic check-then-put, and the shim serialises
  conditional PUTs to give it OSS's atomicity — so race tests on this adapter prove its
  side only (one conditional PUT per claim, a 409 resolved by the claim token).
- ``open_writer`` buffers ``part_size`` bytes and uploads parts (multipart upload); the
  object appears only at ``CompleteMultipartUpload``. Any failure, or an exception in the
  caller's block, aborts the upload. A write smaller than two parts is a single PutObject
  (so ``part_size`` is at most 2.5 GiB: a PutObject carries at most 5 GiB). The upload
  carries a random claim token too: if CompleteMultipartUpload's answer is lost, the SDK's
  retry gets 404 ``NoSuchUpload`` although the object is committed, and the token on the
  object tells that it is ours.
- Listings check that the answer was a real ``ListBucketResult`` (it names the bucket, and
  its ``KeyCount`` matches): the SDK silently returns an empty page for an HTML page or XML
  it cannot read, which would look like "no objects". Names that are not valid keys (a
  console folder marker ``a/``, ``a//b``) are skipped with a WARNING.
- Requests are signed with V4 (``OSS4-HMAC-SHA256``), retried on 5xx, timeouts and broken
  connections by the SDK's ``StandardRetryer`` with full-jitter backoff from ``Settings``.
- SDK exceptions become ``qcflow.errors``: 404 → ``NotFoundError`` (``NoSuchBucket`` →
  ``ConfigError`` naming ``QCFLOW_STORE``), 401/403 → ``AuthError``, 5xx → ``ServiceUnavailableError``,
  throttling codes → ``ThrottledError``, network faults (connection, timeout, a body cut
  short) → ``TransportError``, anything else — including client-side errors of the SDK or
  ``requests`` such as a refused header — → ``RequestError``; each keeps OSS's error code,
  request id and HTTP status.

Why ~670 lines: the OSS adapter maps one protocol onto the SDK, including create-if-absent,
streamed multipart writes, listing and the error mapping; each method is short.
"""

from __future__ import annotations

import http.client
import socket
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any, NoReturn

import alibabacloud_oss_v2 as oss
import requests
import urllib3.exceptions
from alibabacloud_oss_v2 import exceptions as oss_exc

from qcflow.credentials import Credentials, CredentialsProvider, credentials_from_env
from qcflow.errors import (
    AuthError,
    ConfigError,
    NotFoundError,
    QcflowError,
    RequestError,
    RetryableError,
    ServiceUnavailableError,
    TransportError,
    error_class_for_code,
)
from qcflow.store.base import (
    DEFAULT_CONTENT_TYPE,
    DEFAULT_PART_SIZE,
    CommitOnExit,
    ObjectInfo,
    StoredObject,
    check_data,
    check_expires,
    listable,
    log,
)
from qcflow.store.keys import (
    join_key,
    validate_claim_token,
    validate_content_type,
    validate_key,
    validate_metadata,
    validate_prefix,
)

if TYPE_CHECKING:
    from qcflow.config import HttpSettings, Settings, StoreSettings

#: Internal metadata carrying the writer's token: create_if_absent's claim, a multipart
#: upload's identity. Reserved (``qcflow-`` names are refused) and stripped from results.
CLAIM_META = "qcflow-claim"
MIN_PART_SIZE = 100 * 1024  # OSS: every part but the last must be at least 100 KiB
MAX_PUT_SIZE = 5 * 1024 * 1024 * 1024  # OSS: one PutObject (or one part) carries at most 5 GiB
#: Up to two parts' worth may go out as one PutObject (see OssWriter), so a part is at most half.
MAX_PART_SIZE = MAX_PUT_SIZE // 2
LIST_PAGE_SIZE = 1000  # OSS's maximum max-keys

#: Exceptions meaning "the network failed us" (no answer, or an answer cut short): retryable.
#: Other client-side errors (a header ``requests`` refuses, a bad URL) are not.
_NETWORK_FAULTS: tuple[type[BaseException], ...] = (
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
    urllib3.exceptions.ProtocolError,
    urllib3.exceptions.TimeoutError,
    urllib3.exceptions.NewConnectionError,
    urllib3.exceptions.IncompleteRead,
    http.client.IncompleteRead,
    http.client.RemoteDisconnected,
    ConnectionError,
    TimeoutError,
    socket.timeout,
)


# ---------------------------------------------------------------------- errors
def _is_network_fault(exc: BaseException | None) -> bool:
    return isinstance(exc, _NETWORK_FAULTS)


#: OSS's codes that are about the caller (credentials, signature, clock, policy), not the request.
_OSS_DEPLOYMENT_CODES = (
    "AccessDenied",
    "AccessForbidden",
    "SignatureDoesNotMatch",
    "InvalidAccessKeyId",
    "SecurityTokenExpired",
    "InvalidSecurityToken",
    "RequestTimeTooSkewed",
    "UserDisable",
)


def map_oss_error(exc: BaseException, action: str, key: str | None = None, *, origin: str | None = None) -> QcflowError:
    """Translate an SDK (or ``requests``) exception into the qcflow hierarchy, keeping OSS's
    code and RequestId. Messages do not repeat ``action``: ``str(err)`` prefixes it. ``origin``
    is where the bucket's name came from (``OssStore.origin``), blamed for a ``NoSuchBucket``."""
    inner: BaseException = exc
    while isinstance(inner, oss_exc.OperationError) and inner.unwrap() is not None:
        inner = inner.unwrap()
    on = f" on {key!r}" if key else ""

    if isinstance(inner, QcflowError):
        return inner
    if isinstance(inner, oss_exc.ServiceError):
        status = int(inner.status_code or 0)
        code = inner.code if inner.code and inner.code != "BadErrorResponse" else None
        # Without a code the SDK's message is its own XML parse failure: not worth showing.
        message = (inner.message if code else None) or f"OSS answered HTTP {status}"
        kwargs: dict[str, Any] = dict(code=code, request_id=inner.request_id or None, http_status=status, action=action)
        if code == "NoSuchBucket":
            return ConfigError(f"{origin or 'QCFLOW_STORE'} names a bucket that does not exist: {message}", **kwargs)
        if status == 404:
            return NotFoundError(f"no object{' ' + repr(key) if key else ''}: {message}", **kwargs)
        if status == 401 or (status == 403 and (not code or code.startswith(_OSS_DEPLOYMENT_CODES))):
            # decided on OSS's Code where there is one: a 403 InvalidObjectState (an archived object)
            # is about the object, not the deployment; a bodiless 403 (HEAD) is taken as AccessDenied
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
    if isinstance(inner, (oss_exc.RequestError, oss_exc.ResponseError)):
        detail = inner.unwrap()
        if _is_network_fault(detail) or isinstance(inner, oss_exc.ResponseError):
            return TransportError(f"no complete answer{on}: {detail}", action=action)
        return RequestError(f"the request{on} could not be sent: {detail}", action=action)
    if isinstance(inner, oss_exc.InconsistentError):
        return TransportError(f"data{on} was corrupted in transit: {inner}", action=action)
    if isinstance(inner, oss_exc.DeserializationError):
        return ServiceUnavailableError(f"OSS's answer{on} could not be parsed: {inner}", action=action)
    if _is_network_fault(inner):
        return TransportError(f"no complete answer{on}: {inner}", action=action)
    return RequestError(f"failed{on}: {inner}", action=action)


def _uncertain(err: QcflowError) -> QcflowError:
    """Mark a retryable failure of a non-idempotent call: an attempt may have been applied."""
    if isinstance(err, RetryableError):
        err.prior_attempt_uncertain = True
    return err


def _raise(exc: BaseException, action: str, key: str | None = None, *, origin: str | None = None) -> NoReturn:
    raise map_oss_error(exc, action, key, origin=origin) from exc


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


def build_client(
    settings: StoreSettings, http: HttpSettings, credentials: Credentials | CredentialsProvider | None = None
) -> oss.Client:
    """An SDK client from the ``store`` and ``http`` slices: region, endpoint (explicit, else the region's public
    or — with ``oss_internal`` — internal ``oss-<region>-internal.aliyuncs.com``), V4 signing,
    timeouts and the retry policy."""
    cfg = oss.config.Config(
        region=settings.region,
        signature_version="v4",
        credentials_provider=_credentials_provider(credentials),
        retryer=oss.retry.StandardRetryer(
            max_attempts=http.max_attempts,
            base_delay=http.backoff_initial_seconds,
            max_backoff=http.backoff_max_seconds,
        ),
        connect_timeout=http.connect_timeout_seconds,
        readwrite_timeout=http.timeout_seconds,
    )
    if settings.oss_endpoint:
        cfg.endpoint = settings.oss_endpoint  # a host (https assumed) or a URL with scheme
    else:
        cfg.use_internal_endpoint = bool(settings.oss_internal)
    return oss.Client(cfg)


# ----------------------------------------------------------------- the store
class OssStore:
    """``ObjectStore`` on ``oss://bucket/prefix``. Thread-safe: the SDK client is shared."""

    def __init__(
        self,
        client: oss.Client,
        bucket: str,
        prefix: str = "",
        *,
        url: str | None = None,
        list_page_size: int = LIST_PAGE_SIZE,
        allow_unverified_versioning: bool = False,
    ) -> None:
        """``allow_unverified_versioning`` (``QCFLOW_STORE_ALLOW_UNVERIFIED_VERSIONING``) lets
        ``create_if_absent`` go on when the bucket's versioning cannot be read (403); only for a
        bucket where versioning was never enabled."""
        self._client = client
        self.allow_unverified_versioning = bool(allow_unverified_versioning)
        self.bucket = bucket
        self.prefix = validate_prefix(prefix).rstrip("/")
        self.url = url or f"oss://{bucket}/{self.prefix}"
        #: Where the bucket's name came from, blamed when it does not exist: the setting, or an
        #: event's bucket (``Services.recordings`` says which).
        self.origin = "QCFLOW_STORE"
        if not 1 <= list_page_size <= LIST_PAGE_SIZE:
            raise ValueError("list_page_size must be 1..1000")
        self.list_page_size = list_page_size
        self._versioning_checked = False
        self._versioning_lock = threading.Lock()  # many claiming threads at a cold start: one check

    @classmethod
    def from_settings(
        cls,
        bucket: str,
        prefix: str,
        settings: Settings,
        credentials: Credentials | CredentialsProvider | None = None,
        *,
        url: str | None = None,
    ) -> OssStore:
        return cls(
            build_client(settings.store, settings.http, credentials),
            bucket,
            prefix,
            url=url,
            allow_unverified_versioning=settings.store.allow_unverified_versioning,
        )

    def __repr__(self) -> str:
        return f"OssStore({self.url!r})"

    def _full(self, key: str) -> str:
        return join_key(self.prefix, validate_key(key))

    def _rel(self, full: str) -> str:
        return full[len(self.prefix) + 1 :] if self.prefix else full

    @staticmethod
    def _user_meta(meta: Mapping[str, str] | None) -> dict[str, str]:
        return {k.lower(): v for k, v in (meta or {}).items() if k.lower() != CLAIM_META}

    # ------------------------------------------------------------------- reads
    def get(self, key: str) -> StoredObject:
        full = self._full(key)
        try:
            result = self._client.get_object(oss.GetObjectRequest(bucket=self.bucket, key=full))
            try:
                body = result.body.content  # read outside the SDK's retryer: a cut body raises here
            finally:
                result.body.close()
        except Exception as exc:
            _raise(exc, "GetObject", key, origin=self.origin)
        if result.content_length is not None and len(body) != int(result.content_length):
            raise TransportError(
                f"answer for {key!r} was cut short: {len(body)} of {result.content_length} bytes",
                action="GetObject",
                request_id=result.request_id or None,
            )
        return StoredObject(
            key, body, result.etag or "", result.content_type, self._user_meta(result.metadata), result.last_modified
        )

    def head(self, key: str) -> ObjectInfo:
        full = self._full(key)
        try:
            result = self._client.head_object(oss.HeadObjectRequest(bucket=self.bucket, key=full))
        except Exception as exc:
            err = map_oss_error(exc, "HeadObject", key, origin=self.origin)
            if isinstance(err, NotFoundError) and err.code is None:
                err = self._missing_bucket_or(err, full)
            raise err from exc
        return self._info(key, result)

    def _missing_bucket_or(self, err: QcflowError, full: str) -> QcflowError:
        """A HEAD 404 may carry no error code, so "no such key" and "no such bucket" look
        alike; a one-byte GET (same permission) answers with a code. Only a missing bucket
        changes the answer: to ``ConfigError``, as ``get`` gives."""
        try:
            result = self._client.get_object(
                oss.GetObjectRequest(bucket=self.bucket, key=full, range_header="bytes=0-0")
            )
            result.body.close()
        except Exception as exc:  # noqa: BLE001 - only NoSuchBucket matters here
            probe = map_oss_error(exc, "HeadObject", origin=self.origin)
            if isinstance(probe, ConfigError):
                return probe
        return err

    def _info(self, key: str, result: Any) -> ObjectInfo:
        return ObjectInfo(
            key,
            int(result.content_length or 0),
            result.etag or "",
            result.last_modified,
            result.content_type,
            self._user_meta(result.metadata),
        )

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
        root = f"{self.prefix}/" if self.prefix else ""
        while True:
            try:
                page = next(pages)
            except StopIteration:
                return
            except Exception as exc:
                _raise(exc, "ListObjectsV2", origin=self.origin)
            contents = page.contents or []
            counted = len(contents) + len(page.common_prefixes or [])
            if page.name is None or (page.key_count is not None and page.key_count != counted):
                raise ServiceUnavailableError(
                    f"listing answer could not be parsed (bucket name {page.name!r}, KeyCount {page.key_count}, "
                    f"{len(contents)} objects read): not a ListBucketResult, or one the SDK could not read",
                    action="ListObjectsV2",
                    request_id=page.request_id or None,
                    http_status=page.status_code or None,
                )
            for item in contents:
                name = item.key or ""
                if not name.startswith(root) or not listable(self._rel(name), self.url):
                    continue
                yield ObjectInfo(self._rel(name), int(item.size or 0), item.etag or "", item.last_modified)

    # ------------------------------------------------------------------ writes
    def put(
        self,
        key: str,
        data: bytes,
        *,
        content_type: str = DEFAULT_CONTENT_TYPE,
        metadata: Mapping[str, str] | None = None,
    ) -> str:
        full = self._full(key)
        body = bytes(check_data(data))
        request = oss.PutObjectRequest(
            bucket=self.bucket,
            key=full,
            body=body,
            content_type=validate_content_type(content_type),
            metadata=validate_metadata(dict(metadata) if metadata else None) or None,
        )
        try:
            result = self._client.put_object(request)
        except Exception as exc:
            _raise(exc, "PutObject", key, origin=self.origin)
        return result.etag or ""

    def create_if_absent(
        self,
        key: str,
        data: bytes,
        *,
        content_type: str = DEFAULT_CONTENT_TYPE,
        metadata: Mapping[str, str] | None = None,
        claim_token: str | None = None,
    ) -> bool:
        full = self._full(key)
        body = bytes(check_data(data))
        token = validate_claim_token(claim_token) or uuid.uuid4().hex
        meta = validate_metadata(dict(metadata) if metadata else None)
        meta[CLAIM_META] = token
        request = oss.PutObjectRequest(
            bucket=self.bucket,
            key=full,
            body=body,
            content_type=validate_content_type(content_type),
            metadata=meta,
            forbid_overwrite=True,
        )
        self._check_versioning()
        try:
            self._client.put_object(request)
            return True
        except Exception as exc:
            err = map_oss_error(exc, "PutObject", key, origin=self.origin)
            if err.http_status != 409 or err.code != "FileAlreadyExists":
                raise _uncertain(err) from exc  # a lost answer may have created the object
        # 409: someone's object is there — possibly ours, if the SDK retried a PUT whose
        # first answer was lost (or the caller retried with the same claim_token).
        existing = self._claim_of(key, full)
        return existing == token

    def _claim_of(self, key: str, full: str) -> str | None:
        """The claim token on the object at ``full`` (``None`` if absent or none)."""
        try:
            existing = self._client.head_object(oss.HeadObjectRequest(bucket=self.bucket, key=full))
        except Exception as exc:
            err = map_oss_error(exc, "HeadObject", key, origin=self.origin)
            if isinstance(err, NotFoundError):
                return None  # it existed at our request and was deleted since: not ours
            raise _uncertain(err) from exc
        return {k.lower(): v for k, v in (existing.metadata or {}).items()}.get(CLAIM_META)

    def _check_versioning(self) -> None:
        """Once per store: refuse a bucket where forbid-overwrite would not protect anything.
        With versioning on, every create-if-absent "wins" (each PUT adds a version). A denied
        check fails closed (unless ``allow_unverified_versioning``): it is not remembered, so
        granting the permission takes effect at the next call."""
        if self._versioning_checked:
            return
        with self._versioning_lock:
            if not self._versioning_checked:
                self._check_versioning_now()

    def _check_versioning_now(self) -> None:
        try:
            result = self._client.get_bucket_versioning(oss.GetBucketVersioningRequest(bucket=self.bucket))
        except Exception as exc:
            err = map_oss_error(exc, "GetBucketVersioning", origin=self.origin)
            if not isinstance(err, AuthError):
                raise err from exc
            reason = err.code or f"HTTP {err.http_status}"
            if not self.allow_unverified_versioning:
                raise ConfigError(
                    f"QCFLOW_STORE={self.url}: cannot read the versioning of bucket {self.bucket!r} ({reason}), and "
                    "on a bucket with versioning enabled or suspended OSS ignores x-oss-forbid-overwrite, so "
                    "create-if-absent would let every claimant win. Grant oss:GetBucketVersioning on the bucket, or, "
                    "only if versioning was never enabled on it, set QCFLOW_STORE_ALLOW_UNVERIFIED_VERSIONING=true",
                    code=err.code,
                    request_id=err.request_id,
                    http_status=err.http_status,
                    action="GetBucketVersioning",
                ) from exc
            log.warning(
                "cannot read the versioning of bucket %r (%s); going on because "
                "QCFLOW_STORE_ALLOW_UNVERIFIED_VERSIONING is set: create-if-absent is safe only if "
                "versioning was never enabled on it",
                self.bucket,
                reason,
            )
            self._versioning_checked = True
            return
        status = result.version_status
        if status in ("Enabled", "Suspended"):
            raise ConfigError(
                f"QCFLOW_STORE={self.url}: bucket {self.bucket!r} has versioning {status}, and OSS then ignores "
                "x-oss-forbid-overwrite, so create-if-absent would let every claimant win. Turn versioning off "
                "(a bucket where it was never enabled) or use another bucket",
                action="GetBucketVersioning",
            )
        self._versioning_checked = True

    def delete(self, key: str) -> None:
        full = self._full(key)
        try:
            self._client.delete_object(oss.DeleteObjectRequest(bucket=self.bucket, key=full))
        except Exception as exc:
            err = map_oss_error(exc, "DeleteObject", key, origin=self.origin)
            if isinstance(err, NotFoundError):
                return
            raise err from exc

    def open_writer(
        self,
        key: str,
        *,
        content_type: str = DEFAULT_CONTENT_TYPE,
        metadata: Mapping[str, str] | None = None,
        part_size: int = DEFAULT_PART_SIZE,
    ) -> OssWriter:
        full = self._full(key)
        if not MIN_PART_SIZE <= part_size <= MAX_PART_SIZE:
            raise RequestError(f"part_size must be between {MIN_PART_SIZE} and {MAX_PART_SIZE} bytes, got {part_size}")
        return OssWriter(
            self,
            key,
            full,
            validate_content_type(content_type),
            validate_metadata(dict(metadata) if metadata else None),
            part_size,
        )

    def signed_get_url(self, key: str, expires: timedelta) -> str:
        full = self._full(key)
        check_expires(expires)
        try:
            result = self._client.presign(oss.GetObjectRequest(bucket=self.bucket, key=full), expires=expires)
        except Exception as exc:
            _raise(exc, "Presign", key, origin=self.origin)
        return result.url


class OssWriter(CommitOnExit):
    """Multipart upload that becomes visible only at completion (see the module docstring).
    A failed call aborts the upload and leaves the writer failed (see ``CommitOnExit``)."""

    def __init__(
        self, store: OssStore, key: str, full: str, content_type: str, metadata: dict[str, str], part_size: int
    ) -> None:
        self._store = store
        self._client = store._client
        self._key = key
        self._full = full
        self._content_type = content_type
        self._metadata = metadata
        self._part_size = part_size
        self._token = uuid.uuid4().hex  # identifies this upload's object after a lost Complete answer
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: list[Any] = []
        self._closed = False
        self.etag: str | None = None

    def _call(self, action: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except Exception as exc:
            err = map_oss_error(exc, action, self._key, origin=self._store.origin)
            self._fail(err)
            raise err from exc

    def write(self, data: bytes) -> None:
        view = check_data(data)
        self._check_open()
        self._buffer += view
        while len(self._buffer) >= self._part_size * 2:
            # Keep at least one part buffered so the last part is never empty.
            self._upload_part(bytes(self._buffer[: self._part_size]))
            del self._buffer[: self._part_size]

    def _upload_part(self, chunk: bytes) -> None:
        if self._upload_id is None:
            init = self._call(
                "InitiateMultipartUpload",
                lambda: self._client.initiate_multipart_upload(
                    oss.InitiateMultipartUploadRequest(
                        bucket=self._store.bucket,
                        key=self._full,
                        content_type=self._content_type,
                        metadata={**self._metadata, CLAIM_META: self._token},
                    )
                ),
            )
            if not init.upload_id:
                err = RequestError(f"no UploadId for {self._key!r}", action="InitiateMultipartUpload")
                self._fail(err)
                raise err
            self._upload_id = init.upload_id
        number = len(self._parts) + 1
        result = self._call(
            "UploadPart",
            lambda: self._client.upload_part(
                oss.UploadPartRequest(
                    bucket=self._store.bucket, key=self._full, upload_id=self._upload_id, part_number=number, body=chunk
                )
            ),
        )
        self._parts.append(oss.UploadPart(part_number=number, etag=result.etag))

    def commit(self) -> str:
        self._check_open()
        if self._upload_id is None:
            # Smaller than two parts: one PutObject is just as atomic and cheaper.
            try:
                etag = self._store.put(
                    self._key, bytes(self._buffer), content_type=self._content_type, metadata=self._metadata
                )
            except Exception as exc:
                self._fail(exc)
                raise
        else:
            if self._buffer:
                self._upload_part(bytes(self._buffer))
            etag = self._complete()
        self._upload_id = None
        self._closed = True
        self._buffer = bytearray()
        self.etag = etag
        return etag

    def _complete(self) -> str:
        """CompleteMultipartUpload. If an earlier attempt's answer was lost, OSS answers the
        SDK's retry 404 ``NoSuchUpload`` although the object is committed: then the upload's
        token on the object at the key tells "ours" (success) from "not ours" (failure)."""
        request = oss.CompleteMultipartUploadRequest(
            bucket=self._store.bucket,
            key=self._full,
            upload_id=self._upload_id,
            complete_multipart_upload=oss.CompleteMultipartUpload(parts=self._parts),
        )
        try:
            return self._client.complete_multipart_upload(request).etag or ""
        except Exception as exc:
            err = map_oss_error(exc, "CompleteMultipartUpload", self._key, origin=self._store.origin)
            if isinstance(err, NotFoundError):
                try:
                    info = self._client.head_object(oss.HeadObjectRequest(bucket=self._store.bucket, key=self._full))
                    meta = {k.lower(): v for k, v in (info.metadata or {}).items()}
                    if meta.get(CLAIM_META) == self._token:
                        self._upload_id = None  # completed: nothing to abort
                        return info.etag or ""
                except Exception as head_exc:  # noqa: BLE001 - report the Complete failure unless HEAD is unsure
                    head_err = map_oss_error(head_exc, "HeadObject", self._key, origin=self._store.origin)
                    if not isinstance(head_err, NotFoundError):
                        err = _uncertain(head_err)
            self._fail(_uncertain(err))
            raise err from exc

    def _discard(self) -> None:
        """Best effort on OSS (a bucket lifecycle rule that aborts incomplete multipart
        uploads after a day catches what a crashed process leaves)."""
        self._buffer = bytearray()
        upload_id, self._upload_id = self._upload_id, None
        if upload_id is not None:
            try:
                self._client.abort_multipart_upload(
                    oss.AbortMultipartUploadRequest(bucket=self._store.bucket, key=self._full, upload_id=upload_id)
                )
            except Exception:  # noqa: BLE001 - the original failure matters more
                pass
