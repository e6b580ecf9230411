"""Structured JSON logs (one object per line, as Function Compute's log service ingests them).

Fields passed with ``extra=`` (``event``, ``action``, ``code``, ``request_id``…) become keys of
the object. A filter masks URL signatures and credentials that might slip into a message
or a field (a pre-signed ``voiceFileUrl`` carries ``Signature=`` and ``OSSAccessKeyId=``).
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
from collections.abc import Iterator
from typing import IO, Any

from pythonjsonlogger.json import JsonFormatter

_SECRET_PARAMS = re.compile(
    r"(?i)\b(signature|ossaccesskeyid|securitytoken|security-token|x-oss-signature|x-oss-credential|"
    r"x-oss-security-token|x-amz-signature|x-amz-credential|x-amz-security-token|accesskeysecret|access_key_secret)"
    r"(=|%3D|\":\s*\"|:\s*)([^&\s\"',;]+)"
)
_REDACTED = "***"
#: The callback token is the last path segment of callbackUrl (``qcflow.callback_handler``).
_CALLBACK_TOKEN = re.compile(r"(/sca-callback/)([A-Za-z0-9_-]+)")


def redact(text: str) -> str:
    """``text`` with the values of signature/credential parameters and callback tokens replaced by ``***``."""
    text = _SECRET_PARAMS.sub(lambda m: f"{m.group(1)}{m.group(2)}{_REDACTED}", text)
    return _CALLBACK_TOKEN.sub(lambda m: f"{m.group(1)}{_REDACTED}", text)


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _redact_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_redact_value(v) for v in value]
    return value


class RedactingFilter(logging.Filter):
    """Masks secrets in the message, its arguments and every extra field of a record."""

    _STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(str(record.msg))
        if record.args:
            args = record.args if isinstance(record.args, tuple) else (record.args,)
            record.args = tuple(_redact_value(str(a)) if not isinstance(a, (int, float)) else a for a in args)
        for key, value in list(vars(record).items()):
            if key not in self._STANDARD:
                setattr(record, key, _redact_value(value))
        return True


#: Events the CLI logs at DEBUG (``to_stderr``). Most are logged once per recording, result, part
#: or API attempt: in a function they are the audit trail; in an operator's terminal a backfill
#: of thousands would bury everything else, and the bar and the summary count them instead. The
#: others the command says itself, on one line of its own (a deployment error, the harvest's
#: summary): logged too, they would be said twice.
CLI_DEBUG_EVENTS = frozenset(
    {
        "push_outcome",
        "push_ignored",
        "push_lookup_found",
        "push_key_decoded",
        "acs_retry",
        "harvest_part",
        "callback_harvested",
        "callback_deferred",
        "harvest_done",
        "push_deployment_error",
    }
)


class _CurrentStderr(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a line is logged: a progress display may
    redirect it for a while, so that log lines print above the bar, not through it."""

    @property
    def stream(self) -> IO[str]:
        return sys.stderr

    @stream.setter
    def stream(self, value: IO[str]) -> None:
        pass


class _Demote(logging.Filter):
    """``CLI_DEBUG_EVENTS`` at DEBUG: dropped unless the level is DEBUG, relabelled when shown."""

    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "event", None) not in CLI_DEBUG_EVENTS or record.levelno <= logging.DEBUG:
            return True
        if self.level > logging.DEBUG:
            return False
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return True


#: Set by ``to_stderr`` for a command's lifetime: every ``configure_logging`` (also the one of a
#: handler the demo runs) then writes to stderr with CLI_DEBUG_EVENTS demoted.
_cli_mode = False


@contextlib.contextmanager
def to_stderr(level: str | int = "INFO") -> Iterator[logging.Logger]:
    """For a CLI command's lifetime: qcflow's logs on stderr (stdout carries the command's table,
    summary or JSON, once), ``CLI_DEBUG_EVENTS`` at DEBUG. Restores the previous handlers after."""
    global _cli_mode
    logger = logging.getLogger("qcflow")
    saved = (logger.handlers[:], logger.level, logger.propagate, _cli_mode)
    _cli_mode = True
    try:
        yield configure_logging(level)
    finally:
        logger.handlers, logger.level, logger.propagate, _cli_mode = saved[0], saved[1], saved[2], saved[3]


def configure_logging(level: str | int = "INFO", stream: IO[str] | None = None) -> logging.Logger:
    """Send the ``qcflow`` loggers to ``stream`` (stdout) as JSON lines, secrets masked (inside
    ``to_stderr``: to stderr, CLI_DEBUG_EVENTS at DEBUG, whatever ``stream`` says)."""
    handler: logging.StreamHandler = _CurrentStderr() if _cli_mode else logging.StreamHandler(stream or sys.stdout)
    if _cli_mode:
        handler.addFilter(_Demote(logging.getLevelName(level) if isinstance(level, str) else level))
    handler.setFormatter(
        JsonFormatter(
            "{asctime}{levelname}{name}{message}",
            style="{",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            json_ensure_ascii=False,
        )
    )
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("qcflow")
    logger.handlers = [handler]
    logger.setLevel(level)
    logger.propagate = False
    return logger
