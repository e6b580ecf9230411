"""Settings, read from ``QCFLOW_*`` environment variables and validated at start, grouped by slice.

A wrong or missing value fails with a ``ConfigError`` naming the variable, so a function
fails on its first invocation with a message an operator can act on.

**Slices.** ``Settings`` holds one small model per part of qcflow (``store``, ``http``,
``quotas``, ``ccc``, ``sca``, ``push``, ``harvest``, ``callback``, ``pii``) and each component is given
its slice, not the whole (as Powertools gives each utility its own small config). The
environment names stay flat and stable: every field carries its variable's name as its
alias (``harvest.settle_seconds`` ← ``QCFLOW_HARVEST_SETTLE_SECONDS``), and
``load_settings(**overrides)`` takes the same flat names. Values that need parsing (comma
lists, JSON remarks) are parsed by validators here, once, into the types components use.
``docs/configuration.md`` is generated from these models (``scripts/config_doc.py``; a test
keeps the two equal).

Why a plain pydantic model and not ``pydantic-settings``: every setting here is a scalar read
from one source (the environment FC fills from ``s.yaml``), which ``load_settings`` does in
a few lines, while importing ``pydantic-settings`` costs ~16 ms of every cold start (and
python-dotenv in the layer). Validation, coercion and the error messages are pydantic's.

Why ~800 lines: every setting with its description and validation lives here, once (the
docs are generated from it); each slice (push, harvest, callback, secrets, pii, ...) is a short
model of its own, and splitting them across modules would split the one generated page.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from qcflow.errors import ConfigError

ENV_PREFIX = "QCFLOW_"
#: Variables that were settings once, and what replaced them: a deployment still setting one is told.
REMOVED = {
    "get_result_rate_per_second": "QCFLOW_GET_RESULT_QUOTA (with its window and headroom), from which every "
    "GetResult limiter now derives its rate",
}
#: Seconds a push claim outlives its claimant's deadline (clock skew between instances): the
#: claimant stops working this long before its claim expires, so a claim's lifetime must be
#: longer than twice this (the work needs time too).
CLAIM_MARGIN_SECONDS = 30.0
#: The remark slots UploadAudioData has (``remark1`` … ``remark25``).
REMARK_KEYS = frozenset(f"remark{i}" for i in range(1, 26))


def _comma_list(value: object) -> object:
    """``"a, b,,c"`` → ``("a", "b", "c")``; lists pass through (pydantic checks their items)."""
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


class _Slice(BaseModel):
    """A slice of the settings: immutable; fields are filled by their variable's name (the alias)
    or, in code and tests, by their own name."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_by_name=True, validate_by_alias=True)


class StoreSettings(_Slice):
    """Where state and results live, and how the OSS adapter reaches it."""

    url: str = Field(
        default="file:./qcflow-data",
        alias="store",
        description="Store URL: oss://bucket/prefix in the cloud, file:///path (or file:relative) locally.",
    )
    region: str = Field(default="cn-shanghai", alias="region", description="Region of the OSS bucket.")
    oss_endpoint: str | None = Field(
        default=None, alias="oss_endpoint", description="OSS endpoint (host or URL); default derived from the region."
    )
    oss_internal: bool = Field(
        default=False,
        alias="oss_internal",
        description="Use the region's internal OSS endpoint (inside Alibaba Cloud).",
    )
    allow_unverified_versioning: bool = Field(
        default=False,
        alias="store_allow_unverified_versioning",
        description="Go on when the bucket's versioning cannot be read (403). Only for a bucket where versioning "
        "was never enabled: on a versioned bucket create-if-absent protects nothing.",
    )

    @field_validator("url")
    @classmethod
    def _store_scheme(cls, value: str) -> str:
        if not (value.startswith("oss://") or value.startswith("file:")):
            hint = f" (a folder? file:{value})" if "://" not in value else ""
            raise ValueError(f"must start with oss:// or file:{hint}")
        return value


