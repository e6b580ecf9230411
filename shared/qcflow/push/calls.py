"""The ``UploadAudioData`` request, built from CCC's answer and the settings: pure, no I/O.

One recording becomes one ``callList`` item (``UploadCall``) with the request-level fields it
needs (``autoSplit``, ``sampleRate``); recordings that agree on those are sent together, in
batches. The ``voiceFileUrl`` must stay fetchable for ``QCFLOW_AUDIO_URL_MIN_SECONDS``: SCA
fetches it later, and a URL that dies first makes a task that fails.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any, Literal, NamedTuple, Protocol, TypeVar
from urllib.parse import parse_qsl, urlsplit

from qcflow.config import PushSettings, env_name
from qcflow.errors import PermanentError
from qcflow.models.ccc import CccCall, UploadAudioDataParams
from qcflow.models.sca import UploadAudioDataJson, UploadCall
from qcflow.push.recordings import Recording

log = logging.getLogger("qcflow.push")

_AUDIO_URL_CONFIG = env_name("audio_url_strategy")
_DIGITS = re.compile(r"[0-9]{1,12}")  # str.isdigit() also accepts "²", which float() and int() refuse


class CallItem(NamedTuple):  # (not a dataclass: defining one costs the cold start ~0.5-1 ms)
    """One recording's ``callList`` item, with the request-level fields it needs (a batch shares them)."""

    call: UploadCall
    auto_split: Literal[0, 1]
    sample_rate: Literal[8, 16] | None


class _Carries(Protocol):
    @property
    def item(self) -> CallItem: ...


_C = TypeVar("_C", bound=_Carries)


def call_for(params: UploadAudioDataParams, contact_id: str | None) -> CccCall | None:
    """CCC's entry for ``contact_id`` in its ``callList`` (else its first entry, if any)."""
    for call in params.call_list:
        if call.call_id == contact_id:
            return call
    return params.call_list[0] if params.call_list else None


def call_item(
    settings: PushSettings,
    recording: Recording,
    source: CccCall,
    params: UploadAudioDataParams,
    *,
    url: str,
    remarks: dict[str, Any],
) -> CallItem:
    """The item for ``recording``: CCC's call details, our identity fields (``fileName``, ``callId``,
    the deterministic ``callUuid``), the ``voiceFileUrl`` chosen and the configured extras."""
    call = UploadCall(
        voice_file_url=url,
        file_name=recording.file_name,
        call_id=recording.contact_id,
        call_uuid=recording.call_uuid,
        call_type=source.call_type,
        call_start_time=source.call_start_time,
        caller=source.caller,
        callee=source.callee,
        customer_service_id=source.customer_service_id,
        customer_service_name=source.customer_service_name,
        skill_group_id=source.skill_group_id,
        skill_group_name=source.skill_group_name,
        business=settings.business,
        scheme_task_config_id=settings.scheme_task_config_id,
        **remarks,
    )
    auto_split: Literal[0, 1] = 0 if params.auto_split == 0 else 1
    sample_rate: Literal[8, 16] | None = 8 if params.sample_rate == 8 else 16 if params.sample_rate == 16 else None
    return CallItem(call, auto_split, sample_rate)


def upload_request(
    items: Sequence[CallItem], *, callback_url: str | None, rule_ids: list[int | str] | None
) -> UploadAudioDataJson:
    """One ``UploadAudioData`` request for a batch (its items agree on the request-level fields)."""
    first = items[0]
    return UploadAudioDataJson(
        call_list=[i.call for i in items],
        auto_split=first.auto_split,
        sample_rate=first.sample_rate,
        callback_url=callback_url,
        rule_ids=rule_ids,
        service_channel=0 if first.auto_split == 0 else None,
        client_channel=1 if first.auto_split == 0 else None,
    )


def batches(ready: Sequence[_C], size: int) -> list[list[_C]]:
    """Recordings that share the request's top-level fields, in batches of ``size``."""
    groups: dict[tuple[Any, ...], list[_C]] = {}
    for one in ready:
        groups.setdefault((one.item.auto_split, one.item.sample_rate), []).append(one)
    return [group[i : i + size] for group in groups.values() for i in range(0, len(group), size)]


def url_expires_at(url: str, now: float) -> float | None:
    """When a pre-signed URL stops working (epoch seconds), or None if it does not say.

    OSS V1 (``Expires=<epoch>``), OSS V4 (``x-oss-date`` + ``x-oss-expires``) and S3-style
    (``X-Amz-Date`` + ``X-Amz-Expires``) are understood.
    """
    params = {k.lower(): v for k, v in parse_qsl(urlsplit(url).query, keep_blank_values=True)}
    if _DIGITS.fullmatch(params.get("expires", "")):
        return float(params["expires"])
    for date_key, expires_key in (("x-oss-date", "x-oss-expires"), ("x-amz-date", "x-amz-expires")):
        if _DIGITS.fullmatch(params.get(expires_key, "")) and params.get(date_key):
            try:
                signed = datetime.strptime(params[date_key], "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
            except ValueError:
                return None
            return signed.timestamp() + int(params[expires_key])
    return None


def check_url_lifetime(url: str, *, minimum: float, now: float) -> None:
    """Refuse (``PermanentError``) a URL that dies within ``minimum`` seconds; a URL that does not
    say when it expires is sent as is, with a warning."""
    if minimum <= 0:
        return
    expires = url_expires_at(url, now)
    if expires is None:
        log.warning(
            "voiceFileUrl does not say when it expires; sending it as is",
            extra={"event": "push_url_lifetime_unknown"},
        )
        return
    left = expires - now
    if left < minimum:
        raise PermanentError(
            f"voiceFileUrl expires in {left / 3600:.1f} h, "
            f"less than the {minimum / 3600:.1f} h SCA needs to fetch it "
            f"(QCFLOW_AUDIO_URL_MIN_SECONDS); with {_AUDIO_URL_CONFIG}=signed, sign with a long-lived key "
            "(QCFLOW_AUDIO_URL_ACCESS_KEY_ID): an STS-signed URL dies with its token",
            code="VoiceFileUrlTooShortLived",
        )
