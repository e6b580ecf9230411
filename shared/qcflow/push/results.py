"""What happened to one recording in a push, and the log line that says so.

Every result a push returns is logged once, on the ``qcflow.push`` logger, with the same fields
(``push_outcome``, or ``push_ignored`` for objects that are not recordings to push).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any, Literal

from qcflow.errors import QcflowError
from qcflow.logs import redact

log = logging.getLogger("qcflow.push")

PushStatus = Literal["submitted", "already_submitted", "failed", "already_failed", "ignored", "busy", "retry"]


@dataclass(frozen=True)
class PushResult:
    """What happened to one recording (or event record) in this run."""

    status: PushStatus
    location: str
    key: str | None = None
    contact_id: str | None = None
    task_id: str | None = None
    code: str | None = None
    message: str | None = None
    request_id: str | None = None
    generation: int | None = None
    attempts: int | None = None
    uncertain: bool = False
    #: ``busy``/``retry``: the claim that blocks a rerun of the recording lives until then (epoch).
    held_until: float | None = None
    #: ``retry`` of an operator's run: its unsent claim was released, a rerun may push it at once.
    released: bool = False

    @property
    def settled(self) -> bool:
        """Nothing more to do now (``busy`` and ``retry`` need a later attempt)."""
        return self.status not in ("busy", "retry")


def error_result(
    status: PushStatus,
    exc: QcflowError,
    *,
    location: str,
    key: str | None,
    contact_id: str | None,
    generation: int | None = None,
) -> PushResult:
    """The result of a recording stopped by ``exc`` (its message redacted), logged."""
    return logged(
        PushResult(
            status,
            location,
            key,
            contact_id,
            code=exc.code or type(exc).__name__,
            message=redact(str(exc)),
            request_id=exc.request_id,
            generation=generation,
            attempts=exc.attempts,
            uncertain=exc.prior_attempt_uncertain,
        )
    )


def ignored(location: str, key: str, reason: str) -> PushResult:
    """An object that is not a recording to push, logged as ``push_ignored`` (a forged key: a bounded line)."""
    result = PushResult("ignored", location, key, message=reason)
    shown = key if len(key) <= 300 else key[:300] + f"… ({len(key)} characters)"
    log.info(
        "ignored %r: %s",
        shown,
        reason[:300],
        extra=log_fields(replace(result, key=shown, message=reason[:300]), event="push_ignored"),
    )
    return result


def logged(result: PushResult) -> PushResult:
    """``result``, after its ``push_outcome`` line (error for failed, warning for busy and retry)."""
    level = {"failed": logging.ERROR, "retry": logging.WARNING, "busy": logging.WARNING}.get(
        result.status, logging.INFO
    )
    log.log(
        level,
        "push %s: %s",
        result.status,
        result.key or result.location,
        extra=log_fields(result, event="push_outcome"),
    )
    return result


def log_fields(result: PushResult, *, event: str) -> dict[str, Any]:
    """The structured fields of a result's log line."""
    return {
        "event": event,
        "status": result.status,
        "key": result.key,
        "contact_id": result.contact_id,
        "task_id": result.task_id,
        "code": result.code,
        "request_id": result.request_id,
        "generation": result.generation,
        "attempts": result.attempts,
        "uncertain": result.uncertain,
        "reason": result.message,
    }
