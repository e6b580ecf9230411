"""Smart Conversation Analysis (Qualitycheck 2019-01-15): ``UploadAudioData`` and ``GetResult``.

Requests travel as a compact JSON text in the ``JsonStr`` query parameter, camelCase keys,
nothing null. Responses arrive PascalCase with Tea list wrappers, which are removed on
parsing (see ``qcflow.models.tea``) so that results read as plain lists.

Two ways to read a ``GetResult`` page: ``ResultPage`` here (plain dicts unwrapped while the
JSON is parsed, for the harvester and push's lookups, which only pass records on and must not
pay for a model per record), and ``GetResultResponse`` in ``qcflow.models.sca_result`` (pydantic,
typed, for code that looks into results: tools and tests). The functions never import the
latter: its dozen models would cost every cold start several milliseconds to define.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import Field, create_model, field_validator

from qcflow.models import tea
from qcflow.models.base import CamelModel, PascalModel

IntOrStr = int | str
SCA_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
_SCA_TIME = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}")

#: GetResult statuses of a task.
STATUS_RUNNING = 0
STATUS_FINISHED = 1
STATUS_FAILED = 6


def format_sca_time(moment: datetime, zone: ZoneInfo) -> str:
    """``yyyy-MM-dd HH:mm:ss`` in SCA's time zone (an aware ``moment`` is converted first)."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(zone)
    return moment.strftime(SCA_TIME_FORMAT)


def parse_sca_time(text: str, zone: ZoneInfo) -> datetime:
    """The aware datetime of a ``yyyy-MM-dd HH:mm:ss`` text in SCA's time zone."""
    return datetime.strptime(text, SCA_TIME_FORMAT).replace(tzinfo=zone)


# --------------------------------------------------------------------------- UploadAudioData

_REMARKS = {f"remark{i}": (IntOrStr | None, None) for i in range(1, 26)}
_CallRemarks: type[CamelModel] = create_model("_CallRemarks", __base__=CamelModel, **_REMARKS)  # type: ignore[call-overload]


class UploadCall(_CallRemarks):  # type: ignore[misc, valid-type]
    """One recording in ``UploadAudioData``'s ``callList`` (``remark1``…``remark25`` included)."""

    voice_file_url: str = Field(min_length=1, description="public http(s) URL, valid >= 12 h")
    file_name: str | None = None
    call_id: str | None = Field(default=None, description="send the ContactId: GetResult's Recording.Id")
    call_uuid: str | None = Field(default=None, description="dedup key; SCA compares it with the last 2 h only")
    call_type: int | None = Field(default=None, description="1 outbound, 3 inbound")
    call_start_time: int | None = Field(default=None, description="milliseconds since the epoch")
    caller: str | None = None
    callee: str | None = None
    customer_service_id: IntOrStr | None = None
    customer_service_name: str | None = None
    skill_group_id: IntOrStr | None = None
    skill_group_name: str | None = None
    business: str | None = None
    json_param_str: str | None = None
    scheme_task_config_id: int | None = None


class UploadAudioDataJson(CamelModel):
    """``UploadAudioData``'s ``JsonStr``: the documented top-level fields."""

    call_list: list[UploadCall] = Field(min_length=1)
    auto_split: Literal[0, 1] | None = Field(default=None, description="1 mono (SCA splits speakers), 0 dual-track")
    sample_rate: Literal[8, 16] | None = None
    callback_url: str | None = None
    service_channel: int | None = None
    client_channel: int | None = None
    service_channel_keywords: list[str] | None = None
    recognize_role_data_set_id: int | None = None
    vocab_id: IntOrStr | None = None
    model_id: IntOrStr | None = None
    base_model_id: IntOrStr | None = None
    is_scheme_data: int | None = None
    rule_ids: list[IntOrStr] | None = None
    rule_business_names: list[str] | None = None


class UploadAudioDataResponse(PascalModel):
    """``Data`` is the new task's id."""

    success: bool | None = None
    code: str | None = None
    message: str | None = None
    request_id: str | None = None
    data: str | None = Field(default=None, max_length=128, description="taskIds are UUID-like; anything longer is junk")

    @property
    def task_id(self) -> str:
        if not self.data:
            raise ValueError("UploadAudioData answered without a taskId")
        return self.data


# --------------------------------------------------------------------------- GetResult query

_RANGE_REMARKS = (5, 13, 14)
_FILTER_REMARKS: dict[str, Any] = {}
for _i in range(1, 26):
    _FILTER_REMARKS[f"remark{_i}"] = ((int | None) if _i in _RANGE_REMARKS else (str | None), None)
    _FILTER_REMARKS[f"remark{_i}_list"] = (list[IntOrStr] | None, None)
for _i in _RANGE_REMARKS:
    _FILTER_REMARKS[f"remark{_i}_type"] = (int | None, None)
    _FILTER_REMARKS[f"end_remark{_i}"] = (int | None, None)
_RemarkFilters: type[CamelModel] = create_model("_RemarkFilters", __base__=CamelModel, **_FILTER_REMARKS)


