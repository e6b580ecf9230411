"""One async HTTP client for Alibaba Cloud RPC-style APIs (CCC, SCA), on httpx.

It signs every attempt afresh (ACS3-HMAC-SHA256, new date and nonce), reuses connections,
waits for a shared rate limiter before each attempt (every attempt spends quota), retries
only what may pass (throttling, server faults, broken connections — decided on the
service's ``Code``) with exponential backoff and full jitter, and turns every failure into
one of the errors of ``qcflow.errors`` carrying the service's code, RequestId and attempts.

Every call has a **deadline** (an absolute ``time.monotonic()`` value): a Function Compute
invocation has a hard end, and a retry loop that outlives it is killed mid-request. No
attempt starts when its backoff would end past the deadline, and each attempt's timeouts are
cut to the time left. Throttling is retried until the deadline whatever ``max_attempts``
says, because a quota window (60 s) outlasts any short retry budget; its backoff starts
higher and is fully jittered so that many instances spread out instead of retrying together.

Because ``UploadAudioData`` is not idempotent, the client tracks whether an attempt **may
have been applied** without its answer reaching us, and reports it on the result
(``ApiResponse.prior_attempt_uncertain``) as on the error it raises.

Why one module of ~460 lines: signing, the retry loop and its two backoff schedules, the
deadline and the uncertainty tracking act on the same attempt; they read best as one loop.
"""

from __future__ import annotations

import inspect
import json
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Protocol

import anyio
import httpx

from qcflow import __version__
from qcflow.acs import signer
from qcflow.acs.endpoint import Endpoint, parse_endpoint
from qcflow.credentials import CredentialsProvider
from qcflow.errors import (
    DeadlineError,
    QcflowError,
    RequestError,
    ServiceUnavailableError,
    ThrottledError,
    TransportError,
    error_class_for_code,
)
from qcflow.logs import redact

if TYPE_CHECKING:
    from qcflow.config import HttpSettings

log = logging.getLogger("qcflow.acs")

DEFAULT_USER_AGENT = f"qcflow/{__version__}"
#: Failures known to happen before the request left: the service cannot have acted on it.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
#: A safety net under the deadline: no call makes more attempts than this, whatever happens.
ATTEMPT_CEILING = 1000
#: httpx's read timeout restarts with every chunk received; this backstop (just past the time
#: left) ends an attempt whose answer trickles in, so a call cannot overrun its deadline.
_BACKSTOP_GRACE_SECONDS = 0.1


