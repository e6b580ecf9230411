"""Typed Smart Conversation Analysis client: ``UploadAudioData`` and ``GetResult``.

SCA lives in cn-hangzhou only; its endpoint is pinned there by default whatever region
the rest of qcflow uses. Both APIs are POST with ``JsonStr`` (and ``BaseMeAgentId``) in
the query string and an empty body, as the official SDK sends them. ``Success: false``
on HTTP 200 is an error, classified on its ``Code``.

``UploadAudioData`` is not idempotent: each request that lands creates a task. A retry
after a lost answer is made safe by ``callUuid`` (SCA refuses a callUuid it saw in the last
2 hours), so this client refuses to send a recording without one, recognises the refusal
(``DuplicateCallUuidError``) and says, on success as on failure, whether an earlier attempt
may have landed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
from pydantic import ValidationError

from qcflow.acs.client import AcsClient, RateLimiter, client_from_settings
from qcflow.acs.limits import rate_limiter
from qcflow.config import Settings
from qcflow.credentials import CredentialsProvider
from qcflow.errors import DuplicateCallUuidError, QcflowError, RequestError, ServiceUnavailableError, TransportError
from qcflow.models.base import first_problem
from qcflow.models.sca import (
    GetResultQuery,
    ResultPage,
    UploadAudioDataJson,
    UploadAudioDataResponse,
    loads_unwrapped,
)

if TYPE_CHECKING:
    from qcflow.models.sca_result import GetResultResponse

__all__ = [
    "DUPLICATE_CALL_UUID_CODES",
    "DuplicateCallUuidError",
    "ResultPage",
    "SCA_VERSION",
    "ScaClient",
    "UploadReceipt",
    "is_duplicate_call_uuid",
    "sca_succeeded",
]

SCA_VERSION = "2019-01-15"
#: The Code SCA answers when a callUuid was uploaded in the last 2 hours. UNCONFIRMED: the
#: API pages do not name it; the sandbox answers "CallUuidRepeated". Configurable
#: (``QCFLOW_SCA_DUPLICATE_CALL_UUID_CODES``), and the refusal is also known by its message.
DUPLICATE_CALL_UUID_CODES = frozenset({"CallUuidRepeated"})
#: A refusal whose message speaks of a repeated callUuid, whatever its Code: "callUuid
#: repeated", "duplicate call_uuid", "call uuid already exists", "callUuid重复"…
#: Both words must stand in the same clause (no sentence or list punctuation between them),
#: so that "callUuid is required; file already uploaded" is not taken for a repeat.
_CALL_UUID = r"call[\s_-]?uuid"
_REPEATED = r"(?:repeat|duplicat|already|(?<!not )(?<!n't )exist|重复|已存在|已经存在)"
_SAME_CLAUSE = r"[^.;,:!?\n。；，：！？]{0,40}?"
DUPLICATE_MESSAGE = re.compile(
    rf"{_CALL_UUID}{_SAME_CLAUSE}{_REPEATED}|{_REPEATED}{_SAME_CLAUSE}{_CALL_UUID}", re.IGNORECASE
)


@dataclass(frozen=True)
class UploadReceipt:
    """What a successful ``UploadAudioData`` call returns.

    ``prior_attempt_uncertain``: an earlier attempt of this call may have landed without its
    answer reaching us (then callUuid should have refused this one; if not, a second task
    may exist and is worth looking for).
    """

    task_id: str
    request_id: str | None
    attempts: int
    prior_attempt_uncertain: bool


def sca_succeeded(body: Mapping[str, Any]) -> bool:
    """SCA's own rule: ``Success`` true means success; false or null means failure."""
    return body.get("Success") is True


def is_duplicate_call_uuid(exc: QcflowError, codes: str | Iterable[str] = DUPLICATE_CALL_UUID_CODES) -> bool:
    """Is ``exc`` SCA's refusal of a repeated callUuid? By one of ``codes``, or by the message
    of an error the service answered in its own format (one with a ``Code``)."""
    if isinstance(exc, TransportError):
        return False
    if exc.code is not None and exc.code in _code_set(codes):
        return True
    return (
        exc.code is not None and not exc.code.startswith("Throttling") and bool(DUPLICATE_MESSAGE.search(exc.message))
    )


def _code_set(codes: str | Iterable[str] | None) -> frozenset[str]:
    if codes is None:
        return DUPLICATE_CALL_UUID_CODES
    if isinstance(codes, str):
        codes = codes.split(",")
    return frozenset(code.strip() for code in codes if code.strip())


