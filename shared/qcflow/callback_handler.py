"""The callback function's HTTP edge: who may cost us a GetResult call, and how much.

The callback function sits behind an anonymous HTTP trigger and SCA's signature uses no
secret (``qcflow.callback``), so anyone who learns the URL could make well-signed callbacks
for any taskId, each costing a GetResult call out of the quota the harvest lives on. The edge,
in the order a request meets it:

1. **The token** (``QCFLOW_CALLBACK_TOKEN``). Push sends ``<base>/sca-callback/<token>`` as
   callbackUrl; the last path segment is compared in constant time with the current and the
   previous token (``QCFLOW_CALLBACK_PREVIOUS_TOKEN``: rotation loses no task in flight)
   before anything else is looked at. Anything else answers **404** and nothing more. With no
   token configured every request is refused (push then sends no callbackUrl: the timer
   harvests everything).
2. **The callback itself**: parameters, signature, timestamp and, when
   ``QCFLOW_SCA_ALI_UID`` is set, the account; **400** with a short stable reason.
3. **The cheap path**: a per-instance token bucket holding this instance's part of the
   callbacks' share of the GetResult quota (``QCFLOW_GET_RESULT_CALLBACK_SHARE`` split over
   ``QCFLOW_CALLBACK_MAX_INSTANCES``; the harvest's limiter runs at the rest), and one
   GetResult attempt with a short deadline (``QCFLOW_CALLBACK_GET_RESULT_SECONDS``), no
   retry of a throttled one. Over the bucket, throttled, slow or cut short: **503** at once —
   SCA may call again, and the timer pass is the backstop either way.

Every refusal is one log line ``event: callback_refused`` with a ``reason`` (``token``,
``token_unset``, ``event``, ``signature``, ``stale``, ``future``, ``ali_uid``, ``missing``,
``malformed``, ``too_large``, ``conflict``) that an alarm can count; a 503 is
``callback_deferred``. Answers carry no internal error code: an unexpected failure is a plain
500 ``{"error": "internal error"}``. Neither a token nor the request's path is ever logged.
"""

from __future__ import annotations

import dataclasses
import hmac
import json
import logging
import time
from typing import TYPE_CHECKING, Any

from qcflow.acs.limits import TokenBucket
from qcflow.errors import InvalidCallbackError, InvalidEventError, QcflowError, RetryableError
from qcflow.logs import redact

if TYPE_CHECKING:
    from qcflow.config import Settings
    from qcflow.fc import FunctionApp
    from qcflow.sca import ScaClient
    from qcflow.services import Services

log = logging.getLogger("qcflow.callback")


def answer(status: int, body: dict[str, Any]) -> dict[str, Any]:
    """An FC HTTP-trigger answer with a JSON body."""
    return {"statusCode": status, "headers": {"content-type": "application/json"}, "body": json.dumps(body)}


NOT_FOUND = {"error": "not found"}
INTERNAL = {"error": "internal error"}
LATER = {"error": "retry later"}


def token_matches(path: str, tokens: tuple[str, ...]) -> bool:
    """Is ``path``'s last segment one of ``tokens``? Every token is compared, in constant time,
    whether or not an earlier one matched (the time says nothing about which, or how close)."""
    segment = path.rstrip("/").rsplit("/", 1)[-1].encode("utf-8", "surrogatepass")
    found = False
    for token in tokens:
        found |= hmac.compare_digest(segment, token.encode("utf-8"))
    return found


def bucket_for(settings: Settings) -> TokenBucket:
    """This instance's GetResult bucket: the callbacks' share split over the instances, and a
    burst that keeps all instances' bursts together within half the quota's headroom (the
    harvest's limiter keeps its own burst in the other half)."""
    quotas, callback = settings.quotas, settings.callback
    rate = quotas.callback_rate_per_second / callback.max_instances
    spare = quotas.get_result_quota * quotas.get_result_headroom / 2
    return TokenBucket(rate, max(1, int(spare / callback.max_instances)))


