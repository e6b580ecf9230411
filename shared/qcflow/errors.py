"""One small error hierarchy for the whole package: every error qcflow raises on purpose is defined here.

Callers catch at the level they care about: ``RetryableError`` (try again later, with
backoff) or ``PermanentError`` (retrying cannot help; record it and move on). For service
errors the decision is made on the service's error ``Code`` — HTTP statuses are ambiguous
across Alibaba Cloud products (throttling arrives as 400 or 503, ``Success: false`` as 200).
"""

from __future__ import annotations

from typing import Any


class QcflowError(Exception):
    """Base of every error qcflow raises on purpose.

    ``code`` is the service's error code when one exists (``Throttling.User``,
    ``SignatureDoesNotMatch``…), ``request_id`` the service's RequestId for support tickets.
    ``prior_attempt_uncertain`` is set when an attempt of the same call may have been
    applied without its answer reaching us (a timeout or dropped connection after the request
    left, a gateway's 5xx without the service's ``Code``, a cut or unparseable 200): the service
    may have acted on it, so e.g. a "duplicate" refusal may mean "already done".
    ``attempts`` is how many requests the call sent (set by the API client on the error it
    raises); ``deadline_reached`` says the call stopped because its deadline left no time for
    another attempt, not because the error was permanent or the attempts were spent.
    """

    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        request_id: str | None = None,
        http_status: int | None = None,
        action: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.request_id = request_id
        self.http_status = http_status
        self.action = action
        self.prior_attempt_uncertain = False
        self.attempts: int | None = None
        self.deadline_reached = False

    def __str__(self) -> str:
        parts = []
        if self.action:
            parts.append(self.action)
        if self.code:
            parts.append(self.code)
        head = " ".join(parts)
        text = f"{head}: {self.message}" if head else self.message
        if self.http_status is not None:
            text += f" (HTTP {self.http_status})"
        if self.request_id:
            text += f" [RequestId {self.request_id}]"
        if self.deadline_reached:
            tried = (
                f" after {self.attempts} attempt{'s' if self.attempts != 1 else ''}"
                if self.attempts is not None
                else ""
            )
            text += f" (gave up{tried}: the call's deadline was reached)"
        if self.prior_attempt_uncertain:
            text += " (an earlier attempt got no answer and may have been applied)"
        return text


class RetryableError(QcflowError):
    """A fault that may pass: throttling, a busy or failing server, a broken connection."""

    retryable = True


class PermanentError(QcflowError):
    """A fault that retrying cannot fix: bad credentials, bad input, unknown objects."""


class ConfigError(PermanentError):
    """A missing or invalid setting; the message names the environment variable."""


class ThrottledError(RetryableError):
    """The service's quota was exceeded (``Throttling``, ``Throttling.User``, ``Throttling.Api``…)."""


class ServiceUnavailableError(RetryableError):
    """The service failed on its side (``InternalError``, ``ServiceUnavailable``, 5xx without a code)."""


class TransportError(RetryableError):
    """The request did not get an answer: connect/read timeout, reset or dropped connection."""


class DeadlineError(RetryableError):
    """The call's deadline passed before a request could be sent (e.g. while waiting for the
    rate limiter): nothing was sent by that attempt, and a later invocation may succeed."""


class LimitReachedError(RetryableError):
    """A local limit refused a call without waiting (the callback's per-instance GetResult
    bucket is empty): nothing was sent; the caller answers "later" instead of queueing."""


class DeploymentError(PermanentError):
    """The service refused the caller, not the request: a wrong AccessKey or signature, an
    unknown key, a clock off by minutes, a RAM policy without the action. Retrying cannot help,
    and neither can recording the recording as failed: every other call would fail the same way.
    Callers stop at the first (the CLI exits 3) or raise it (a function: FC retries, then its
    dead-letter queue), and never burn the recording it met. ``remedy`` says what to fix.
    """

    def __init__(self, message: str, *, remedy: str | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.remedy = remedy or deployment_remedy(self.code, self.action)


class AuthError(DeploymentError):
    """The service refused the credentials or the signature, or the caller lacks permission."""


class RequestError(PermanentError):
    """The service rejected the request itself: invalid parameter, unknown id, business failure."""


class NotFoundError(PermanentError):
    """The thing asked for does not exist (an object key, a ContactId)."""


# --- Input: events, keys, callbacks


class InvalidEventError(PermanentError):
    """The trigger event is not of the expected shape."""


class InvalidKeyError(PermanentError):
    """A key (or listing prefix) breaks the store's key rules; the message says which rule."""


class InvalidMetadataError(PermanentError):
    """User metadata that cannot travel as ``x-oss-meta-*`` headers (or a bad content type)."""


class InvalidCallbackError(PermanentError):
    """A callback request that is malformed, stale, for another account, or badly signed.

    ``reason`` is a short stable word (``missing``, ``malformed``, ``too_large``,
    ``conflict``, ``signature``, ``stale``, ``future``, ``ali_uid``) for logs and metrics;
    the message never echoes more than a short, ``repr``-quoted prefix of what was received.
    """

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message, code="InvalidCallback")
        self.reason = reason


# --- Clients and stores


