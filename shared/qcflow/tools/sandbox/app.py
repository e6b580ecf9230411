"""The sandbox as an ASGI application: one port for CCC and SCA, dispatched on the action.

Order of checks per request, as on the real gateway: signature → quota → injected faults
→ the API itself. Every answer carries a RequestId; errors have Alibaba Cloud's shape.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
import uuid
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone
from typing import Any

from qcflow.tools.sandbox.auth import IncomingRequest, Verifier, parse_params
from qcflow.tools.sandbox.callbacks import CallbackSender
from qcflow.tools.sandbox.ccc import RECORDING_PATH, CccState
from qcflow.tools.sandbox.errors import ApiFailure
from qcflow.tools.sandbox.options import SandboxOptions
from qcflow.tools.sandbox.results import ScaState

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

CCC_VERSION = "2020-07-01"
SCA_VERSION = "2019-01-15"
KMS_VERSION = "2016-01-20"
ACTIONS = {
    "GetUploadAudioDataParams": ("CCC", CCC_VERSION),
    "UploadAudioData": ("Qualitycheck", SCA_VERSION),
    "GetResult": ("Qualitycheck", SCA_VERSION),
    "GetSecretValue": ("Kms", KMS_VERSION),
}
MAX_BODY = 4 * 1024 * 1024
STATS_PATH = "/__sandbox/stats"
#: Test endpoint: POST {"taskId", "score"?, "result"?, "appeal"?, "upheld"?, "at"?} reviews a task now.
REVIEW_PATH = "/__sandbox/review"
DROP = "__drop__"

log = logging.getLogger("qcflow.tools.sandbox")


class DroppedConnection(Exception):
    """Raised after the answer has started, so the server closes the connection mid-answer."""


class QuotaTracker:
    """Sliding-window call counts per access key and API, like the per-account quotas."""

    def __init__(self) -> None:
        self._calls: dict[tuple[str, str], deque[float]] = {}

    def admit(self, key_id: str, action: str, limit: int | None, window: float, now: float) -> bool:
        if limit is None:
            return True
        calls = self._calls.setdefault((key_id, action), deque())
        horizon = now - window
        while calls and calls[0] <= horizon:
            calls.popleft()
        if len(calls) >= limit:
            return False
        calls.append(now)
        return True


class SandboxApp:
    """CCC ``GetUploadAudioDataParams`` and SCA ``UploadAudioData``/``GetResult`` on one port."""

    def __init__(self, options: SandboxOptions | None = None, clock: Callable[[], float] = time.time) -> None:
        self.options = options or SandboxOptions()
        self.clock = clock
        self.verifier = Verifier(
            self.options.access_key_id, self.options.access_key_secret, self.options.max_clock_skew_seconds
        )
        self.ccc = CccState(self.options.access_key_secret, clock, self.options.recording_url_seconds)
        #: Sends task callbacks on its own thread; ``SandboxServer`` starts and stops it.
        self.callbacks = CallbackSender(self.options, clock)
        self.sca = ScaState(
            self.options, clock, audio_check=self.ccc.audio_problem, on_callback=self.callbacks.schedule
        )
        self.quotas = QuotaTracker()
        self.stats: Counter[str] = Counter()
        self._faults = random.Random(self.options.faults.seed)
        preload = self.options.preload
        if preload.count:
            end = preload.end or datetime.fromtimestamp(clock(), timezone.utc)
            start = preload.start or end - timedelta(days=1)
            self.sca.preload(preload.count, start, end, preload.failed_rate)
            self.sca.preload_reviews(preload.reviews, end)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        body = await _read_body(receive)
        headers = [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in scope["headers"]]
        path = scope.get("path") or "/"
        query = parse_params(scope.get("query_string") or b"")
        if scope["method"] == "GET" and path == STATS_PATH:
            await _respond(send, 200, self.snapshot())
            return
        if scope["method"] == "POST" and path == REVIEW_PATH:
            status, answer = self._review(body)
            await _respond(send, status, answer)
            return
        recording = RECORDING_PATH.match(path)
        if scope["method"] in ("GET", "HEAD") and recording:
            await self._recording(send, recording.group(1), query)
            return
        content_type = next((v for k, v in headers if k == "content-type"), "")
        form = parse_params(body) if content_type.startswith("application/x-www-form-urlencoded") else {}
        request = IncomingRequest(scope["method"], path, query, headers, body, form)
        claimed = request.header("x-acs-action") or form.get("Action") or query.get("Action") or ""
        request_id = str(uuid.uuid4()).upper()
        host = request.header("host") or "sandbox"
        action, status, answer = await self._answer(request, claimed, {**query, **form}, host)
        answer["RequestId"] = request_id
        outcome = "dropped" if answer.get("_drop") else answer.get("Code", "200")
        self.stats[f"{action or '-'} {outcome}"] += 1
        faults = self.options.faults
        if faults.applies_to(action) and (faults.latency_seconds or faults.latency_jitter_seconds):
            await asyncio.sleep(faults.latency_seconds + self._faults.uniform(0, faults.latency_jitter_seconds))
        if isinstance(answer.get("_raw"), bytes):
            raw: bytes = answer["_raw"]
            payload = b'{"RequestId":"' + request_id.encode() + b'",' + raw[raw.index(b",") + 1 :]
            await _send_bytes(send, status, payload)
        else:
            await _respond(send, status, answer)

    async def _answer(
        self, request: IncomingRequest, claimed: str, params: dict[str, str], host: str
    ) -> tuple[str, int, dict[str, Any]]:
        """(the action, HTTP status, body); the action is the signed one once verified."""
        action = claimed
        product = ACTIONS.get(action, ("Unknown", ""))[0]
        try:
            now = self.clock()
            caller = self.verifier.verify(request, now)
            action = caller.action
            product = ACTIONS.get(action, ("Unknown", ""))[0]
            if action not in ACTIONS:
                raise ApiFailure(
                    404,
                    "InvalidAction.NotFound",
                    f"Specified api {action or '(none)'} is not found, please check your url and method.",
                )
            if caller.version != ACTIONS[action][1]:
                raise ApiFailure(
                    400, "InvalidVersion", f"Specified parameter Version {caller.version} is not valid for {action}."
                )
            if action in self.options.denied_actions:  # a RAM policy without the action
                raise ApiFailure(
                    403,
                    "Forbidden.RAM",
                    "User not authorized to operate on the specified resource, or this API doesn't support RAM.",
                )
            quotas = self.options.quotas
            if not self.quotas.admit(
                caller.access_key_id, action, quotas.limit_for(action), quotas.window_seconds, now
            ):
                raise _throttled(action)
            self._inject_faults(action)
            faults = self.options.faults
            try:
                answer = self._dispatch(action, params, request)
            except ApiFailure as refusal:
                if refusal.business and self._lose(faults.lost_refusal_rate, action):
                    return action, 200, {"_drop": True}  # refused, but the caller never hears of it
                raise
            if self._lose(faults.lost_answer_rate, action):
                return action, 200, {"_drop": True}  # done, but the caller never hears of it
            return action, 200, answer
        except ApiFailure as failure:
            return (action, *_failure_body(failure, product, host))

    def _lose(self, rate: float, action: str) -> bool:
        """Whether this answer of the API is lost (the connection closed after the work):
        no random draw at rate 0, so a run without the fault draws as it always did."""
        faults = self.options.faults
        return bool(rate) and faults.applies_to(action) and self._faults.random() < rate

    def _inject_faults(self, action: str) -> None:
        faults = self.options.faults
        if not faults.applies_to(action):
            return
        roll = self._faults.random
        if faults.drop_rate and roll() < faults.drop_rate:
            raise ApiFailure(200, DROP, "connection dropped before the request was processed")
        if faults.server_error_rate and roll() < faults.server_error_rate:
            raise ApiFailure(
                503, "ServiceUnavailable", "The request has failed due to a temporary failure of the server."
            )
        if faults.throttle_rate and roll() < faults.throttle_rate:
            raise _throttled(action)
        if faults.business_failure_rate and roll() < faults.business_failure_rate:
            raise ApiFailure(
                200, "InternalError", "The request processing has failed due to some unknown error.", business=True
            )

    def _dispatch(self, action: str, params: dict[str, str], request: IncomingRequest) -> dict[str, Any]:
        if action == "GetUploadAudioDataParams":
            # the sandbox serves plain http: its recording URLs point back at itself
            return self.ccc.params(
                params.get("ContactId"), params.get("InstanceId"), f"http://{request.header('host')}"
            )
        if action == "UploadAudioData":
            task_id = self.sca.upload_audio_data(params.get("JsonStr"))
            return {"Success": True, "Code": "200", "Message": "successful", "Data": task_id}
        if action == "GetSecretValue":
            return self._secret(params.get("SecretName") or "")
        return {"_raw": self.sca.get_result(params.get("JsonStr"))}

    def _secret(self, name: str) -> dict[str, Any]:
        """KMS Secrets Manager's GetSecretValue (the ACSCurrent version of a text secret)."""
        if not name:
            raise ApiFailure(400, "MissingParameter", "The input parameter SecretName that is mandatory is missing.")
        secrets = dict(self.options.secrets)
        if name not in secrets:
            raise ApiFailure(404, "Forbidden.ResourceNotFound", "The resource is not found.")
        return {
            "SecretName": name,
            "SecretData": secrets[name],
            "SecretDataType": "text",
            "VersionId": "v1",
            "VersionStages": {"VersionStage": ["ACSCurrent"]},
        }

    async def _recording(self, send: Send, contact_id: str, query: dict[str, str]) -> None:
        try:
            data = self.ccc.recording(contact_id, query.get("Expires"), query.get("Signature"))
        except ApiFailure as failure:
            body = (
                f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{failure.code}</Code>'
                f"<Message>{failure.message}</Message></Error>"
            )
            await _send_bytes(send, failure.status, body.encode(), b"application/xml")
            return
        await _send_bytes(send, 200, data, b"video/x-matroska")

    def _review(self, body: bytes) -> tuple[int, dict[str, Any]]:
        """``POST /__sandbox/review``: a person reviews (``appeal``: an agent appeals, then a
        person settles it) every finished result of ``taskId``; answers the task's review fields."""
        try:
            data = json.loads(body or b"{}")
            task_id = str(data["taskId"])
            states = self.sca.review(
                task_id,
                at=float(data["at"]) if data.get("at") is not None else None,
                score=int(data["score"]) if data.get("score") is not None else None,
                result=int(data["result"]) if data.get("result") is not None else None,
                appeal=bool(data.get("appeal")),
                upheld=bool(data["upheld"]) if data.get("upheld") is not None else None,
                resolver=data.get("resolver"),
                comments=data.get("comments"),
            )
        except KeyError as exc:
            return 404, {"Code": "TaskNotFinished", "Message": f"no finished task {exc}"}
        except (ValueError, TypeError, AttributeError) as exc:
            return 400, {"Code": "InvalidParameter", "Message": f"review body: {type(exc).__name__}: {exc}"}
        return 200, {
            "TaskId": task_id,
            "Reviews": [
                {"ReviewStatus": s.status, "Score": s.score, "ReviewTimeMs": s.time_ms, "History": len(s.history)}
                for s in states
            ],
        }

    def snapshot(self) -> dict[str, Any]:
        """Counts for operators and benchmarks: answers by action and code, tasks held, callbacks,
        reviews saved and appeals filed."""
        return {
            "answers": dict(self.stats),
            "tasks": self.sca.task_count(),
            "callbacks": self.callbacks.snapshot(),
            "reviews": {"saved": self.sca.reviews.saved, "appeals": self.sca.reviews.appeals},
        }