class GetResultQuery(_RemarkFilters):  # type: ignore[misc, valid-type]
    """``GetResult``'s ``JsonStr``: every filter of the API page.

    Times are ``yyyy-MM-dd HH:mm:ss`` in SCA's zone (``format_sca_time``); ``startTime`` /
    ``endTime`` filter on the task's *upload* time. ``pageSize`` is 1..99. Past record
    10,000 only the next page may be asked for, carrying the previous page's last
    ``lastDataId``.
    """

    page_number: int | None = Field(default=None, ge=1)
    page_size: int | None = Field(default=None, ge=1, le=99)
    required_fields: str | None = None
    exclude_fields: str | None = None
    is_scheme_data: int | None = None
    task_id: str | None = None
    start_time: str | None = None
    end_time: str | None = None
    call_start_time: str | None = None
    call_end_time: str | None = None
    assignment_start_time: str | None = None
    assignment_end_time: str | None = None
    review_start_time: str | None = None
    review_end_time: str | None = None
    dataset_id: int | None = None
    source_type: int | None = None
    data_type: int | None = None
    source_data_type: int | None = None
    source_data_type_list: list[int] | None = None
    customer_name: str | None = None
    customer_id: str | None = None
    session_group_id: str | None = None
    session_group_exists: bool | None = None
    customer_service_name: str | None = None
    customer_service_id: str | None = None
    skill_group_name: str | None = None
    caller: str | None = None
    callee: str | None = None
    call_id: str | None = None
    file_name: str | None = None
    file_id: str | None = None
    rule_ids: list[IntOrStr] | None = None
    scheme_id_list: list[int] | None = None
    scheme_task_config_id: int | None = None
    resolver: str | None = None
    reviewer: str | None = None
    status: int | None = None
    hit_status: int | None = None
    review_status: int | None = None
    complain_status: int | None = None
    score_type: int | None = None
    total_score: int | None = None
    duration: int | None = None
    duration_type: int | None = None
    end_duration: int | None = None
    dialogue_size: int | None = None
    dialogue_size_type: int | None = None
    end_dialogue_size: int | None = None
    last_data_id: str | None = None
    sort_field: str | None = None
    sort_type: Literal["asc", "desc"] | None = None

    @field_validator("required_fields", "exclude_fields", mode="before")
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        if isinstance(value, (list, tuple, set, frozenset)):
            return ",".join(str(item).strip() for item in value)
        return value

    @field_validator(
        "start_time",
        "end_time",
        "call_start_time",
        "call_end_time",
        "assignment_start_time",
        "assignment_end_time",
        "review_start_time",
        "review_end_time",
    )
    @classmethod
    def _sca_time(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:
            if not _SCA_TIME.fullmatch(value):
                raise ValueError
            datetime.strptime(value, SCA_TIME_FORMAT)
        except ValueError:
            raise ValueError(f"{value!r} is not a date and time in the form yyyy-MM-dd HH:mm:ss") from None
        return value


# --------------------------------------------------------------------------- GetResult, fast


def loads_unwrapped(content: bytes | str) -> Any:
    """JSON text parsed with every known Tea wrapper removed, in the same single pass.

    ``json`` builds each object after its values (innermost first) and hands it to the hook;
    the hook unwraps the wrapped values *of that object*, because a wrapper is recognised by
    its parent's key (``"Hits": {"Hit": [...]}``), never by its own shape alone (a lone
    ``{"Cid": [...]}`` may be plain data). The result equals ``tea.unwrap(json.loads(...))``:
    a value is unwrapped only when it had the wrapper's exact shape as sent, so an object the
    hook already changed (it held a wrapper) is never taken for a wrapper itself.
    """
    changed: dict[int, dict[str, Any]] = {}  # objects that held a wrapper (kept alive: ids stay unique)

    def hook(obj: dict[str, Any]) -> dict[str, Any]:
        if _WRAPPED_FIELDS.isdisjoint(obj):
            return obj
        for key in _WRAPPED_FIELDS.intersection(obj):
            value = obj[key]
            if type(value) is dict and len(value) == 1 and id(value) not in changed:
                inner = value.get(_WRAPPERS[key])
                if type(inner) is list:
                    obj[key] = inner
                    if len(obj) == 1:  # only such an object could pass for a wrapper
                        changed[id(obj)] = obj
        return obj

    return json.loads(content, object_hook=hook)


_WRAPPERS = tea.TEA_LIST_WRAPPERS
_WRAPPED_FIELDS = frozenset(_WRAPPERS)


@dataclass(frozen=True)
class ResultPage:
    """A ``GetResult`` page as plain data: ``items`` are the ``Data.ResultInfo`` records, each a
    dict with the service's PascalCase keys and the Tea wrappers removed."""

    count: int | None
    page_number: int | None
    page_size: int | None
    request_id: str | None
    items: list[dict[str, Any]]

    @classmethod
    def from_body(cls, body: Mapping[str, Any], request_id: str | None = None) -> ResultPage:
        """The page of an (unwrapped) answer body; ``ValueError`` names what has the wrong shape."""
        data = body.get("Data")
        items = data.get("ResultInfo") if isinstance(data, dict) else data
        if items is None:
            items = []
        if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
            raise ValueError("Data.ResultInfo is not a list of objects")
        return cls(
            count=_optional_int(body, "Count"),
            page_number=_optional_int(body, "PageNumber"),
            page_size=_optional_int(body, "PageSize"),
            request_id=request_id or _optional_text(body.get("RequestId")),
            items=items,
        )


def _optional_int(body: Mapping[str, Any], key: str) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    raise ValueError(f"{key} is not a whole number: {value!r}")


def _optional_text(value: Any) -> str | None:
    return None if value is None else str(value)
