"""Cloud Contact Center ``GetUploadAudioDataParams``: the envelope and its double-encoded ``ParamsStr``.

``Data.ParamsStr`` is a JSON *string* holding the parameters CCC would itself push to SCA.
Its inner keys mix camelCase and snake_case (``validTimes[].begin_time``); fields not known
here are kept, never rejected.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import Field, PrivateAttr, model_validator

from qcflow.models.base import CamelModel, PascalModel, WireModel

IntOrStr = int | str


class ValidTime(WireModel):
    """A stretch of speech in the recording (milliseconds) and who spoke."""

    begin_time: int | None = None
    end_time: int | None = None
    speaker_id: str | None = None


class Channel(WireModel):
    speaker_id: str | None = None
    channel_key: str | None = None


class CccCall(CamelModel):
    """One call in ``ParamsStr.callList`` — the recording and what CCC knows of the call."""

    call_id: str | None = None
    valid_times: list[ValidTime] | None = None
    resolve_type: str | None = None
    instance: str | None = None
    callee: str | None = None
    acc_uid: IntOrStr | None = None
    call_start_time: int | None = Field(default=None, description="milliseconds since the epoch")
    customer_service_name: str | None = None
    tid: str | None = None
    call_type: int | None = Field(default=None, description="1 outbound, 3 inbound")
    skill_group_uuid: str | None = Field(default=None, alias="skillGroupUUID")
    caller: str | None = None
    customer_service_phone: str | None = None
    channels: list[Channel] | None = None
    source_type: int | None = None
    channel_key: str | None = None
    skill_group_name: str | None = None
    voice_file_url: str | None = Field(default=None, description="pre-signed URL of the .mkv in CCC's bucket")
    skill_group_id: IntOrStr | None = None
    customer_service_id: IntOrStr | None = None


class UploadAudioDataParams(CamelModel):
    """The parsed ``ParamsStr``."""

    auto_split: int | None = None
    app_key: IntOrStr | None = None
    sample_rate: int | None = None
    call_list: list[CccCall] = Field(default_factory=list)


class CccParamsData(PascalModel):
    params_str: str


class GetUploadAudioDataParamsResponse(PascalModel):
    """The CCC answer. ``params`` is ``Data.ParamsStr`` parsed and validated."""

    code: str | None = None
    http_status_code: int | None = None
    message: str | None = None
    request_id: str | None = None
    data: CccParamsData

    _params: UploadAudioDataParams = PrivateAttr()

    @model_validator(mode="after")
    def _parse_params_str(self) -> GetUploadAudioDataParamsResponse:
        try:
            decoded: Any = json.loads(self.data.params_str)
        except RecursionError:
            raise ValueError("Data.ParamsStr is nested too deeply to be CCC's parameters") from None
        except ValueError as exc:
            raise ValueError(f"Data.ParamsStr is not valid JSON: {exc}") from exc
        if not isinstance(decoded, dict):
            raise ValueError("Data.ParamsStr is not a JSON object")
        self._params = UploadAudioDataParams.model_validate(decoded)
        return self

    @property
    def params(self) -> UploadAudioDataParams:
        return self._params