def _failure_body(failure: ApiFailure, product: str, host: str) -> tuple[int, dict[str, Any]]:
    if failure.code == DROP:
        return 200, {"_drop": True}
    if failure.business:
        if product == "CCC":
            return 200, {"Code": failure.code, "HttpStatusCode": 500, "Message": failure.message}
        return 200, {"Success": False, "Code": failure.code, "Message": failure.message}
    body: dict[str, Any] = {
        "HostId": host,
        "Code": failure.code,
        "Message": failure.message,
        "Recommend": f"https://api.aliyun.com/troubleshoot?q={failure.code}&product={product}",
    }
    if product == "CCC":
        body["HttpStatusCode"] = failure.status
    return failure.status, body


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    size = 0
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size <= MAX_BODY:
            chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


async def _respond(send: Send, status: int, body: dict[str, Any]) -> None:
    if body.get("_drop"):
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json;charset=utf-8"), (b"content-length", b"4096")],
            }
        )
        await send({"type": "http.response.body", "body": b'{"RequestId":', "more_body": True})
        raise DroppedConnection("sandbox fault: connection dropped mid-answer")
    await _send_bytes(send, status, json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))


async def _send_bytes(
    send: Send, status: int, payload: bytes, content_type: bytes = b"application/json;charset=utf-8"
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", content_type), (b"content-length", str(len(payload)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": payload})


def _throttled(action: str) -> ApiFailure:
    """A refusal for throttling as the product words it: KMS answers HTTP 429 ``Rejected.Throttling``
    ("QPS Limit Exceeded"), the other APIs HTTP 400 ``Throttling.User``."""
    if action == "GetSecretValue":
        return ApiFailure(429, "Rejected.Throttling", "QPS Limit Exceeded")
    return ApiFailure(400, "Throttling.User", "Request was denied due to user flow control.")
