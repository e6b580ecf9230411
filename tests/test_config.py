from __future__ import annotations

import pytest

from qcflow.config import load_settings
from qcflow.credentials import credentials_from_env, credentials_from_fc_context
from qcflow.errors import ConfigError


def test_defaults_and_overrides_from_environment() -> None:
    settings = load_settings({"QCFLOW_SCA_ENDPOINT": "http://127.0.0.1:8790", "QCFLOW_SCA_BASE_ME_AGENT_ID": "12", "OTHER": "x"})
    assert settings.sca_endpoint == "http://127.0.0.1:8790" and settings.sca_base_me_agent_id == 12
    assert settings.ccc_endpoint == "ccc.cn-shanghai.aliyuncs.com" and settings.sca_time_zone == "Asia/Shanghai"


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"QCFLOW_MAX_ATTEMPTS": "zero"}, "QCFLOW_MAX_ATTEMPTS"),
        ({"QCFLOW_STORE": "s3://x"}, "QCFLOW_STORE"),
        ({"QCFLOW_SCA_TIME_ZONE": "Mars/Base"}, "QCFLOW_SCA_TIME_ZONE"),
        ({"QCFLOW_CONTACT_ID_PATTERN": "job-("}, "QCFLOW_CONTACT_ID_PATTERN"),
        ({"QCFLOW_GET_RESULT_RATE_PER_SECOND": "-1"}, "QCFLOW_GET_RESULT_RATE_PER_SECOND"),
    ],
)
def test_bad_value_names_the_variable(env: dict, variable: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        load_settings(env)


def test_settings_read_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QCFLOW_CCC_INSTANCE_ID", "ccc-prod")
    assert load_settings().ccc_instance_id == "ccc-prod"
    monkeypatch.setenv("QCFLOW_HTTP_TIMEOUT_SECONDS", "nope")
    with pytest.raises(ConfigError, match="QCFLOW_HTTP_TIMEOUT_SECONDS"):
        load_settings()


def test_credentials_from_env_name_missing_variables() -> None:
    with pytest.raises(ConfigError, match="ALIBABA_CLOUD_ACCESS_KEY_ID and ALIBABA_CLOUD_ACCESS_KEY_SECRET"):
        credentials_from_env({})
    creds = credentials_from_env({"ALIBABA_CLOUD_ACCESS_KEY_ID": "id", "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "S3cr3tVal", "ALIBABA_CLOUD_SECURITY_TOKEN": "T0kenVal"})
    assert creds.security_token == "T0kenVal" and creds.provider_name == "static_sts"
    assert "S3cr3tVal" not in repr(creds) and "T0kenVal" not in repr(creds)


def test_credentials_from_fc_context_both_runtimes() -> None:
    class Creds:
        access_key_id, access_key_secret, security_token = "ctx-id", "ctx-secret", "ctx-token"

    class Py310Context:
        credentials = Creds()

    class Py312Context:
        pass

    assert credentials_from_fc_context(Py310Context()).access_key_id == "ctx-id"
    env = {"ALIBABA_CLOUD_ACCESS_KEY_ID": "env-id", "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "s"}
    assert credentials_from_fc_context(Py312Context(), env).access_key_id == "env-id"


@pytest.mark.parametrize("token", ["QXZ9\n", "QX\u00e9Z9", " QXZ9", ""])
def test_credentials_refuse_values_that_break_headers(token: str) -> None:
    from qcflow.credentials import Credentials

    with pytest.raises(ConfigError, match="security_token") as info:
        Credentials("id", "secret", token)
    assert token.strip() not in str(info.value) or not token.strip()


def test_fc_context_credentials_are_stripped() -> None:
    class Creds:
        access_key_id, access_key_secret, security_token = " id ", "secret\n", "CAIStoken\n"

    class Context:
        credentials = Creds()

    creds = credentials_from_fc_context(Context())
    assert (creds.access_key_id, creds.access_key_secret, creds.security_token) == ("id", "secret", "CAIStoken")


def test_names_are_matched_without_regard_to_case_and_values_coerced() -> None:
    settings = load_settings({"qcflow_max_attempts": "7", "QCFLOW_HARVEST_GZIP": "true", "QCFLOW_SCA_BASE_ME_AGENT_ID": "3"})
    assert (settings.max_attempts, settings.harvest_gzip, settings.sca_base_me_agent_id) == (7, True, 3)


def test_a_zone_with_daylight_saving_is_refused() -> None:
    with pytest.raises(ConfigError, match="QCFLOW_SCA_TIME_ZONE.*daylight saving"):
        load_settings({"QCFLOW_SCA_TIME_ZONE": "Europe/Berlin"})
    assert load_settings({"QCFLOW_SCA_TIME_ZONE": "Asia/Tokyo"}).sca_time_zone == "Asia/Tokyo"