class HttpSettings(_Slice):
    """How every API call (CCC, SCA) and store request is tried: timeouts, attempts, backoff, deadline."""

    timeout_seconds: float = Field(
        default=10.0, gt=0, le=300, alias="http_timeout_seconds", description="Read timeout per request."
    )
    connect_timeout_seconds: float = Field(
        default=5.0, gt=0, le=60, alias="http_connect_timeout_seconds", description="Connect timeout per request."
    )
    max_attempts: int = Field(
        default=5, ge=1, le=20, alias="max_attempts", description="Attempts per API call, the first included."
    )
    backoff_initial_seconds: float = Field(
        default=0.2,
        gt=0,
        le=60,
        alias="backoff_initial_seconds",
        description="First backoff (exponential, full jitter).",
    )
    backoff_max_seconds: float = Field(
        default=10.0, gt=0, le=600, alias="backoff_max_seconds", description="Longest single backoff."
    )
    call_deadline_seconds: float = Field(
        default=60.0,
        gt=0,
        le=3600,
        alias="call_deadline_seconds",
        description="Overall bound of one API call, retries and sleeps included, "
        "when the caller (an FC invocation) sets none.",
    )
    throttle_backoff_initial_seconds: float = Field(
        default=1.0,
        gt=0,
        le=60,
        alias="throttle_backoff_initial_seconds",
        description="First backoff after Throttling.",
    )
    throttle_backoff_max_seconds: float = Field(
        default=20.0,
        gt=0,
        le=600,
        alias="throttle_backoff_max_seconds",
        description="Longest single backoff after Throttling (retried until the call's deadline).",
    )


class QuotaSettings(_Slice):
    """The services' quotas, and how close to them qcflow runs.

    GetResult's quota is per account and shared by everything that calls it (the harvest's adaptive
    limiter, push's lookups, callbacks): it is modelled once, as quota, window and headroom."""

    get_result_quota: int = Field(
        default=1000,
        ge=1,
        alias="get_result_quota",
        description="GetResult calls allowed per quota window (per account).",
    )
    get_result_window_seconds: float = Field(
        default=60.0, gt=0, alias="get_result_quota_window_seconds", description="The GetResult quota window."
    )
    get_result_headroom: float = Field(
        default=0.03, ge=0, lt=1, alias="get_result_headroom", description="Share of the GetResult quota left unused."
    )
    upload_rate_per_second: float = Field(
        default=45.0,
        gt=0,
        alias="upload_rate_per_second",
        description="Client-side limit of UploadAudioData; the quota is 3000/60 s (50/s).",
    )
    ccc_rate_per_second: float = Field(
        default=20.0,
        gt=0,
        alias="ccc_rate_per_second",
        description="Client-side limit of CCC calls; CCC publishes no quota (UNCONFIRMED: 20/s assumed).",
    )

    get_result_callback_share: float = Field(
        default=0.1,
        ge=0,
        lt=1,
        alias="get_result_callback_share",
        description="Share of the GetResult ceiling left to callbacks: the harvest's limiter runs at the rest, "
        "the callback instances together at this share (0: every callback answers 503, the timer harvests).",
    )

    @property
    def get_result_rate_per_second(self) -> float:
        """The GetResult ceiling: ``quota × (1 - headroom) / window`` calls/s (16.2/s by default)."""
        return self.get_result_quota * (1 - self.get_result_headroom) / self.get_result_window_seconds

    @property
    def harvest_rate_per_second(self) -> float:
        """The harvest's ceiling: the GetResult ceiling less the callbacks' share (14.6/s by default)."""
        return self.get_result_rate_per_second * (1 - self.get_result_callback_share)

    @property
    def callback_rate_per_second(self) -> float:
        """What every callback instance together may spend on GetResult (1.6/s by default)."""
        return self.get_result_rate_per_second * self.get_result_callback_share


class CccSettings(_Slice):
    """Cloud Contact Center."""

    endpoint: str = Field(
        default="ccc.cn-shanghai.aliyuncs.com",
        alias="ccc_endpoint",
        description="CCC API host, or a URL with scheme (http://127.0.0.1:8790 for the sandbox).",
    )
    instance_id: str | None = Field(
        default=None, alias="ccc_instance_id", description="CCC instance id sent with every CCC call."
    )


