"""One settings model, read from ``QCFLOW_*`` environment variables and validated at start.

A wrong or missing value fails with a ``ConfigError`` naming the variable, so a function
fails on its first invocation with a message an operator can act on.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from qcflow.errors import ConfigError

ENV_PREFIX = "QCFLOW_"


class Settings(BaseSettings):
    """Everything qcflow can be told from the environment (FC sets it from ``s.yaml``)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

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
    oss_internal: bool = Field(default=False, description="Use the region's internal OSS endpoint (inside Alibaba Cloud).")

    # --- operations
    log_level: str = Field(default="INFO", description="Level of qcflow's JSON logs (DEBUG, INFO, WARNING, ERROR).")

    # --- HTTP behaviour
    http_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    http_connect_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    max_attempts: int = Field(default=5, ge=1, le=20, description="Attempts per API call, the first included.")
    backoff_initial_seconds: float = Field(default=0.2, gt=0, le=60)
    backoff_max_seconds: float = Field(default=10.0, gt=0, le=600)

    # --- client-side rate limits, kept just under the published quotas
    get_result_rate_per_second: float = Field(default=15.0, gt=0, description="GetResult quota is 1000/60 s (16.7/s).")
    upload_rate_per_second: float = Field(default=45.0, gt=0, description="UploadAudioData quota is 3000/60 s (50/s).")
    ccc_rate_per_second: float = Field(default=20.0, gt=0, description="CCC quota is unpublished; 20/s assumed.")

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
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
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
    """Build ``Settings`` from the environment (or ``environ``), failing with the variable's name."""
    try:
        if environ is None:
            return Settings(**overrides)  # type: ignore[arg-type]
        values = {
            name[len(ENV_PREFIX):].lower(): value
            for name, value in environ.items()
            if name.startswith(ENV_PREFIX) and name[len(ENV_PREFIX):].lower() in Settings.model_fields
        }
        values.update(overrides)
        return Settings.model_validate(values)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = str(err["loc"][0]) if err["loc"] else "?"
            problems.append(f"{env_name(field)}: {err['msg']} (got {err.get('input')!r})")
        raise ConfigError("invalid configuration: " + "; ".join(problems)) from None
