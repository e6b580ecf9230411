"""Typed Smart Conversation Analysis client: ``UploadAudioData`` and ``GetResult``.

SCA lives in cn-hangzhou only; its endpoint is pinned there by default whatever region
the rest of qcflow uses. Both APIs are POST with ``JsonStr`` (and ``BaseMeAgentId``) in
the query string and an empty body, as the official SDK sends them. ``Success: false``
on HTTP 200 is an error, classified on its ``Code``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx
from pydantic import ValidationError

from qcflow.acs.client import AcsClient, RateLimiter, client_from_settings
from qcflow.acs.limits import rate_limiter
from qcflow.config import Settings
from qcflow.credentials import CredentialsProvider
from qcflow.errors import RequestError, ServiceUnavailableError
from qcflow.models.base import first_problem
from qcflow.models.sca import GetResultQuery, GetResultResponse, UploadAudioDataJson, UploadAudioDataResponse

SCA_VERSION = "2019-01-15"
#: The Code SCA answers when a callUuid was uploaded in the last 2 hours. UNCONFIRMED: the
#: API pages do not name it; the sandbox answers "CallUuidRepeated".
DUPLICATE_CALL_UUID_CODES = frozenset({"CallUuidRepeated"})


class DuplicateCallUuidError(RequestError):
    """SCA refused the whole request because a ``callUuid`` in it was uploaded in the last 2 h.

    With ``prior_attempt_uncertain`` set, the duplicate is most likely this very call's
    earlier attempt, whose answer was lost: the recording is probably already submitted.
    """


def sca_succeeded(body: Mapping[str, Any]) -> bool:
    """SCA's own rule: ``Success`` true means success; false or null means failure."""
    return body.get("Success") is True


class ScaClient:
    def __init__(
        self,
        acs: AcsClient,
        *,
        base_me_agent_id: int | None = None,
        get_result_limiter: RateLimiter | None = None,
        upload_limiter: RateLimiter | None = None,
    ) -> None:
        self.acs = acs
        self.base_me_agent_id = base_me_agent_id
        self.get_result_limiter = get_result_limiter
        self.upload_limiter = upload_limiter

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        credentials: CredentialsProvider,
        *,
        http: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> ScaClient:
        acs = client_from_settings(
            settings, endpoint=settings.sca_endpoint, version=SCA_VERSION, credentials=credentials, http=http, transport=transport
        )
        return cls(
            acs,
            base_me_agent_id=settings.sca_base_me_agent_id,
            get_result_limiter=rate_limiter(settings.get_result_rate_per_second),
            upload_limiter=rate_limiter(settings.upload_rate_per_second),
        )

    def _query(self, body: UploadAudioDataJson | GetResultQuery) -> dict[str, Any]:
        return {"BaseMeAgentId": self.base_me_agent_id, "JsonStr": body.to_json_str()}

    async def upload_audio_data(self, request: UploadAudioDataJson) -> UploadAudioDataResponse:
        """Submit recordings for inspection; the answer's ``task_id`` identifies the task."""
        try:
            response = await self.acs.call(
                "UploadAudioData", self._query(request), limiter=self.upload_limiter, is_success=sca_succeeded
            )
        except RequestError as exc:
            if exc.code not in DUPLICATE_CALL_UUID_CODES:
                raise
            duplicate = DuplicateCallUuidError(exc.message, code=exc.code, request_id=exc.request_id, http_status=exc.http_status, action=exc.action)
            duplicate.prior_attempt_uncertain = exc.prior_attempt_uncertain
            raise duplicate from None
        answer = _parse(UploadAudioDataResponse, response.body, response.request_id, "UploadAudioData")
        if not answer.data:
            raise ServiceUnavailableError(
                "answered Success without a taskId", request_id=response.request_id, action="UploadAudioData"
            )
        return answer

    async def get_result(self, query: GetResultQuery) -> GetResultResponse:
        """One page of results, Tea wrappers removed."""
        response = await self.acs.call("GetResult", self._query(query), limiter=self.get_result_limiter, is_success=sca_succeeded)
        return _parse(GetResultResponse, response.body, response.request_id, "GetResult")

    async def aclose(self) -> None:
        await self.acs.aclose()


def _parse(model: Any, body: Mapping[str, Any], request_id: str | None, action: str) -> Any:
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        # A body the service marked successful but that does not parse: the service's fault.
        raise ServiceUnavailableError(
            f"unexpected answer shape: {first_problem(exc)}", request_id=request_id, action=action
        ) from None