class ScaClient:
    def __init__(
        self,
        acs: AcsClient,
        *,
        base_me_agent_id: int | None = None,
        get_result_limiter: RateLimiter | None = None,
        upload_limiter: RateLimiter | None = None,
        duplicate_call_uuid_codes: str | Iterable[str] | None = None,
    ) -> None:
        """``duplicate_call_uuid_codes``: the Code(s) of a repeated callUuid, a comma list or
        an iterable (``None``: ``DUPLICATE_CALL_UUID_CODES``)."""
        self.acs = acs
        self.base_me_agent_id = base_me_agent_id
        self.get_result_limiter = get_result_limiter
        self.upload_limiter = upload_limiter
        self.duplicate_call_uuid_codes = _code_set(duplicate_call_uuid_codes)

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
            settings.http,
            endpoint=settings.sca.endpoint,
            version=SCA_VERSION,
            credentials=credentials,
            http=http,
            transport=transport,
            setting="QCFLOW_SCA_ENDPOINT",
        )
        return cls(
            acs,
            base_me_agent_id=settings.sca.base_me_agent_id,
            get_result_limiter=rate_limiter(settings.quotas.get_result_rate_per_second),
            upload_limiter=rate_limiter(settings.quotas.upload_rate_per_second),
            duplicate_call_uuid_codes=settings.sca.duplicate_call_uuid_codes,
        )

    def _query(self, body: UploadAudioDataJson | GetResultQuery) -> dict[str, Any]:
        return {"BaseMeAgentId": self.base_me_agent_id, "JsonStr": body.to_json_str()}

    async def upload_audio_data(self, request: UploadAudioDataJson, *, deadline: float | None = None) -> UploadReceipt:
        """Submit recordings for inspection; the receipt's ``task_id`` identifies the task.

        Every recording must carry a ``callUuid``: without one a retry after a lost answer
        would create a second task, so such a request is refused before anything is sent
        (``RequestError``, code ``MissingCallUuid``). A refusal for a repeated callUuid is
        raised as ``DuplicateCallUuidError``.
        """
        missing = [index for index, call in enumerate(request.call_list) if not (call.call_uuid or "").strip()]
        if missing:
            raise RequestError(
                f"every recording needs a callUuid so that a retry cannot create a second task (callList {missing})",
                code="MissingCallUuid",
                action="UploadAudioData",
            )
        try:
            response = await self.acs.call(
                "UploadAudioData",
                self._query(request),
                limiter=self.upload_limiter,
                is_success=sca_succeeded,
                deadline=deadline,
            )
        except QcflowError as exc:
            if not is_duplicate_call_uuid(exc, self.duplicate_call_uuid_codes):
                raise
            raise DuplicateCallUuidError.from_error(exc) from None
        try:
            answer = _parse(UploadAudioDataResponse, response.body, response.request_id, "UploadAudioData")
            if not answer.data:
                raise ServiceUnavailableError(
                    "answered Success without a taskId", request_id=response.request_id, action="UploadAudioData"
                )
        except QcflowError as exc:
            # the service said Success: the upload has most likely landed, we just cannot name it
            exc.prior_attempt_uncertain = True
            exc.attempts = response.attempts
            exc.http_status = response.http_status
            raise
        return UploadReceipt(answer.data, response.request_id, response.attempts, response.prior_attempt_uncertain)

    async def get_result(
        self, query: GetResultQuery, *, deadline: float | None = None, limiter: RateLimiter | None = None
    ) -> GetResultResponse:
        """One page of results as pydantic models, Tea wrappers removed (for tools and tests: the
        functions use ``get_result_page``, whose plain dicts cost no model per record).

        ``limiter`` overrides the client's own GetResult limiter for this call.
        """
        from qcflow.models.sca_result import GetResultResponse  # its models are not worth a cold start

        response = await self.acs.call(
            "GetResult",
            self._query(query),
            limiter=limiter or self.get_result_limiter,
            is_success=sca_succeeded,
            deadline=deadline,
        )
        return _parse(GetResultResponse, response.body, response.request_id, "GetResult")

    async def get_result_page(
        self, query: GetResultQuery, *, deadline: float | None = None, limiter: RateLimiter | None = None
    ) -> ResultPage:
        """One page of results as plain dicts, unwrapped while the answer is parsed.

        For the harvester: no model is built per record (see ``ResultPage``).
        """
        response = await self.acs.call(
            "GetResult",
            self._query(query),
            limiter=limiter or self.get_result_limiter,
            is_success=sca_succeeded,
            deadline=deadline,
            parse=loads_unwrapped,
        )
        try:
            return ResultPage.from_body(response.body, response.request_id)
        except ValueError as exc:
            raise ServiceUnavailableError(
                f"unexpected answer shape: {exc}",
                request_id=response.request_id,
                http_status=response.http_status,
                action="GetResult",
            ) from None

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