class CallbackEdge:
    """Per-instance state of the callback function (its bucket and its one-attempt SCA client,
    built on first use) and the request handling. One per FC instance: the handler module
    makes it at import, beside its ``FunctionApp``."""

    def __init__(self) -> None:
        self.bucket: TokenBucket | None = None
        self._sca: ScaClient | None = None
        self._sca_of: object | None = None

    def serve(self, app: FunctionApp, event: Any, context: Any) -> dict[str, Any]:
        """The FC handler's body: ``handle`` on the instance's loop; whatever escapes it (a
        setting refused at start, a bug) becomes a plain 500 — an anonymous caller learns nothing."""
        try:
            result: dict[str, Any] = app.invoke(
                context, lambda services, invocation: self.handle(event, services, deadline=invocation.deadline)
            )
            return result
        except Exception as exc:  # noqa: BLE001 - the last line of defence of an internet-facing function
            log.error(
                "callback failed unexpectedly: %s: %s",
                type(exc).__name__,
                redact(str(exc))[:300],
                extra={"event": "callback_failed", "error": type(exc).__name__},
            )
            return answer(500, INTERNAL)

    def cheap_sca(self, services: Services) -> ScaClient:
        """The SCA client of the cheap path: one attempt, no throttle retry, a short deadline,
        this instance's bucket as its GetResult limiter; it shares the instance's connections."""
        if self._sca is None or self._sca_of is not services:
            from qcflow.sca import ScaClient

            settings = services.settings
            self.bucket = bucket_for(settings)
            acs = services.sca.acs
            retry = dataclasses.replace(
                acs.retry, max_attempts=1, retry_throttled=False, max_call_seconds=settings.callback.get_result_seconds
            )
            self._sca = ScaClient(
                dataclasses.replace(acs, retry=retry),
                base_me_agent_id=services.sca.base_me_agent_id,
                get_result_limiter=self.bucket,
            )
            self._sca_of = services
        return self._sca

    async def handle(
        self, raw_event: Any, services: Services, *, deadline: float, now_ms: int | None = None
    ) -> dict[str, Any]:
        """One request: token, callback, bucket, one GetResult; the HTTP answer."""
        from qcflow.callback import parse_callback, verify_callback
        from qcflow.models.events import parse_http_event

        settings = services.settings.callback
        if settings.token is None:
            log.error(
                "callback refused: QCFLOW_CALLBACK_TOKEN is not set, so no callback can be told from a forgery",
                extra={"event": "callback_refused", "reason": "token_unset"},
            )
            return answer(404, NOT_FOUND)
        try:
            event = parse_http_event(raw_event)
        except InvalidEventError as exc:
            return self._refused("event", exc, 404, NOT_FOUND)
        tokens = tuple(t.get_secret_value() for t in (settings.token, settings.previous_token) if t is not None)
        if not token_matches(event.path, tokens):
            log.warning("callback refused: no valid token", extra={"event": "callback_refused", "reason": "token"})
            return answer(404, NOT_FOUND)
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        try:
            hint, signature = parse_callback(event.query, event.body, event.header("content-type"))
            verify_callback(
                hint,
                signature,
                now_ms=now_ms,
                max_age_seconds=settings.max_age_seconds,
                expected_ali_uid=settings.expected_ali_uid,
            )
        except InvalidCallbackError as exc:
            return self._refused(exc.reason, exc, 400, {"error": exc.reason})
        return await self._harvest(hint.task_id, services, deadline)

    def _refused(self, reason: str, exc: Exception, status: int, body: dict[str, Any]) -> dict[str, Any]:
        log.warning("callback refused: %s", exc, extra={"event": "callback_refused", "reason": reason})
        return answer(status, body)

    async def _harvest(self, task_id: str, services: Services, deadline: float) -> dict[str, Any]:
        from qcflow.harvest import harvest_task_ids
        from qcflow.ledger import Ledger

        sca = self.cheap_sca(services)
        assert self.bucket is not None
        if not self.bucket.available():
            return self._deferred(task_id, "limit", "this instance's share of the GetResult quota is spent for now")
        try:
            report = await harvest_task_ids(
                services.settings,
                sca,
                services.store,
                [task_id],
                raw_store=services.raw_store,
                deadline=deadline,
                ledger=Ledger(services.store),
                limiter=self.bucket,
            )
        except RetryableError as exc:
            return self._deferred(task_id, exc.code or type(exc).__name__, str(exc))
        except QcflowError as exc:
            log.error(
                "callback for %s failed: %s",
                task_id,
                exc,
                extra={"event": "callback_failed", "task_id": task_id, "code": exc.code},
            )
            return answer(500, INTERNAL)
        if report.stopped_by_deadline:
            return self._deferred(task_id, "deadline", "the invocation's time ran out before the task was read")
        reviews = int(report.reviews.get("reviews_written", 0))  # the task may come back reviewed
        log.info(
            "callback for %s: %d written, %d review(s)",
            task_id,
            report.written,
            reviews,
            extra={
                "event": "callback_harvested",
                "task_id": task_id,
                "written": report.written,
                "reviews_written": reviews,
            },
        )
        return answer(200, {"task_id": task_id, "written": report.written, "reviews_written": reviews})

    def _deferred(self, task_id: str, why: str, message: str) -> dict[str, Any]:
        # SCA may call again; the timer's pass is the backstop either way
        log.warning(
            "callback for %s not harvested now: %s",
            task_id,
            message,
            extra={"event": "callback_deferred", "task_id": task_id, "code": why},
        )
        return answer(503, LATER)
