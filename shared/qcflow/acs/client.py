"""One async HTTP client for Alibaba Cloud RPC-style APIs (CCC, SCA), on httpx.

It signs every attempt afresh (ACS3-HMAC-SHA256, new date and nonce), reuses connections,
waits for a shared rate limiter before each attempt (every attempt spends quota), retries
only what may pass (throttling, server faults, broken connections — decided on the
service's ``Code``) with exponential backoff and full jitter, and turns every failure into
one of the errors of ``qcflow.errors`` carrying the service's code and RequestId.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Protocol

import httpx
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt, stop_before_delay, wait_random_exponential

from qcflow import __version__
from qcflow.acs import signer
from qcflow.acs.endpoint import Endpoint, parse_endpoint
from qcflow.credentials import CredentialsProvider
from qcflow.errors import QcflowError, RequestError, RetryableError, ServiceUnavailableError, TransportError, error_class_for_code

if TYPE_CHECKING:
    from qcflow.config import Settings

log = logging.getLogger("qcflow.acs")

DEFAULT_USER_AGENT = f"qcflow/{__version__}"
#: Failures known to happen before the request left: the service cannot have acted on it.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


class RateLimiter(Protocol):
    """What the client needs of a limiter: ``async with limiter:`` waits for a slot.

    ``aiolimiter.AsyncLimiter`` fits; share one instance among every caller of an API so
    a whole run stays under that API's quota.
    """

    async def __aenter__(self) -> Any: ...

    async def __aexit__(self, *exc: object) -> Any: ...


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try. ``max_elapsed_seconds`` bounds the whole call, sleeps included."""

    max_attempts: int = 5
    backoff_initial_seconds: float = 0.2
    backoff_max_seconds: float = 10.0
    max_elapsed_seconds: float | None = None


@dataclass(frozen=True)
class ApiResponse:
    """A successful answer: the parsed JSON body and what identifies it for support."""

    body: dict[str, Any]
    request_id: str | None
    http_status: int
    attempts: int = 1


SuccessCheck = Callable[[Mapping[str, Any]], bool]


