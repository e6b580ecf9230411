"""SCA task callbacks: read one from an HTTP request, check it, and treat it as a hint only.

When an ``UploadAudioData`` request carried a ``callbackUrl``, SCA calls
``callbackUrl?taskId=<id>&timestamp=<ms>&aliUid=<uid>&signature=<sig>&event=TaskComplete``
once the task is done, where ``sig = Base64(MD5("taskId=<id>&timestamp=<ms>&aliUid=<uid>"))``
(``../shared/reference/alibaba-apis.md`` §2a). The HTTP method is not documented, so both GET
(parameters in the query) and POST (in the query, or in a form or JSON body) are read.

**The signature uses no secret.** Anyone who knows the format can compute it for any
taskId, so a valid signature proves nothing about the sender. What it does allow: refusing
garbage, stale replays (``timestamp``) and callbacks for another account (``aliUid``). A
callback is therefore only a *hint*: the receiver fetches that taskId from ``GetResult``
(signed with its own credentials) and takes the data from there, never from the callback.
A forged callback costs one GetResult call; the harvester finds every task without callbacks.

This module is a runtime part (the callback function imports it): stdlib and
``qcflow.errors`` only.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote

from qcflow.errors import InvalidCallbackError

#: The parameters SCA sends (and the only ones read).
FIELDS = ("taskId", "timestamp", "aliUid", "signature", "event")
#: Bounds: a hint is a few short ids; anything larger is junk or an attack.
MAX_BODY_BYTES = 16 * 1024
MAX_VALUE_CHARS = 512
MAX_QUERY_KEYS = 64
#: A timestamp this far ahead of the receiver's clock is still accepted (clocks drift).
DEFAULT_FUTURE_SKEW_SECONDS = 60.0

_TASK_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}")  # SCA task ids: UUID-like
_TIMESTAMP = re.compile(r"[1-9][0-9]{0,15}")  # ms since the epoch; no leading zero (the text is signed)
_ALI_UID = re.compile(r"[0-9A-Za-z]{1,64}")  # an account id: digits in practice
_EVENT = re.compile(r"[A-Za-z0-9._-]{1,64}")
_SIGNATURE = re.compile(r"[A-Za-z0-9+/_-]{16,40}={0,2}")
_MD5_BYTES = 16


@dataclass(frozen=True)
class CallbackHint:
    """What a callback says: "task ``task_id`` is done" — to be confirmed with GetResult."""

    task_id: str
    timestamp_ms: int
    ali_uid: str
    event: str | None


def callback_signature(task_id: str, timestamp: str, ali_uid: str) -> str:
    """``Base64(MD5("taskId=<id>&timestamp=<ms>&aliUid=<uid>"))``, as SCA computes it (no secret)."""
    text = f"taskId={task_id}&timestamp={timestamp}&aliUid={ali_uid}"
    return base64.b64encode(hashlib.md5(text.encode("utf-8")).digest()).decode("ascii")


def _show(value: object, limit: int = 40) -> str:
    """A short, quoted view of received junk for an error message (never the whole of it)."""
    text = (
        value
        if isinstance(value, str)
        else (value.decode("utf-8", "replace") if isinstance(value, bytes) else type(value).__name__)
    )
    return repr(text[:limit]) + ("…" if len(text) > limit else "")


# --------------------------------------------------------------------------- parsing


def _one_value(name: str, value: object, numbers: bool) -> str:
    """A parameter's single text value; a list of one text (``parse_qs`` style) is accepted,
    and in JSON (``numbers``) an integer (a timestamp sent as a number)."""
    if isinstance(value, (list, tuple)):
        if len(value) != 1:
            raise InvalidCallbackError(f"{name} must have exactly one value, got {len(value)}", reason="malformed")
        value = value[0]
    if isinstance(value, bool) or not isinstance(value, (str, int) if numbers else str):
        raise InvalidCallbackError(f"{name} must be text, got {type(value).__name__}", reason="malformed")
    text = str(value)
    if len(text) > MAX_VALUE_CHARS:
        raise InvalidCallbackError(f"{name} is too long ({len(text)} characters): {_show(text)}", reason="too_large")
    return text


def _collect(source: Mapping[Any, Any], where: str, numbers: bool = False) -> dict[str, str]:
    if len(source) > MAX_QUERY_KEYS:
        raise InvalidCallbackError(f"{where} has too many parameters ({len(source)})", reason="too_large")
    return {name: _one_value(name, source[name], numbers) for name in FIELDS if name in source}


def _body_params(body: bytes | str, content_type: str | None) -> dict[str, str]:
    raw = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
    if len(raw) > MAX_BODY_BYTES:
        raise InvalidCallbackError(f"body is too large ({len(raw)} bytes)", reason="too_large")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidCallbackError("body is not UTF-8 text", reason="malformed") from None
    if not text.strip():
        return {}
    kind = (content_type or "").split(";", 1)[0].strip().lower()
    is_json = (kind.endswith("/json") or kind.endswith("+json")) if kind else text.lstrip().startswith("{")
    if is_json:
        try:
            data = json.loads(text)
        except (ValueError, RecursionError):
            raise InvalidCallbackError(f"body is not valid JSON: {_show(text)}", reason="malformed") from None
        if not isinstance(data, dict):
            raise InvalidCallbackError(f"JSON body is not an object but {type(data).__name__}", reason="malformed")
        return _collect(data, "JSON body", numbers=True)
    try:
        pairs = parse_qsl(text, keep_blank_values=True, max_num_fields=MAX_QUERY_KEYS)
    except ValueError:
        raise InvalidCallbackError("form body has too many fields", reason="too_large") from None
    form: dict[str, list[str]] = {}
    for key, value in pairs:
        form.setdefault(key, []).append(value)
    return _collect(form, "form body")


def _require(params: Mapping[str, str], name: str, pattern: re.Pattern[str]) -> str:
    value = params.get(name)
    if value is None or value == "":
        raise InvalidCallbackError(f"missing {name}", reason="missing")
    if not pattern.fullmatch(value):
        raise InvalidCallbackError(f"malformed {name}: {_show(value)}", reason="malformed")
    return value


def parse_callback(
    query: Mapping[str, str], body: bytes | str | None = None, content_type: str | None = None
) -> tuple[CallbackHint, str]:
    """The hint and the received signature, from the query and (POST) a form or JSON body.

    A parameter may come from either place; given in both with different values it is
    refused (``conflict``). Nothing is verified here: call ``verify_callback`` next.
    """
    if not isinstance(query, Mapping):
        raise InvalidCallbackError(f"query must be a mapping, got {type(query).__name__}", reason="malformed")
    params = _collect(query, "query")
    if body is not None:
        if not isinstance(body, (bytes, bytearray, str)):
            raise InvalidCallbackError(f"body must be bytes or text, got {type(body).__name__}", reason="malformed")
        for name, value in _body_params(bytes(body) if isinstance(body, bytearray) else body, content_type).items():
            if name in params and params[name] != value:
                raise InvalidCallbackError(f"{name} differs between the query and the body", reason="conflict")
            params[name] = value
    task_id = _require(params, "taskId", _TASK_ID)
    timestamp = _require(params, "timestamp", _TIMESTAMP)
    ali_uid = _require(params, "aliUid", _ALI_UID)
    signature = params.get("signature")
    if not signature:
        raise InvalidCallbackError("missing signature", reason="missing")
    event = params.get("event") or None
    if event is not None and not _EVENT.fullmatch(event):
        raise InvalidCallbackError(f"malformed event: {_show(event)}", reason="malformed")
    return CallbackHint(task_id, int(timestamp), ali_uid, event), signature


# --------------------------------------------------------------------------- verifying


def _signature_bytes(signature: str) -> bytes | None:
    """The 16 MD5 bytes a received signature stands for, however it was mangled in transit.

    Accepted: standard Base64 with or without ``=`` padding; ``+`` turned into a space by a
    form decoder on the way; still percent-encoded (``%2B``, ``%2F``, ``%3D``); the URL-safe
    alphabet. Anything else is ``None``.
    """
    text = signature.strip()
    if "%" in text:
        text = unquote(text)
    text = text.replace(" ", "+")
    if not _SIGNATURE.fullmatch(text):
        return None
    text = text.replace("-", "+").replace("_", "/").rstrip("=")
    try:
        raw = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) == _MD5_BYTES else None


def verify_callback(
    hint: CallbackHint,
    signature: str,
    *,
    now_ms: int,
    max_age_seconds: float,
    expected_ali_uid: str | None = None,
    future_skew_seconds: float = DEFAULT_FUTURE_SKEW_SECONDS,
) -> None:
    """Raise ``InvalidCallbackError`` unless the signature matches (compared in constant time),
    the timestamp is at most ``max_age_seconds`` old and not more than ``future_skew_seconds``
    ahead of ``now_ms``, and the aliUid is the expected one (when one is expected).

    Passing proves the callback is well-formed and fresh, not that SCA sent it (see the
    module docstring): use it to decide whether to look the task up, nothing more.
    """
    expected = hashlib.md5(
        f"taskId={hint.task_id}&timestamp={hint.timestamp_ms}&aliUid={hint.ali_uid}".encode("utf-8", "surrogatepass")
    ).digest()
    given = _signature_bytes(signature) if isinstance(signature, str) else None
    if given is None or not hmac.compare_digest(given, expected):
        raise InvalidCallbackError("signature does not match taskId, timestamp and aliUid", reason="signature")
    age_ms = now_ms - hint.timestamp_ms
    if age_ms > max_age_seconds * 1000:
        raise InvalidCallbackError(
            f"timestamp is stale: {age_ms // 1000} s old (at most {max_age_seconds:g} s)", reason="stale"
        )
    if -age_ms > future_skew_seconds * 1000:
        raise InvalidCallbackError(
            f"timestamp is {-age_ms // 1000} s in the future (at most {future_skew_seconds:g} s)", reason="future"
        )
    if expected_ali_uid is not None and not hmac.compare_digest(
        hint.ali_uid.encode("utf-8", "surrogatepass"), expected_ali_uid.encode("utf-8", "surrogatepass")
    ):
        raise InvalidCallbackError("aliUid is not this account's", reason="ali_uid")