class ScaSettings(_Slice):
    """Smart Conversation Analysis (Hangzhou only)."""

    endpoint: str = Field(
        default="qualitycheck.cn-hangzhou.aliyuncs.com",
        alias="sca_endpoint",
        description="SCA API host or URL. SCA exists in cn-hangzhou only: keep it pinned there.",
    )
    base_me_agent_id: int | None = Field(
        default=None, alias="sca_base_me_agent_id", description="SCA workspace (BaseMeAgentId), optional."
    )
    time_zone: str = Field(
        default="Asia/Shanghai",
        alias="sca_time_zone",
        description="Time zone of GetResult's startTime/endTime (UNCONFIRMED; Asia/Shanghai assumed), and of the "
        "output partitions. It must keep one UTC offset: a zone with daylight saving is refused.",
    )
    duplicate_call_uuid_codes: tuple[str, ...] = Field(
        default=("CallUuidRepeated",),
        alias="sca_duplicate_call_uuid_codes",
        description="Comma list of the Code(s) SCA answers for a callUuid seen in the last 2 h (UNCONFIRMED); "
        "a refusal whose message speaks of a repeated callUuid is recognised too.",
    )

    _codes = field_validator("duplicate_call_uuid_codes", mode="before")(_comma_list)

    @field_validator("time_zone")
    @classmethod
    def _fixed_offset_zone(cls, value: str) -> str:
        try:
            zone = ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        # GetResult's startTime/endTime are local wall-clock text: in a zone with daylight
        # saving, the repeated hour of a fall-back cannot be asked for (both hours are the
        # same text) and would never be read. Refuse such zones.
        # mid-winter and mid-summer of each year: daylight saving shows as two offsets
        offsets = {
            datetime(year, month, 15, tzinfo=timezone.utc).astimezone(zone).utcoffset()
            for year in range(2020, 2061)
            for month in (1, 7)
        }
        if len(offsets) > 1:
            raise ValueError(
                f"time zone {value!r} changes its UTC offset (daylight saving): GetResult's local "
                "startTime/endTime cannot name its repeated hour; use a fixed-offset zone"
            )
        return value

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)


