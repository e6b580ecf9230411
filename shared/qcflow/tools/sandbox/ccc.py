"""CCC's side of the sandbox: ``GetUploadAudioDataParams`` for ContactIds ``job-<digits>``.

Answers are deterministic (same ContactId, same parameters) and shaped like the seed page,
with a ``voiceFileUrl`` that points back at the sandbox (``/recordings/<id>.mkv``) and
carries an ``Expires``, so a pipeline run offline still holds a fetchable, expiring URL.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from qcflow.tools.sandbox.auth import same_text
from qcflow.tools.sandbox.errors import ApiFailure

CONTACT_ID = re.compile(r"^job-\d{1,30}$")
RECORDING_PATH = re.compile(r"^/recordings/(job-\d{1,30})\.mkv$")
URL_LIFETIME_SECONDS = 24 * 3600
_NAMES = ["张伟", "王芳", "李强", "陈静", "刘洋"]
_SKILL_GROUPS = ["金融客服", "售后服务", "会员服务"]


class CccState:
    def __init__(
        self, secret: str, clock: Callable[[], float] = time.time, url_lifetime_seconds: int = URL_LIFETIME_SECONDS
    ) -> None:
        self.url_lifetime_seconds = url_lifetime_seconds
        self._key = hashlib.sha256(("recordings:" + secret).encode()).digest()
        self.clock = clock

    def url_signature(self, contact_id: str, expires: int) -> str:
        return hmac.new(self._key, f"{contact_id}:{expires}".encode(), hashlib.sha256).hexdigest()[:32]

    def params(self, contact_id: str | None, instance_id: str | None, base_url: str) -> dict[str, Any]:
        """The full CCC answer body for ``contact_id``, or an ``ApiFailure`` like CCC's."""
        if not contact_id:
            raise ApiFailure(400, "MissingParameter.ContactId", "ContactId is mandatory for this action.")
        if not CONTACT_ID.match(contact_id):
            raise ApiFailure(404, "NotExists.ContactId", f"The specified contact {contact_id} does not exist.")
        digits = int(contact_id[4:] or 0)
        instance = instance_id or "ccc-sandbox"
        call_start_ms = 1_704_870_035_381 + (digits % 10_000_000) * 1000
        name = _NAMES[digits % len(_NAMES)]
        caller = f"138{digits % 100_000_000:08d}"
        callee = "4008001234"
        channel_key = f"ch-user-{caller}-{callee}-{call_start_ms - 5064}-{contact_id}"
        expires = int(self.clock()) + self.url_lifetime_seconds
        signature = self.url_signature(contact_id, expires)
        url = f"{base_url}/recordings/{contact_id}.mkv?Expires={expires}&OSSAccessKeyId=sandbox&Signature={signature}"
        params = {
            "autoSplit": 1,
            "appKey": "sandboxAppKey01",
            "sampleRate": 8,
            "callList": [
                {
                    "callId": contact_id,
                    "validTimes": [{"begin_time": 0, "end_time": 30_720 + digits % 60_000, "speaker_id": name}],
                    "resolveType": "ali-ACC",
                    "instance": instance,
                    "callee": callee,
                    "accUid": 1051234567,
                    "callStartTime": call_start_ms,
                    "customerServiceName": name,
                    "tid": hashlib.md5(contact_id.encode()).hexdigest(),
                    "callType": 1 if digits % 2 else 3,
                    "skillGroupUUID": f"skg-default@{instance}",
                    "caller": caller,
                    "customerServicePhone": "80001254",
                    "channels": [{"speaker_id": name, "channel_key": channel_key}],
                    "sourceType": 1,
                    "channelKey": channel_key,
                    "skillGroupName": _SKILL_GROUPS[digits % len(_SKILL_GROUPS)],
                    "voiceFileUrl": url,
                    "skillGroupId": digits % 7,
                    "customerServiceId": 2032428020000 + digits % 10_000,
                }
            ],
        }
        return {
            "Code": "OK",
            "HttpStatusCode": 200,
            "Message": "无",
            "Data": {"ParamsStr": json.dumps(params, ensure_ascii=False, indent=1)},
        }

    def audio_problem(self, url: str) -> str | None:
        """Why the sandbox's own recording URL would not download now (None: it would, or not ours)."""
        parts = urlsplit(url)
        match = RECORDING_PATH.match(parts.path)
        if not match:
            return None
        query = dict(parse_qsl(parts.query))
        try:
            self.recording(match.group(1), query.get("Expires"), query.get("Signature"))
        except ApiFailure as failure:
            return f"{failure.code}: {failure.message}"
        return None

    def recording(self, contact_id: str, expires: str | None, signature: str | None) -> bytes:
        """The bytes behind a ``voiceFileUrl``: refused once expired or if tampered with."""
        try:
            expires_at = int(expires or "")
        except ValueError:
            raise ApiFailure(403, "AccessDenied", "Expires is missing or invalid.") from None
        if not signature or not same_text(self.url_signature(contact_id, expires_at), signature):
            raise ApiFailure(403, "SignatureDoesNotMatch", "The request signature we calculated does not match.")
        if expires_at < self.clock():
            raise ApiFailure(403, "AccessDenied", "Request has expired.")
        # A tiny Matroska/EBML header followed by silence: enough to be a file, not audio.
        return b"\x1a\x45\xdf\xa3" + contact_id.encode() + b"\x00" * 1024