class RateLimiter(Protocol):
    """What the client needs of a limiter: ``async with limiter:`` waits for a slot.

    ``aiolimiter.AsyncLimiter`` fits; share one instance among every caller of an API so
    a whole run stays under that API's quota. A limiter that also has ``on_throttled()`` /
    ``on_success()`` (plain or async methods) is told after each attempt that was throttled /
    succeeded, so it can adapt its rate; both are optional and looked up by name.
    """

    async def __aenter__(self) -> Any: ...

    async def __aexit__(self, *exc: Any) -> Any: ...


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try.

    ``max_attempts`` bounds the attempts that fail other than by throttling (the first
    included); throttling is retried until the deadline, with its own slower backoff.
    ``deadline_seconds`` bounds a whole call, sleeps included, when the caller gives no deadline.
    ``min_attempt_seconds``: a retry starts only if at least this much time is left after its
    sleep; an attempt squeezed into the last milliseconds would time out after sending, which
    for ``UploadAudioData`` turns a clean refusal into "may have landed".
    ``retry_throttled``: False makes a throttled attempt final like any other failure (the
    callback's cheap path: the timer pass is its backstop, and retrying would compete with it).
    ``max_call_seconds``: when set, no call runs longer, whatever deadline its caller gives.
    """

    max_attempts: int = 5
    backoff_initial_seconds: float = 0.2
    backoff_max_seconds: float = 10.0
    deadline_seconds: float = 60.0
    throttle_backoff_initial_seconds: float = 1.0
    throttle_backoff_max_seconds: float = 20.0
    min_attempt_seconds: float = 0.5
    retry_throttled: bool = True
    max_call_seconds: float | None = None


@dataclass(frozen=True)
class ApiResponse:
    """A successful answer: the parsed JSON body and what identifies it for support.

    ``prior_attempt_uncertain``: an earlier attempt of this call may have been applied
    without its answer reaching us (for a non-idempotent action, a second effect may exist).
    """

    body: dict[str, Any]
    request_id: str | None
    http_status: int
    attempts: int = 1
    prior_attempt_uncertain: bool = False


SuccessCheck = Callable[[Mapping[str, Any]], bool]
#: Turns an answer's bytes into its body (``json.loads`` when none is given); a ``ValueError``
#: or a result other than a dict means "not a JSON object".
BodyParser = Callable[[bytes], Any]


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
    #: The clock deadlines are read on, and how to wait between attempts (tests may drive both).
    monotonic: Callable[[], float] = time.monotonic
    sleep: Callable[[float], Awaitable[Any]] = anyio.sleep
    rng: random.Random = field(default_factory=random.Random, repr=False)
    #: The setting the endpoint came from (``QCFLOW_SCA_ENDPOINT``): named with the host when a
    #: connection fails, since a wrong endpoint looks like an outage otherwise.
    setting: str | None = None

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

    def _where(self) -> str:
        """`` from <endpoint> (<setting>)``: which host did not answer, and where it was configured."""
        assert isinstance(self.endpoint, Endpoint)
        return f" from {self.endpoint.base_url}" + (f" ({self.setting})" if self.setting else "")

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
        deadline: float | None = None,
        parse: BodyParser | None = None,
    ) -> ApiResponse:
        """Call ``action`` until it succeeds, fails permanently, or its retries or time are spent.

        ``deadline`` is an absolute ``time.monotonic()`` value (``None``: now plus the policy's
        ``deadline_seconds``). The error raised carries ``attempts``, ``prior_attempt_uncertain``
        and, when the deadline is why the call stopped, ``deadline_reached``. ``parse`` turns
        the answer's bytes into its body (e.g. unwrapping while parsing).
        """
        policy = self.retry
        if deadline is None:
            deadline = self.monotonic() + policy.deadline_seconds
        if policy.max_call_seconds is not None:
            deadline = min(deadline, self.monotonic() + policy.max_call_seconds)
        attempts = 0
        throttled = 0  # attempts refused by throttling: retried until the deadline
        failed = 0  # attempts failed otherwise: bounded by max_attempts
        uncertain = False  # may an attempt have been applied without our hearing of it?
        last: QcflowError | None = None
        while True:
            if not await _wait_for_slot(limiter, deadline - self.monotonic()):
                raise _gave_up(last, action, attempts, uncertain)
            remaining = deadline - self.monotonic()
            if remaining <= 0:
                raise _gave_up(last, action, attempts, uncertain)
            attempts += 1
            try:
                response = await self._attempt(action, query, method, is_success, parse, remaining)
            except QcflowError as exc:
                uncertain = uncertain or exc.prior_attempt_uncertain
                exc.prior_attempt_uncertain = uncertain
                exc.attempts = attempts
                if isinstance(exc, ThrottledError):
                    await _notify(limiter, "on_throttled")
                if not exc.retryable or attempts >= ATTEMPT_CEILING:
                    raise
                if isinstance(exc, ThrottledError) and policy.retry_throttled:
                    throttled += 1
                    delay = _full_jitter(
                        self.rng,
                        policy.throttle_backoff_initial_seconds,
                        policy.throttle_backoff_max_seconds,
                        throttled,
                    )
                else:
                    failed += 1
                    if failed >= policy.max_attempts:
                        raise
                    delay = _full_jitter(self.rng, policy.backoff_initial_seconds, policy.backoff_max_seconds, failed)
                if self.monotonic() + delay + policy.min_attempt_seconds >= deadline:
                    exc.deadline_reached = True
                    raise
                _log_retry(exc, attempts, delay)
                last = exc
                await self.sleep(delay)
                continue
            await _notify(limiter, "on_success")
            return ApiResponse(response.body, response.request_id, response.http_status, attempts, uncertain)

    async def _attempt(
        self,
        action: str,
        query: Mapping[str, Any],
        method: str,
        is_success: SuccessCheck | None,
        parse: BodyParser | None,
        remaining: float,
    ) -> ApiResponse:
        """One signed request. An error it raises has ``prior_attempt_uncertain`` set when this
        very attempt may have been applied without its answer reaching us."""
        assert self.http is not None
        try:
            request = self.build_request(action, query, method=method)
        except httpx.InvalidURL:
            # e.g. a JsonStr past the URL length httpx accepts: nothing was sent, and never will be
            raise RequestError(
                "the request is too large to send (its query string exceeds the URL limit)",
                code="RequestTooLarge",
                action=action,
            ) from None
        request.extensions["timeout"] = _capped(self.timeout, remaining).as_dict()
        # httpx's messages may quote header values (credentials): only its class name is kept.
        try:
            with anyio.fail_after(remaining + _BACKSTOP_GRACE_SECONDS):
                response = await self.http.send(request)
        except (httpx.LocalProtocolError, httpx.UnsupportedProtocol) as exc:
            raise RequestError(f"the request could not be sent ({type(exc).__name__})", action=action) from None
        except httpx.TimeoutException as exc:
            where = self._where()
            error: QcflowError = TransportError(f"no answer in time ({type(exc).__name__}){where}", action=action)
            raise _lost(error, not isinstance(exc, _NOT_SENT)) from exc
        except httpx.TransportError as exc:
            error = TransportError(f"connection failed ({type(exc).__name__}){self._where()}", action=action)
            raise _lost(error, not isinstance(exc, _NOT_SENT)) from exc
        except TimeoutError as exc:  # the backstop: the answer was still coming in
            raise _lost(TransportError("no complete answer within the call's deadline", action=action), True) from exc
        status = response.status_code
        body = _json_body(response, parse)
        request_id = _request_id(body, response)
        if body is None:
            cls: type[QcflowError] = error_class_for_code(None, status)
            if status < 300:
                cls = ServiceUnavailableError  # a garbled or cut answer: the service's fault
            from qcflow.pii import Redactor  # only on this path: a cut GetResult answer holds transcripts

            error = cls(
                f"answer is not a JSON object: {Redactor().text(redact(response.text[:200]))!r}",
                request_id=request_id,
                http_status=status,
                action=action,
            )
            # a cut 200 or a gateway's 5xx page: the request may well have been processed
            raise _lost(error, status < 300 or status >= 500)
        if status >= 400 or (is_success is not None and not is_success(body)):
            code = _text(body.get("Code") or body.get("code"))
            # a service's message may echo what it was sent (SignatureDoesNotMatch quotes the
            # string to sign, STS token included): masked where the error is made
            message = redact(_text(body.get("Message") or body.get("message")) or "request failed")
            if status < 300 and not code and body.get("Success") is not False:
                # neither a success nor a refusal: an answer we cannot read, not a certain "no"
                error = ServiceUnavailableError(
                    f"answer neither succeeded nor failed: {message[:200]}",
                    request_id=request_id,
                    http_status=status,
                    action=action,
                )
                raise _lost(error, True)
            error = error_class_for_code(code, status)(
                message, code=code, request_id=request_id, http_status=status, action=action
            )
            # a 5xx without the service's Code came from a gateway: the outcome is unknown
            raise _lost(error, status >= 500 and not body.get("Code"))
        return ApiResponse(body, request_id, status)


def client_from_settings(
    settings: HttpSettings,
    *,
    endpoint: str,
    version: str,
    credentials: CredentialsProvider,
    http: httpx.AsyncClient | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    setting: str | None = None,
) -> AcsClient:
    """An ``AcsClient`` with the retry, deadline and timeout settings of the ``http`` slice
    (``setting``: the variable ``endpoint`` came from, named when a connection fails)."""
    return AcsClient(
        setting=setting,
        endpoint=endpoint,
        version=version,
        credentials=credentials,
        retry=RetryPolicy(
            max_attempts=settings.max_attempts,
            backoff_initial_seconds=settings.backoff_initial_seconds,
            backoff_max_seconds=settings.backoff_max_seconds,
            deadline_seconds=settings.call_deadline_seconds,
            throttle_backoff_initial_seconds=settings.throttle_backoff_initial_seconds,
            throttle_backoff_max_seconds=settings.throttle_backoff_max_seconds,
        ),
        timeout=httpx.Timeout(settings.timeout_seconds, connect=settings.connect_timeout_seconds),
        http=http,
        transport=transport,
    )


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _json_body(response: httpx.Response, parse: BodyParser | None = None) -> dict[str, Any] | None:
    try:
        body = (parse or json.loads)(response.content)
    except (ValueError, RecursionError):
        return None
    return body if isinstance(body, dict) else None


def _request_id(body: Mapping[str, Any] | None, response: httpx.Response) -> str | None:
    if body:
        found = body.get("RequestId") or body.get("requestId")
        if found:
            return str(found)
    return response.headers.get("x-acs-request-id")


def _lost(error: QcflowError, may_have_landed: bool) -> QcflowError:
    error.prior_attempt_uncertain = may_have_landed
    return error


def _capped(timeout: httpx.Timeout, remaining: float) -> httpx.Timeout:
    """``timeout`` with no phase longer than the time left (an unset phase gets the time left)."""
    remaining = max(remaining, 0.001)

    def cap(value: float | None) -> float:
        return remaining if value is None else min(value, remaining)

    return httpx.Timeout(
        connect=cap(timeout.connect), read=cap(timeout.read), write=cap(timeout.write), pool=cap(timeout.pool)
    )


def _full_jitter(rng: random.Random, initial: float, maximum: float, failures: int) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(maximum, initial * 2**(n-1))]."""
    ceiling = min(maximum, initial * math.ldexp(1.0, min(failures - 1, 60)))
    return rng.uniform(0.0, ceiling)


async def _wait_for_slot(limiter: RateLimiter | None, remaining: float) -> bool:
    """Wait for the limiter, but not past the deadline: False when the deadline came first."""
    if remaining <= 0:
        return False
    if limiter is None:
        return True
    with anyio.move_on_after(remaining):
        async with limiter:
            pass
        return True
    return False


async def _notify(limiter: RateLimiter | None, hook: str) -> None:
    """Tell an adaptive limiter how an attempt went (duck-typed: most limiters have no hooks)."""
    method = getattr(limiter, hook, None)
    if not callable(method):
        return
    result = method()
    if inspect.isawaitable(result):
        await result


def _gave_up(last: QcflowError | None, action: str, attempts: int, uncertain: bool) -> QcflowError:
    """The error of a call that ran out of time: the last attempt's, or a ``DeadlineError``
    when no attempt could be made."""
    error = last or DeadlineError("the call's deadline passed before a request could be sent", action=action)
    error.attempts = attempts
    error.prior_attempt_uncertain = uncertain
    error.deadline_reached = True
    return error


def _log_retry(exc: QcflowError, attempt: int, sleep: float) -> None:
    log.warning(
        "retrying %s after %s",
        exc.action,
        exc,
        extra={
            "event": "acs_retry",
            "action": exc.action,
            "code": exc.code,
            "request_id": exc.request_id,
            "attempt": attempt,
            "sleep_seconds": round(sleep, 3),
            "uncertain": exc.prior_attempt_uncertain,
        },
    )