class PushSettings(_Slice):
    """Which objects are recordings, and how they are submitted to SCA."""

    recordings_url: str | None = Field(
        default=None,
        alias="recordings_url",
        description="Store URL of the recordings (oss://bucket[/prefix] or file:); "
        "push reads metadata and backfills list there. In FC it defaults to the bucket named in the event.",
    )
    recording_prefix: str = Field(
        default="",
        alias="recording_prefix",
        description="Only keys under this prefix are recordings (relative to the recordings URL).",
    )
    recording_suffixes: tuple[str, ...] = Field(
        default=(".mkv", ".wav", ".mp3"),
        alias="recording_suffixes",
        description="Comma list of audio suffixes (case-insensitive).",
    )
    contact_id_metadata: str = Field(
        default="contact-id",
        alias="contact_id_metadata",
        description="Object metadata header (x-oss-meta-<name>) holding the ContactId; "
        "read before QCFLOW_CONTACT_ID_PATTERN.",
    )
    contact_id_pattern: str = Field(
        default=r"job-\d+",
        alias="contact_id_pattern",
        description="Regex that finds the ContactId in a recording's object key (CCC's key layout is UNCONFIRMED).",
    )
    audio_url_strategy: Literal["ccc", "signed"] = Field(
        default="ccc",
        alias="audio_url_strategy",
        description="voiceFileUrl sent to SCA: CCC's pre-signed URL (ccc) "
        "or a URL signed for the uploaded object (signed).",
    )
    audio_url_min_seconds: int = Field(
        default=12 * 3600,
        ge=0,
        alias="audio_url_min_seconds",
        description="Refuse a voiceFileUrl that expires sooner (SCA needs >= 12 h).",
    )
    audio_url_lifetime_seconds: int = Field(
        default=24 * 3600,
        ge=60,
        le=7 * 86400,
        alias="audio_url_lifetime_seconds",
        description="Lifetime of URLs signed by push (strategy signed).",
    )
    audio_url_access_key_id: str | None = Field(
        default=None,
        alias="audio_url_access_key_id",
        description="Long-lived key that signs voiceFileUrl (strategy signed); STS-signed URLs die with the token.",
    )
    audio_url_access_key_secret: SecretStr | None = Field(
        default=None,
        alias="audio_url_access_key_secret",
        description="Its secret. Better not here (anyone who may read the function's configuration sees it): "
        "name a KMS secret holding it with QCFLOW_AUDIO_URL_ACCESS_KEY_SECRET_KMS_NAME instead.",
    )
    business: str | None = Field(
        default=None, alias="push_business", description="UploadAudioData business of every recording."
    )
    #: (name, value) pairs, not a dict: the settings stay immutable (and hashable) all the way down
    remarks: tuple[tuple[str, int | str | None], ...] = Field(
        default=(),
        alias="push_remarks",
        description='JSON object of fixed remarks, e.g. {"remark1": "ccc"}.',
    )
    scheme_task_config_id: int | None = Field(
        default=None, alias="push_scheme_task_config_id", description="SCA scheme task (schemeTaskConfigId)."
    )
    rule_ids: tuple[str, ...] = Field(
        default=(), alias="push_rule_ids", description="Comma list of SCA rule ids (ruleIds)."
    )
    callback_url: str | None = Field(
        default=None,
        alias="push_callback_url",
        description="The callback function's base URL (its HTTP trigger): push sends SCA "
        "<this>/sca-callback/<QCFLOW_CALLBACK_TOKEN> as callbackUrl, called when a task finishes.",
    )
    claim_ttl_seconds: float = Field(
        default=900.0,
        gt=0,
        alias="push_claim_ttl_seconds",
        description="A claim with no outcome expires after this (or at the claiming invocation's deadline).",
    )
    batch_size: int = Field(
        default=5,
        ge=1,
        le=20,
        alias="push_batch_size",
        description="Recordings per UploadAudioData in a backfill (callList).",
    )

    _lists = field_validator("recording_suffixes", "rule_ids", mode="before")(_comma_list)

    @field_validator("recording_suffixes")
    @classmethod
    def _lower_suffixes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(suffix.lower() for suffix in value)

    @field_validator("contact_id_pattern")
    @classmethod
    def _valid_regex(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from exc
        return value

    @field_validator("remarks", mode="before")
    @classmethod
    def _remarks_object(cls, value: object) -> object:
        """``QCFLOW_PUSH_REMARKS`` is JSON text (an empty one means none) → sorted (name, value) pairs."""
        if value is None or (isinstance(value, str) and not value.strip()):
            return ()
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError as exc:
                raise ValueError(f"not valid JSON: {exc}") from None
        if not isinstance(value, dict) or not set(value) <= REMARK_KEYS:
            raise ValueError("must be a JSON object with keys remark1..remark25")
        return tuple(sorted(value.items()))

    @field_validator("remarks")
    @classmethod
    def _remarks_uploadable(
        cls, value: tuple[tuple[str, int | str | None], ...]
    ) -> tuple[tuple[str, int | str | None], ...]:
        """The values too: one UploadCall refuses would fail every push after its claim."""
        if value:
            from qcflow.models.sca import UploadCall  # only when remarks are set

            try:
                UploadCall(voice_file_url="https://example.invalid/a.wav", **dict(value))
            except ValueError as exc:
                raise ValueError(str(exc).splitlines()[0]) from None
        return value

    @field_validator("claim_ttl_seconds")
    @classmethod
    def _claim_outlives_margin(cls, value: float) -> float:
        if value <= 2 * CLAIM_MARGIN_SECONDS:
            raise ValueError(
                f"must exceed {2 * CLAIM_MARGIN_SECONDS:g} s: a claimant stops working "
                f"{CLAIM_MARGIN_SECONDS:g} s before its claim expires"
            )
        return value


class HarvestSettings(_Slice):
    """The harvest pass: which windows, how results are written, how long a run may take."""

    settle_seconds: float = Field(
        default=120.0, ge=0, alias="harvest_settle_seconds", description="Windows end this long before now."
    )
    lookback_seconds: float = Field(
        default=3600.0,
        ge=0,
        alias="harvest_lookback_seconds",
        description="Each pass re-reads this much before the checkpoint.",
    )
    start_seconds: float = Field(
        default=86400.0,
        gt=0,
        alias="harvest_start_seconds",
        description="With no checkpoint yet, start this long ago (the first pass saves that start as its checkpoint).",
    )
    required_fields: tuple[str, ...] = Field(
        default=(
            "status",
            "taskId",
            "score",
            "hitResult",
            "asrResult",
            "recording",
            "agent",
            "reviewStatus",
            "reviewResult",
            "reviewHistoryList",
            "comments",
            "errorMessage",
            "createTime",
            "createTimeLong",
            "hitScore",
            "schemeIdList",
            "schemeNameList",
            "reviewer",
            "reviewTime",
            "reviewTimeLong",
            "reviewType",
            "resolver",
        ),
        alias="harvest_required_fields",
        description="Comma list of GetResult requiredFields; status, taskId, createTimeLong, createTime and "
        "recording are always added (qcflow.harvest.fields says why).",
    )
    gzip: bool = Field(default=False, alias="harvest_gzip", description="Write results as .jsonl.gz.")
    part_max_records: int = Field(
        default=20_000,
        ge=1,
        alias="harvest_part_max_records",
        description="Roll an output part after this many records.",
    )
    part_max_bytes: int = Field(
        default=64 * 1024 * 1024,
        ge=1024,
        alias="harvest_part_max_bytes",
        description="Roll an output part after this many bytes.",
    )
    compact: bool = Field(
        default=True,
        alias="harvest_compact",
        description="After its windows, a pass folds the small parts of closed hours into one or two "
        "(qcflow.harvest.compact).",
    )
    compact_max_bytes: int = Field(
        default=256 * 1024 * 1024,
        ge=1024,
        alias="harvest_compact_max_bytes",
        description="A compacted part holds at most this many bytes of input parts (as stored).",
    )
    compact_hours: float = Field(
        default=48.0,
        gt=0,
        alias="harvest_compact_hours",
        description="A pass compacts the closed hours of this many hours back; older ones with qcflow compact.",
    )
    unfinished_max_age_seconds: float = Field(
        default=2 * 86400.0,
        gt=0,
        alias="harvest_unfinished_max_age_seconds",
        description="A task still running after this long is reported stuck and no longer polled.",
    )
    reviews: bool = Field(
        default=True,
        alias="harvest_reviews",
        description="Each pass also reads GetResult by last-review time into reviews/ (the review feed).",
    )
    reviews_min_share: float = Field(
        default=0.25,
        ge=0,
        le=0.9,
        alias="harvest_reviews_min_share",
        description="Share of a pass's time kept for the review feed when results have a backlog "
        "(results are read first).",
    )
    lease_seconds: float = Field(
        default=900.0,
        gt=0,
        alias="harvest_lease_seconds",
        description="A harvest lease expires after this (a crashed run).",
    )
    max_seconds: float = Field(
        default=840.0,
        gt=0,
        alias="harvest_max_seconds",
        description="A run's time budget when no FC deadline is known (the CLI).",
    )

    _fields = field_validator("required_fields", mode="before")(_comma_list)


class PiiSettings(_Slice):
    """Personal data in the harvested rows (``qcflow.pii``): what is redacted, and how."""

    mode: Literal["mask", "hash", "off"] = Field(
        default="mask",
        alias="pii",
        description="mask: every character of a personal number (mobile, landline with area code, ID card, bank "
        "card, e-mail) found in any string of a result becomes *, length kept, and the personal fields are masked "
        "whole; hash: the same, but the personal fields become HMAC-SHA256 (QCFLOW_PII_KEY) so analysts can still "
        "join per customer; off: rows are written as SCA sends them.",
    )
    key: SecretStr | None = Field(
        default=None,
        alias="pii_key",
        description="Key of the HMAC in hash mode (required there, at least 16 characters; never logged). Better "
        "from KMS: QCFLOW_PII_KEY_KMS_NAME.",
    )
    fields: tuple[str, ...] = Field(
        default=(),
        alias="pii_fields",
        description="Comma list of more fields redacted whole, by their snake_case key at any depth (customer_name, "
        "remark3) or dotted path (recording.business); recording.caller and recording.callee always are.",
    )
    service_numbers: Literal["keep", "mask"] = Field(
        default="keep",
        alias="pii_service_numbers",
        description="Service numbers (400/800 + 7 digits, 95 + 3 to 6 digits) are a company's hotline, not "
        "personal: kept by default; mask redacts them like personal numbers.",
    )

    raw_store: str | None = Field(
        default=None,
        alias="pii_raw_store",
        description="A second store (oss://bucket/prefix, its own bucket or prefix with its own RAM policy; file:… "
        "locally) that receives the unredacted rows through the same exactly-once writer. Unset (the default): "
        "no unredacted copy anywhere.",
    )

    _field_list = field_validator("fields", mode="before")(_comma_list)

    @field_validator("mode", "service_numbers", mode="before")
    @classmethod
    def _empty_is_default(cls, value: object, info: Any) -> object:
        # s.yaml passes ${env('QCFLOW_PII','')}: empty means "not set", i.e. the default
        if isinstance(value, str) and not value.strip():
            return "mask" if info.field_name == "mode" else "keep"
        return value

    @field_validator("raw_store", mode="before")
    @classmethod
    def _empty_store_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("key", mode="before")
    @classmethod
    def _empty_key_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("key")
    @classmethod
    def _long_key(cls, value: SecretStr | None) -> SecretStr | None:
        # the message must not quote the value: it is a secret
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters")
        return value


#: A callback token: at least 128 bits in the URL-safe Base64 alphabet (``secrets.token_urlsafe(16)``
#: gives 22 characters; ``token_urlsafe(32)`` is what the docs suggest).
_CALLBACK_TOKEN = re.compile(r"[A-Za-z0-9_-]{22,256}")


class CallbackSettings(_Slice):
    """SCA's task-complete callback (the HTTP-triggered function), and the token push puts in its URL."""

    max_age_seconds: float = Field(
        default=600.0,
        gt=0,
        alias="callback_max_age_seconds",
        description="Callbacks with an older timestamp are refused.",
    )
    token: SecretStr | None = Field(
        default=None,
        alias="callback_token",
        description="Secret last path segment of callbackUrl (22 to 256 URL-safe characters, >= 128 bits): push "
        "sends <QCFLOW_PUSH_CALLBACK_URL>/sca-callback/<token>, the callback answers 404 to any other. Unset: push "
        "sends no callbackUrl and the callback refuses every request (the timer still harvests).",
    )
    previous_token: SecretStr | None = Field(
        default=None,
        alias="callback_previous_token",
        description="The token before the last rotation, still accepted by the callback (tasks in flight carry it).",
    )
    expected_ali_uid: str | None = Field(
        default=None,
        alias="sca_ali_uid",
        description="The account id (aliUid) SCA's callbacks must carry; callbacks for another are refused.",
    )
    get_result_seconds: float = Field(
        default=5.0,
        gt=0,
        le=60,
        alias="callback_get_result_seconds",
        description="Deadline of the callback's one GetResult attempt (no retry: a throttled or slow one answers "
        "503 and the timer pass harvests the task).",
    )
    max_instances: int = Field(
        default=4,
        ge=1,
        le=1000,
        alias="callback_max_instances",
        description="Instances the callback function may run (s.yaml's reservedConcurrency): each gets an equal part "
        "of QCFLOW_GET_RESULT_CALLBACK_SHARE.",
    )

    @field_validator("token", "previous_token", "expected_ali_uid", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # s.yaml passes ${env('QCFLOW_CALLBACK_TOKEN','')}: an empty value outside a rotation means "none"
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("token", "previous_token")
    @classmethod
    def _strong_token(cls, value: SecretStr | None) -> SecretStr | None:
        # the message must not quote the value: it is a secret (load_settings does not echo it either)
        if value is not None and not _CALLBACK_TOKEN.fullmatch(value.get_secret_value()):
            raise ValueError(
                "must be 22 to 256 URL-safe characters (A-Z a-z 0-9 _ -), e.g. python -c "
                "'import secrets; print(secrets.token_urlsafe(32))'"
            )
        return value


class SecretsSettings(_Slice):
    """Secrets read from KMS Secrets Manager at an instance's start instead of a plain variable.

    Each ``<setting>_kms_name`` field names the KMS secret that holds ``QCFLOW_<SETTING>``
    (``qcflow.secrets`` reads it once per instance with the function role's credentials); set
    either the variable or its ``_KMS_NAME``, not both. A setting becomes readable from KMS
    by declaring its ``<setting>_kms_name`` field here: nothing else changes.
    """

    kms_endpoint: str | None = Field(
        default=None,
        alias="secrets_kms_endpoint",
        description="KMS endpoint for the secrets below (host or URL); default kms.<QCFLOW_REGION>.aliyuncs.com "
        "(kms-vpc.<region>.aliyuncs.com from inside a VPC).",
    )
    audio_url_access_key_secret_kms_name: str | None = Field(
        default=None,
        alias="audio_url_access_key_secret_kms_name",
        description="Name of the KMS secret holding QCFLOW_AUDIO_URL_ACCESS_KEY_SECRET (instead of the variable).",
    )
    callback_token_kms_name: str | None = Field(
        default=None,
        alias="callback_token_kms_name",
        description="Name of the KMS secret holding QCFLOW_CALLBACK_TOKEN (instead of the variable; push and callback "
        "both need it, so both roles must be allowed to read it).",
    )

    pii_key_kms_name: str | None = Field(
        default=None,
        alias="pii_key_kms_name",
        description="Name of the KMS secret holding QCFLOW_PII_KEY (instead of the variable; the harvest and "
        "callback roles must be allowed to read it).",
    )

    def kms_names(self) -> dict[str, str]:
        """Setting short name → the KMS secret holding it, for every ``*_kms_name`` that is set."""
        return {
            name.removesuffix("_kms_name"): value
            for name, value in self
            if name.endswith("_kms_name") and isinstance(value, str) and value.strip()
        }


class Settings(BaseModel):
    """Everything qcflow can be told from the environment (FC sets it from ``s.yaml``), one slice per
    part; build it with ``load_settings``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    log_level: str = Field(
        default="INFO", description="Level of qcflow's JSON logs (DEBUG, INFO, WARNING, ERROR, CRITICAL)."
    )
    store: StoreSettings = StoreSettings()
    http: HttpSettings = HttpSettings()
    quotas: QuotaSettings = QuotaSettings()
    ccc: CccSettings = CccSettings()
    sca: ScaSettings = ScaSettings()
    push: PushSettings = PushSettings()
    harvest: HarvestSettings = HarvestSettings()
    callback: CallbackSettings = CallbackSettings()
    pii: PiiSettings = PiiSettings()
    secrets: SecretsSettings = SecretsSettings()

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
        return level

    @property
    def zone(self) -> ZoneInfo:
        """SCA's time zone (GetResult's times, the output partitions)."""
        return self.sca.zone


#: The slices, by the name ``Settings`` holds them under.
SLICES: dict[str, type[_Slice]] = {
    name: info.annotation
    for name, info in Settings.model_fields.items()
    if isinstance(info.annotation, type) and issubclass(info.annotation, _Slice)
}


def _variables() -> dict[str, tuple[str | None, str]]:
    """Each variable's short name (``harvest_settle_seconds``) → (slice, field); ``None`` for top level."""
    names: dict[str, tuple[str | None, str]] = {"log_level": (None, "log_level")}
    for slice_name, model in SLICES.items():
        for field_name, info in model.model_fields.items():
            names[info.alias or field_name] = (slice_name, field_name)
    return names


VARIABLES = _variables()
#: Variables whose values are secrets: never quoted in an error message.
SECRET_VARIABLES = frozenset(
    info.alias or name
    for model in SLICES.values()
    for name, info in model.model_fields.items()
    if "SecretStr" in str(info.annotation)
)


def env_name(name: str) -> str:
    """The environment variable behind a setting, by its short name (``recordings_url``)."""
    if name not in VARIABLES:
        raise KeyError(f"no setting named {name!r}")
    return ENV_PREFIX + name.upper()


def load_settings(environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
    """Build ``Settings`` from the process environment (or ``environ``), failing with the
    variable's name. Names are matched without regard to case, values coerced by pydantic;
    ``overrides`` use the variables' short names (``harvest_settle_seconds=0``)."""
    env = os.environ if environ is None else environ
    for name in env:
        short = name[len(ENV_PREFIX) :].lower()
        if name.upper().startswith(ENV_PREFIX) and short in REMOVED:
            logging.getLogger("qcflow.config").warning(
                "%s is no longer read: use %s", name, REMOVED[short], extra={"event": "config_removed_variable"}
            )
    flat: dict[str, object] = {
        name[len(ENV_PREFIX) :].lower(): value
        for name, value in env.items()
        if name.upper().startswith(ENV_PREFIX) and name[len(ENV_PREFIX) :].lower() in VARIABLES
    }
    for name, value in overrides.items():
        if name not in VARIABLES:
            raise TypeError(f"load_settings: no setting named {name!r}")
        flat[name] = value
    nested: dict[str, Any] = {}
    for name, value in flat.items():
        slice_name, _ = VARIABLES[name]
        if slice_name is None:
            nested[name] = value
        else:
            nested.setdefault(slice_name, {})[name] = value
    try:
        return Settings.model_validate(nested)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            # the location's last named step is the variable's short name (the alias)
            name = next((str(step) for step in reversed(err["loc"]) if str(step) in VARIABLES), "?")
            got = "a secret, not shown" if name in SECRET_VARIABLES else repr(err.get("input"))
            problems.append(f"{ENV_PREFIX}{name.upper()}: {err['msg']} (got {got})")
        raise ConfigError("invalid configuration: " + "; ".join(problems)) from None