class DuplicateCallUuidError(RequestError):
    """SCA refused the whole request because a ``callUuid`` in it was uploaded in the last 2 h.

    With ``prior_attempt_uncertain`` set, the duplicate is most likely this very call's
    earlier attempt, whose answer was lost: the recording is probably already submitted.
    ``attempts`` says how many requests the call sent.
    """

    @classmethod
    def from_error(cls, exc: QcflowError) -> DuplicateCallUuidError:
        duplicate = cls(
            exc.message, code=exc.code, request_id=exc.request_id, http_status=exc.http_status, action=exc.action
        )
        duplicate.prior_attempt_uncertain = exc.prior_attempt_uncertain
        duplicate.attempts = exc.attempts
        duplicate.deadline_reached = exc.deadline_reached
        return duplicate


class WriterFailedError(RequestError):
    """A writer whose ``write`` (or part upload) failed earlier was asked to go on or to
    commit. Nothing was committed; the original failure is the ``__cause__``."""


# --- Push


class ForeignBucketError(ConfigError):
    """An event for a bucket other than the configured recordings: dropped, not retried. Any other
    ``ConfigError`` (a bad setting) raises out of the handler, so that FC retries and dead-letters it."""


class PushIncomplete(RetryableError):
    """Some recordings of an event could not be settled now (a fault that outlasted the
    invocation, or another invocation's live claim): raised so FC's async retry comes back."""


# --- Harvest


class DeadlineReached(RetryableError):
    """The time budget ran out before the window was read to its end.

    Pages already yielded are valid; the window as a whole is not complete, so its
    checkpoint must not move. The next run reads it again.
    """


class WindowUnstable(RetryableError):
    """A window's results kept moving while it was paged: not checkpointed, read next run."""


# --- Tooling (the report)


class ReportError(PermanentError):
    """The report cannot be made as asked (bad range, unreadable part): the message says why."""


_RETRYABLE_PREFIXES: tuple[tuple[str, type[RetryableError]], ...] = (
    ("Throttling", ThrottledError),
    ("Rejected.Throttling", ThrottledError),  # KMS's (HTTP 429 "QPS Limit Exceeded")
    ("ServiceUnavailable", ServiceUnavailableError),
    ("InternalError", ServiceUnavailableError),
    ("ServiceBusy", ServiceUnavailableError),
    ("SystemBusy", ServiceUnavailableError),
    ("ServerBusy", ServiceUnavailableError),
    ("RequestTimeout", ServiceUnavailableError),
    ("UnknownError", ServiceUnavailableError),  # Alibaba Cloud's generic HTTP 500
)
_AUTH_PREFIXES = (
    "SignatureDoesNotMatch",
    "IncompleteSignature",
    "InvalidAccessKeyId",
    "InvalidSecurityToken",
    "InvalidTimeStamp",
    "SignatureNonceUsed",
    "SecurityTokenExpired",
    "RequestTimeTooSkewed",
    "Forbidden",
    "NoPermission",
    "AccessDenied",
)


_CREDENTIAL_PREFIXES = (
    "SignatureDoesNotMatch",
    "IncompleteSignature",
    "InvalidAccessKeyId",
    "InvalidSecurityToken",
    "SecurityTokenExpired",
    "SignatureNonceUsed",
)
_CLOCK_PREFIXES = ("InvalidTimeStamp", "RequestTimeTooSkewed")


def deployment_remedy(code: str | None, action: str | None = None) -> str:
    """What to fix for a deployment error's ``code``: the credentials, the clock or the RAM policy."""
    code = code or ""
    if code.startswith(_CREDENTIAL_PREFIXES):
        return (
            "check ALIBABA_CLOUD_ACCESS_KEY_ID and ALIBABA_CLOUD_ACCESS_KEY_SECRET (and ALIBABA_CLOUD_SECURITY_TOKEN "
            "with STS credentials; in Function Compute, the function's role)"
        )
    if code.startswith(_CLOCK_PREFIXES):
        return "this machine's clock is more than 15 minutes off: synchronise it (NTP)"
    what = action or "this action"
    return (
        f"the RAM policy of this AccessKey's user (or the function's role) must allow {what} "
        "(infra/policy/qcflow-<function>.json lists what each function needs)"
    )


def error_class_for_code(code: str | None, http_status: int | None = None) -> type[QcflowError]:
    """Choose the error class from the service's error ``Code``.

    The HTTP status is used only when the body carried no code at all (a proxy's HTML page,
    an empty 502): then 5xx is taken as transient and anything else as permanent.
    """
    if code:
        if code.isdigit():  # SCA's Success:false answers may carry an HTTP-like number
            return ServiceUnavailableError if int(code) >= 500 else (ThrottledError if code == "429" else RequestError)
        for prefix, cls in _RETRYABLE_PREFIXES:
            if code.startswith(prefix):
                return cls
        if code.startswith(_AUTH_PREFIXES):
            return AuthError
        if "NotFound" in code or "NotExist" in code:
            return NotFoundError
        return RequestError
    if http_status == 429:
        return ThrottledError
    if http_status is not None and (http_status >= 500 or http_status == 408):
        return ServiceUnavailableError
    return RequestError
