"""Typed Cloud Contact Center client: ``GetUploadAudioDataParams``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx
from pydantic import ValidationError

from qcflow.acs.client import AcsClient, RateLimiter, client_from_settings
from qcflow.acs.limits import rate_limiter
from qcflow.config import Settings
from qcflow.credentials import CredentialsProvider
from qcflow.errors import RequestError
from qcflow.models.base import first_problem
from qcflow.models.ccc import GetUploadAudioDataParamsResponse

CCC_VERSION = "2020-07-01"


def ccc_succeeded(body: Mapping[str, Any]) -> bool:
    """CCC says ``Code: "OK"`` on success (and ``HttpStatusCode: 200``)."""
    code = body.get("Code")
    if code is not None:
        return str(code).upper() == "OK"
    return body.get("HttpStatusCode") == 200


class CccClient:
    def __init__(self, acs: AcsClient, *, instance_id: str | None = None, limiter: RateLimiter | None = None) -> None:
        self.acs = acs
        self.instance_id = instance_id
        self.limiter = limiter

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        credentials: CredentialsProvider,
        *,
        http: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> CccClient:
        acs = client_from_settings(
            settings.http,
            endpoint=settings.ccc.endpoint,
            version=CCC_VERSION,
            credentials=credentials,
            http=http,
            transport=transport,
            setting="QCFLOW_CCC_ENDPOINT",
        )
        return cls(acs, instance_id=settings.ccc.instance_id, limiter=rate_limiter(settings.quotas.ccc_rate_per_second))

    async def get_upload_audio_data_params(
        self, contact_id: str, *, deadline: float | None = None
    ) -> GetUploadAudioDataParamsResponse:
        """The parameters CCC would push to SCA for this call, ``ParamsStr`` parsed.

        ``deadline``: an absolute ``time.monotonic()`` bound of the whole call, retries included
        (``None``: the client's ``RetryPolicy.deadline_seconds`` from now).
        """
        query = {"ContactId": contact_id, "InstanceId": self.instance_id}
        response = await self.acs.call(
            "GetUploadAudioDataParams",
            query,
            method="GET",
            limiter=self.limiter,
            is_success=ccc_succeeded,
            deadline=deadline,
        )
        try:
            return GetUploadAudioDataParamsResponse.model_validate(response.body)
        except ValidationError as exc:
            raise RequestError(
                f"invalid answer for ContactId {contact_id!r}: {first_problem(exc)}",
                code="InvalidParamsStr",
                request_id=response.request_id,
                http_status=response.http_status,
                action="GetUploadAudioDataParams",
            ) from None

    async def aclose(self) -> None:
        await self.acs.aclose()
