"""Function Compute trigger events: OSS (object created) and timer.

FC hands the event to a Python handler as bytes of JSON. A malformed event is a permanent
error (retrying the same bytes cannot help); the message says what is wrong with it.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from qcflow.errors import PermanentError
from qcflow.models.base import first_problem


class InvalidEventError(PermanentError):
    """The trigger event is not of the expected shape."""


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
        except ValueError as exc:
            raise InvalidEventError(f"timer payload is not JSON: {exc}") from exc
        if not isinstance(value, dict):
            raise InvalidEventError("timer payload is not a JSON object")
        return value


def _decode(raw: bytes | str | dict[str, Any], kind: str) -> dict[str, Any]:
    if isinstance(raw, dict):
        return raw
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidEventError(f"{kind} event is not JSON: {exc}") from exc
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