@dataclass
class AcsClient:
    """Signed calls to one product (one endpoint, one API version).

    Pass ``http`` to share one connection pool among clients, or ``transport`` to run the
    real code path against an in-process or loopback server in tests.
    """

    endpoint: Endpoint | str
    version: str
    credentials: CredentialsProvider
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    timeout: httpx.Timeout = field(default_factory=lambda: httpx.Timeout(10.0, connect=5.0))
    user_agent: str = DEFAULT_USER_AGENT
    http: httpx.AsyncClient | None = None
    transport: httpx.AsyncBaseTransport | None = None
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(timezone.utc))
    nonce: Callable[[], str] = signer.new_nonce

    def __post_init__(self) -> None:
        if isinstance(self.endpoint, str):
            self.endpoint = parse_endpoint(self.endpoint)
        self._owns_http = self.http is None
        if self.http is None:
            self.http = httpx.AsyncClient(
                transport=self.transport,
                timeout=self.timeout,
                limits=httpx.Limits(max_connections=100, max_keepalive_connections=50),
            )

    async def aclose(self) -> None:
        if self._owns_http and self.http is not None:
            await self.http.aclose()

    async def __aenter__(self) -> AcsClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- building -----------------------------------------------------------------------

    def build_request(self, action: str, query: Mapping[str, Any], *, method: str = "POST") -> httpx.Request:
        """A signed RPC request: parameters in the query string, empty body, as the SDK sends it."""
        assert isinstance(self.endpoint, Endpoint)
        params = {key: _as_text(value) for key, value in query.items() if value is not None}
        creds = self.credentials()
        headers: dict[str, str] = {
            "host": self.endpoint.host,
            "x-acs-version": self.version,
            "x-acs-action": action,
            "user-agent": self.user_agent,
            "x-acs-date": signer.acs_timestamp(self.clock()),
            "x-acs-signature-nonce": self.nonce(),
            "accept": "application/json",
            "x-acs-content-sha256": signer.EMPTY_SHA256,
            "x-acs-credentials-provider": creds.provider_name,
        }
        if creds.security_token:
            headers["x-acs-accesskey-id"] = creds.access_key_id
            headers["x-acs-security-token"] = creds.security_token
        headers["Authorization"] = signer.authorization(
            creds.access_key_id, creds.access_key_secret, method, "/", params, headers, signer.EMPTY_SHA256
        )
        query_string = signer.canonical_query(params)
        url = f"{self.endpoint.base_url}/" + (f"?{query_string}" if query_string else "")
        content = b"" if method.upper() in ("POST", "PUT") else None
        return httpx.Request(method.upper(), httpx.URL(url), headers=headers, content=content)

    # -- calling ------------------------------------------------------------------------

    async def call(
        self,
        action: str,
        query: Mapping[str, Any],
        *,
        method: str = "POST",
        limiter: RateLimiter | None = None,
        is_success: SuccessCheck | None = None,
    ) -> ApiResponse:
        """Call ``action`` until it succeeds, fails permanently, or the retry policy is spent."""
        policy = self.retry
        stop = stop_after_attempt(policy.max_attempts)
        if policy.max_elapsed_seconds is not None:
            # no new attempt that would start after the bound (each attempt has its timeouts)
            stop = stop | stop_before_delay(policy.max_elapsed_seconds)
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(RetryableError),
            stop=stop,
            wait=wait_random_exponential(multiplier=policy.backoff_initial_seconds, max=policy.backoff_max_seconds),
            before_sleep=_log_retry,
            reraise=True,
        )
        uncertain = False  # did an earlier attempt go out and get no answer?
        async for attempt in retrying:
            with attempt:
                try:
                    response = await self._attempt(action, query, method, limiter, is_success)
                except QcflowError as exc:
                    if isinstance(exc, TransportError) and not isinstance(exc.__cause__, _NOT_SENT):
                        uncertain = True
                    exc.prior_attempt_uncertain = uncertain
                    raise
                return ApiResponse(response.body, response.request_id, response.http_status, attempt.retry_state.attempt_number)
        raise AssertionError("unreachable: tenacity either returns or re-raises")  # pragma: no cover

    async def _attempt(
        self,
        action: str,
        query: Mapping[str, Any],
        method: str,
        limiter: RateLimiter | None,
        is_success: SuccessCheck | None,
    ) -> ApiResponse:
        assert self.http is not None
        if limiter is not None:
            async with limiter:
                pass
        request = self.build_request(action, query, method=method)
        # httpx's messages may quote header values (credentials): only its class name is kept.
        try:
            response = await self.http.send(request)
        except (httpx.LocalProtocolError, httpx.UnsupportedProtocol) as exc:
            raise RequestError(f"the request could not be sent ({type(exc).__name__})", action=action) from None
        except httpx.TimeoutException as exc:
            raise TransportError(f"no answer in time ({type(exc).__name__})", action=action) from exc
        except httpx.TransportError as exc:
            raise TransportError(f"connection failed ({type(exc).__name__})", action=action) from exc
        body = _json_body(response)
        request_id = _request_id(body, response)
        if body is None:
            cls: type[QcflowError] = error_class_for_code(None, response.status_code)
            if response.status_code < 300:
                cls = ServiceUnavailableError  # a garbled or cut answer: the service's fault
            raise cls(
                f"answer is not a JSON object: {response.text[:200]!r}",
                request_id=request_id,
                http_status=response.status_code,
                action=action,
            )
        if response.status_code >= 400 or (is_success is not None and not is_success(body)):
            code = _text(body.get("Code") or body.get("code"))
            message = _text(body.get("Message") or body.get("message")) or "request failed"
            raise error_class_for_code(code, response.status_code)(
                message, code=code, request_id=request_id, http_status=response.status_code, action=action
            )
        return ApiResponse(body, request_id, response.status_code)


def client_from_settings(
    settings: Settings,
    *,
    endpoint: str,
    version: str,
    credentials: CredentialsProvider,
    http: httpx.AsyncClient | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> AcsClient:
    """An ``AcsClient`` with the retry and timeout settings of ``settings``."""
    return AcsClient(
        endpoint=endpoint,
        version=version,
        credentials=credentials,
        retry=RetryPolicy(
            max_attempts=settings.max_attempts,
            backoff_initial_seconds=settings.backoff_initial_seconds,
            backoff_max_seconds=settings.backoff_max_seconds,
        ),
        timeout=httpx.Timeout(settings.http_timeout_seconds, connect=settings.http_connect_timeout_seconds),
        http=http,
        transport=transport,
    )


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _json_body(response: httpx.Response) -> dict[str, Any] | None:
    try:
        body = json.loads(response.content)
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _request_id(body: Mapping[str, Any] | None, response: httpx.Response) -> str | None:
    if body:
        found = body.get("RequestId") or body.get("requestId")
        if found:
            return str(found)
    return response.headers.get("x-acs-request-id")


def _log_retry(state: RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    sleep = state.next_action.sleep if state.next_action else 0.0
    log.warning(
        "retrying %s after %s",
        getattr(exc, "action", None),
        exc,
        extra={
            "event": "acs_retry",
            "action": getattr(exc, "action", None),
            "code": getattr(exc, "code", None),
            "request_id": getattr(exc, "request_id", None),
            "attempt": state.attempt_number,
            "sleep_seconds": round(sleep, 3),
        },
    )
