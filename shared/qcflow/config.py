"""One settings model, read from ``QCFLOW_*`` environment variables and validated at start.

A wrong or missing value fails with a ``ConfigError`` naming the variable, so a function
fails on its first invocation with a message an operator can act on.

Why a plain pydantic model and not ``pydantic-settings``: every setting here is a scalar read
from one source (the environment FC fills from ``s.yaml``), which ``load_settings`` does in
a few lines, while importing ``pydantic-settings`` costs ~16 ms of every cold start (and
python-dotenv in the layer). Validation, coercion and the error messages are pydantic's.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from qcflow.errors import ConfigError

ENV_PREFIX = "QCFLOW_"


class Settings(BaseModel):
    """Everything qcflow can be told from the environment (FC sets it from ``s.yaml``);
    build it with ``load_settings``."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    # --- where state and results live
    store: str = Field(
        default="file:./qcflow-data",
        description="Store URL: oss://bucket/prefix in the cloud, file:///path (or file:relative) locally.",
    )

    # --- Cloud Contact Center
    ccc_endpoint: str = Field(
        default="ccc.cn-shanghai.aliyuncs.com",
        description="CCC API host, or a URL with scheme (http://127.0.0.1:8790 for the sandbox).",
    )
    ccc_instance_id: str | None = Field(default=None, description="CCC instance id sent with every CCC call.")
    contact_id_pattern: str = Field(
        default=r"job-\d+",
        description="Regex that finds the ContactId in a recording's object key (CCC's key layout is UNCONFIRMED).",
    )

    # --- Smart Conversation Analysis (Hangzhou only)
    sca_endpoint: str = Field(
        default="qualitycheck.cn-hangzhou.aliyuncs.com",
        description="SCA API host or URL. SCA exists in cn-hangzhou only: keep it pinned there.",
    )
    sca_base_me_agent_id: int | None = Field(default=None, description="SCA workspace (BaseMeAgentId), optional.")
    sca_time_zone: str = Field(
        default="Asia/Shanghai",
        description="Time zone of GetResult's startTime/endTime (UNCONFIRMED; Asia/Shanghai assumed).",
    )

    # --- OSS (for an oss:// store)
    region: str = Field(default="cn-shanghai", description="Region of the OSS bucket.")
    oss_endpoint: str | None = Field(default=None, description="OSS endpoint; default derived from the region.")
    oss_internal: bool = Field(
        default=False, description="Use the region's internal OSS endpoint (inside Alibaba Cloud)."
    )

    # --- operations
    log_level: str = Field(default="INFO", description="Level of qcflow's JSON logs (DEBUG, INFO, WARNING, ERROR).")

    # --- HTTP behaviour
    http_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    http_connect_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    max_attempts: int = Field(default=5, ge=1, le=20, description="Attempts per API call, the first included.")
    backoff_initial_seconds: float = Field(default=0.2, gt=0, le=60)
    backoff_max_seconds: float = Field(default=10.0, gt=0, le=600)

    call_deadline_seconds: float = Field(
        default=60.0,
        gt=0,
        le=3600,
        description="Overall bound of one API call, retries and sleeps included, "
        "when the caller (an FC invocation) sets none.",
    )
    throttle_backoff_initial_seconds: float = Field(
        default=1.0, gt=0, le=60, description="First backoff after Throttling."
    )
    throttle_backoff_max_seconds: float = Field(
        default=20.0,
        gt=0,
        le=600,
        description="Longest single backoff after Throttling (retried until the call's deadline).",
    )

    # --- client-side rate limits, kept just under the published quotas
    get_result_rate_per_second: float = Field(default=15.0, gt=0, description="GetResult quota is 1000/60 s (16.7/s).")
    upload_rate_per_second: float = Field(default=45.0, gt=0, description="UploadAudioData quota is 3000/60 s (50/s).")
    ccc_rate_per_second: float = Field(default=20.0, gt=0, description="CCC quota is unpublished; 20/s assumed.")
    sca_duplicate_call_uuid_codes: str = Field(
        default="CallUuidRepeated",
        description="Comma list of the Code(s) SCA answers for a callUuid seen in the last 2 h (UNCONFIRMED); "
        "a refusal whose message speaks of a repeated callUuid is recognised too.",
    )

    # --- the store
    store_allow_unverified_versioning: bool = Field(
        default=False,
        description="Go on when the bucket's versioning cannot be read (403). Only for a bucket where versioning "
        "was never enabled: on a versioned bucket create-if-absent protects nothing.",
    )

    # --- push: which objects are recordings, and how they are submitted
    recordings_url: str | None = Field(
        default=None,
        description="Store URL of the recordings (oss://bucket[/prefix] or file:); "
        "push reads metadata and backfills list "
        "there. In FC it defaults to the bucket named in the event.",
    )
    recording_prefix: str = Field(
        default="", description="Only keys under this prefix are recordings (relative to the recordings URL)."
    )
    recording_suffixes: str = Field(
        default=".mkv,.wav,.mp3", description="Comma list of audio suffixes (case-insensitive)."
    )
    contact_id_metadata: str = Field(
        default="contact-id",
        description="Object metadata header (x-oss-meta-<name>) holding the ContactId; "
        "read before QCFLOW_CONTACT_ID_PATTERN.",
    )
    audio_url_strategy: Literal["ccc", "signed"] = Field(
        default="ccc",
        description="voiceFileUrl sent to SCA: CCC's pre-signed URL (ccc) "
        "or a URL signed for the uploaded object (signed).",
    )
    audio_url_min_seconds: int = Field(
        default=12 * 3600, ge=0, description="Refuse a voiceFileUrl that expires sooner (SCA needs >= 12 h)."
    )
    audio_url_lifetime_seconds: int = Field(
        default=24 * 3600, ge=60, le=7 * 86400, description="Lifetime of URLs signed by push (strategy signed)."
    )
    audio_url_access_key_id: str | None = Field(
        default=None,
        description="Long-lived key that signs voiceFileUrl (strategy signed); STS-signed URLs die with the token.",
    )
    audio_url_access_key_secret: SecretStr | None = Field(
        default=None, description="Its secret (keep it in a secret store)."
    )
    push_business: str | None = Field(default=None, description="UploadAudioData business of every recording.")
    push_remarks: str | None = Field(default=None, description='JSON object of fixed remarks, e.g. {"remark1": "ccc"}.')
    push_scheme_task_config_id: int | None = Field(default=None, description="SCA scheme task (schemeTaskConfigId).")
    push_rule_ids: str | None = Field(default=None, description="Comma list of SCA rule ids (ruleIds).")
    push_callback_url: str | None = Field(
        default=None, description="SCA calls it when a task finishes (the callback function's URL)."
    )
    push_claim_ttl_seconds: float = Field(
        default=900.0,
        gt=0,
        description="A claim with no outcome expires after this (or at the claiming invocation's deadline).",
    )
    push_batch_size: int = Field(
        default=5, ge=1, le=20, description="Recordings per UploadAudioData in a backfill (callList)."
    )

    # --- harvest
    harvest_settle_seconds: float = Field(default=120.0, ge=0, description="Windows end this long before now.")
    harvest_lookback_seconds: float = Field(
        default=3600.0, ge=0, description="Each pass re-reads this much before the checkpoint."
    )
    harvest_start_seconds: float = Field(
        default=86400.0, gt=0, description="With no checkpoint yet, start this long ago."
    )
    harvest_required_fields: str = Field(
        default="status,taskId,score,hitResult,asrResult,recording,agent,reviewStatus,reviewResult,reviewHistoryList,"
        "comments,errorMessage,createTime,createTimeLong,hitScore,schemeIdList,schemeNameList,reviewer,reviewTime,resolver",
        description="GetResult requiredFields (status and taskId are always added).",
    )
    harvest_gzip: bool = Field(default=False, description="Write results as .jsonl.gz.")
    harvest_part_max_records: int = Field(
        default=20_000, ge=1, description="Roll an output part after this many records."
    )
    harvest_part_max_bytes: int = Field(
        default=64 * 1024 * 1024, ge=1024, description="Roll an output part after this many bytes."
    )
    harvest_unfinished_max_age_seconds: float = Field(
        default=2 * 86400.0,
        gt=0,
        description="A task still running after this long is reported stuck and no longer polled.",
    )
    harvest_lease_seconds: float = Field(
        default=900.0, gt=0, description="A harvest lease expires after this (a crashed run)."
    )
    harvest_max_seconds: float = Field(
        default=840.0, gt=0, description="A run's time budget when no FC deadline is known."
    )
    get_result_quota: int = Field(
        default=1000, ge=1, description="GetResult calls allowed per quota window (per account)."
    )
    get_result_quota_window_seconds: float = Field(default=60.0, gt=0, description="The GetResult quota window.")
    get_result_headroom: float = Field(
        default=0.03, ge=0, lt=1, description="Share of the GetResult quota left unused."
    )
    callback_max_age_seconds: float = Field(
        default=600.0, gt=0, description="Callbacks with an older timestamp are refused."
    )

    @field_validator("contact_id_pattern")
    @classmethod
    def _valid_regex(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from exc
        return value

    @field_validator("sca_time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            zone = ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        # GetResult's startTime/endTime are local wall-clock text: in a zone with daylight
        # saving, the repeated hour of a fall-back cannot be asked for (both hours are the
        # same text) and would never be read. Refuse such zones.
        from datetime import datetime, timezone

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

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
        return level

    @field_validator("store")
    @classmethod
    def _store_scheme(cls, value: str) -> str:
        if not (value.startswith("oss://") or value.startswith("file:")):
            raise ValueError("must start with oss:// or file:")
        return value

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.sca_time_zone)


def env_name(field: str) -> str:
    """The environment variable behind a settings field."""
    return ENV_PREFIX + field.upper()


def load_settings(environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
    """Build ``Settings`` from the process environment (or ``environ``), failing with the
    variable's name. Names are matched without regard to case, values coerced by pydantic."""
    env = os.environ if environ is None else environ
    try:
        values: dict[str, object] = {
            name[len(ENV_PREFIX) :].lower(): value
            for name, value in env.items()
            if name.upper().startswith(ENV_PREFIX) and name[len(ENV_PREFIX) :].lower() in Settings.model_fields
        }
        values.update(overrides)
        return Settings.model_validate(values)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = str(err["loc"][0]) if err["loc"] else "?"
            problems.append(f"{env_name(field)}: {err['msg']} (got {err.get('input')!r})")
        raise ConfigError("invalid configuration: " + "; ".join(problems)) from None
