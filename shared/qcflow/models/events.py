"""Function Compute trigger events: OSS (object created), timer and HTTP.

FC hands the event to a Python handler as bytes of JSON. A malformed event is a permanent
error (retrying the same bytes cannot help); the message says what is wrong with it.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from qcflow.errors import InvalidEventError
from qcflow.models.base import first_problem


class _EventModel(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="allow")


class OssBucket(_EventModel):
    name: str = Field(min_length=1)
    arn: str | None = None
    owner_identity: str | None = Field(default=None, alias="ownerIdentity")


class OssObject(_EventModel):
    key: str = Field(min_length=1, description="as given by the event: URL-encoding is UNCONFIRMED")
    size: int | None = None
    delta_size: int | None = Field(default=None, alias="deltaSize")
    etag: str | None = Field(default=None, alias="eTag")


class OssInfo(_EventModel):
    bucket: OssBucket
    object: OssObject
    oss_schema_version: str | None = Field(default=None, alias="ossSchemaVersion")
    rule_id: str | None = Field(default=None, alias="ruleId")


class OssEventRecord(_EventModel):
    event_name: str = Field(alias="eventName")
    event_source: str | None = Field(default=None, alias="eventSource")
    event_time: str | None = Field(default=None, alias="eventTime")
    event_version: str | None = Field(default=None, alias="eventVersion")
    region: str | None = None
    oss: OssInfo

    @property
    def bucket(self) -> str:
        return self.oss.bucket.name

    @property
    def key(self) -> str:
        return self.oss.object.key


class OssEvent(_EventModel):
    """One OSS trigger invocation: one or more object-created records."""

    events: list[OssEventRecord] = Field(min_length=1)


class TimerEvent(_EventModel):
    trigger_time: str | None = Field(default=None, alias="triggerTime")
    trigger_name: str | None = Field(default=None, alias="triggerName")
    payload: str | None = None

    def payload_json(self) -> dict[str, Any]:
        """The timer's ``payload`` string parsed as a JSON object (empty when absent)."""
        if not self.payload:
            return {}
        try:
            value = json.loads(self.payload)
        except RecursionError:
            raise InvalidEventError("timer payload is nested too deeply") from None
        except ValueError as exc:
            raise InvalidEventError(f"timer payload is not JSON: {str(exc)[:200]}") from None
        if not isinstance(value, dict):
            raise InvalidEventError("timer payload is not a JSON object")
        return value


def _decode(raw: bytes | str | dict[str, Any], kind: str) -> dict[str, Any]:
    if isinstance(raw, dict):
        return raw
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidEventError(f"{kind} event is not JSON: {str(exc)[:200]}") from None
    except RecursionError:
        raise InvalidEventError(f"{kind} event is nested too deeply to be an event") from None
    if not isinstance(value, dict):
        raise InvalidEventError(f"{kind} event is not a JSON object")
    return value


def _validate(model: type[BaseModel], data: dict[str, Any], kind: str) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidEventError(f"malformed {kind} event at {first_problem(exc)}") from None


def parse_oss_event(raw: bytes | str | dict[str, Any]) -> OssEvent:
    event: OssEvent = _validate(OssEvent, _decode(raw, "OSS"), "OSS")
    return event


def parse_timer_event(raw: bytes | str | dict[str, Any]) -> TimerEvent:
    event: TimerEvent = _validate(TimerEvent, _decode(raw, "timer"), "timer")
    return event


# --------------------------------------------------------------------------- HTTP trigger

#: HTTP methods are short upper-case tokens; anything else is not a request FC would pass on.
_HTTP_METHOD = re.compile(r"[A-Z]{1,16}")


class _HttpRequestInfo(_EventModel):
    method: str | None = None
    path: str | None = None
    protocol: str | None = None
    source_ip: str | None = Field(default=None, alias="sourceIp")
    user_agent: str | None = Field(default=None, alias="userAgent")


class _HttpRequestContext(_EventModel):
    account_id: str | None = Field(default=None, alias="accountId")
    domain_name: str | None = Field(default=None, alias="domainName")
    request_id: str | None = Field(default=None, alias="requestId")
    time: str | None = None
    http: _HttpRequestInfo | None = None


class _HttpTriggerPayload(_EventModel):
    """FC3's HTTP trigger event for built-in runtimes, as documented (``version`` ``v1``)."""

    version: str | None = None
    raw_path: str | None = Field(default=None, alias="rawPath")
    headers: dict[str, str] | None = None
    query_parameters: dict[str, str] | None = Field(default=None, alias="queryParameters")
    body: str | None = None
    is_base64_encoded: bool = Field(default=False, alias="isBase64Encoded", strict=True)
    request_context: _HttpRequestContext | None = Field(default=None, alias="requestContext")


@dataclass(frozen=True)
class HttpEvent:
    """One HTTP request reaching a function through its HTTP trigger (FC3, built-in runtime).

    ``headers`` keys are lower-cased (HTTP header names are case-insensitive; two spellings
    of one name are comma-joined, as FC joins repeated headers). ``query`` is FC's
    ``queryParameters``: decoded values, repeated parameters comma-joined by FC. ``body``
    is the raw bytes, Base64-decoded when FC says ``isBase64Encoded``. ``path`` is the
    decoded path (``requestContext.http.path``), ``raw_path`` the URL-encoded one.
    """

    method: str
    path: str
    headers: dict[str, str]
    query: dict[str, str]
    body: bytes
    raw_path: str | None = None
    source_ip: str | None = None
    request_id: str | None = None

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


def parse_http_event(raw: bytes | str | dict[str, Any]) -> HttpEvent:
    """The HTTP trigger's event as an ``HttpEvent``; anything malformed is an ``InvalidEventError``."""
    try:
        data = _decode(raw, "HTTP")
    except RecursionError:
        raise InvalidEventError("HTTP event is nested too deeply to be JSON of an HTTP trigger") from None
    payload: _HttpTriggerPayload = _validate(_HttpTriggerPayload, data, "HTTP")
    info = (
        payload.request_context.http if payload.request_context and payload.request_context.http else _HttpRequestInfo()
    )
    method = (info.method or "").upper()
    if not _HTTP_METHOD.fullmatch(method):
        raise InvalidEventError("malformed HTTP event at requestContext.http.method: missing or not an HTTP method")
    path = info.path or payload.raw_path or "/"
    headers: dict[str, str] = {}
    for name, value in (payload.headers or {}).items():
        key = name.lower()
        headers[key] = f"{headers[key]},{value}" if key in headers else value
    body = payload.body or ""
    if payload.is_base64_encoded:
        try:
            data_bytes = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidEventError("HTTP event body is marked isBase64Encoded but is not valid Base64") from None
    else:
        try:
            data_bytes = body.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate ("\ud800") survives JSON but is no text
            raise InvalidEventError("HTTP event body is not valid Unicode text") from None
    return HttpEvent(
        method=method,
        path=path,
        headers=headers,
        query=dict(payload.query_parameters or {}),
        body=data_bytes,
        raw_path=payload.raw_path,
        source_ip=info.source_ip,
        request_id=payload.request_context.request_id if payload.request_context else None,
    )
