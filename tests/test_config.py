from __future__ import annotations

import pytest

from qcflow.config import load_settings
from qcflow.credentials import credentials_from_env, credentials_from_fc_context
from qcflow.errors import ConfigError


def test_defaults_and_overrides_from_environment() -> None:
    settings = load_settings({"QCFLOW_SCA_ENDPOINT": "http://127.0.0.1:8790", "QCFLOW_SCA_BASE_ME_AGENT_ID": "12", "OTHER": "x"})
    assert settings.sca.endpoint == "http://127.0.0.1:8790" and settings.sca.base_me_agent_id == 12
    assert settings.ccc.endpoint == "ccc.cn-shanghai.aliyuncs.com" and settings.sca.time_zone == "Asia/Shanghai"


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"QCFLOW_MAX_ATTEMPTS": "zero"}, "QCFLOW_MAX_ATTEMPTS"),
        ({"QCFLOW_STORE": "s3://x"}, "QCFLOW_STORE"),
        ({"QCFLOW_SCA_TIME_ZONE": "Mars/Base"}, "QCFLOW_SCA_TIME_ZONE"),
        ({"QCFLOW_CONTACT_ID_PATTERN": "job-("}, "QCFLOW_CONTACT_ID_PATTERN"),
        ({"QCFLOW_GET_RESULT_QUOTA": "-1"}, "QCFLOW_GET_RESULT_QUOTA"),
        ({"QCFLOW_PUSH_REMARKS": "not json"}, "QCFLOW_PUSH_REMARKS"),
        ({"QCFLOW_PUSH_CLAIM_TTL_SECONDS": "60"}, "QCFLOW_PUSH_CLAIM_TTL_SECONDS"),
    ],
)
def test_bad_value_names_the_variable(env: dict, variable: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        load_settings(env)


def test_settings_read_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QCFLOW_CCC_INSTANCE_ID", "ccc-prod")
    assert load_settings().ccc.instance_id == "ccc-prod"
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
    assert (settings.http.max_attempts, settings.harvest.gzip, settings.sca.base_me_agent_id) == (7, True, 3)


def test_a_zone_with_daylight_saving_is_refused() -> None:
    with pytest.raises(ConfigError, match="QCFLOW_SCA_TIME_ZONE.*daylight saving"):
        load_settings({"QCFLOW_SCA_TIME_ZONE": "Europe/Berlin"})
    assert load_settings({"QCFLOW_SCA_TIME_ZONE": "Asia/Tokyo"}).sca.time_zone == "Asia/Tokyo"


def test_each_slice_holds_its_variables_and_lists_are_parsed_once() -> None:
    """Components get a slice; comma lists and JSON remarks arrive parsed (validators, not constructors)."""
    settings = load_settings(
        {"QCFLOW_PUSH_RULE_IDS": " 7, 8,,", "QCFLOW_RECORDING_SUFFIXES": ".WAV", "QCFLOW_PUSH_REMARKS": '{"remark2": "x"}'},
        harvest_settle_seconds=5,
        sca_duplicate_call_uuid_codes="A, B",
    )
    assert settings.push.rule_ids == ("7", "8") and settings.push.recording_suffixes == (".wav",)
    assert settings.push.remarks == (("remark2", "x"),) and settings.harvest.settle_seconds == 5
    assert hash(settings), "immutable all the way down"
    assert settings.sca.duplicate_call_uuid_codes == ("A", "B")
    quotas = load_settings({}, get_result_quota=600, get_result_headroom=0.5).quotas
    assert quotas.get_result_rate_per_second == 600 * 0.5 / 60  # the one GetResult quota, not a second rate
    with pytest.raises(TypeError, match="no setting named 'harvest_settle'"):
        load_settings({}, harvest_settle=1)


def test_every_variable_has_a_description_and_a_unique_name() -> None:
    from qcflow.config import SLICES, VARIABLES, Settings

    count = sum(len(model.model_fields) for model in SLICES.values()) + len(Settings.model_fields) - len(SLICES)
    assert len(VARIABLES) == count, "two fields share one variable name"
    for model in [Settings, *SLICES.values()]:
        for name, info in model.model_fields.items():
            assert name in SLICES or info.description, f"{model.__name__}.{name} has no description"


def test_configuration_doc_is_generated_from_the_models() -> None:
    """docs/configuration.md is what scripts/config_doc.py writes from the models: run it after a change."""
    import importlib.util
    from pathlib import Path

    script = Path(__file__).resolve().parent.parent / "scripts" / "config_doc.py"
    spec = importlib.util.spec_from_file_location("config_doc", script)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.TARGET.read_text(encoding="utf-8") == module.render(), "run: python scripts/config_doc.py"


def test_a_removed_variable_is_named_with_its_replacement(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="qcflow.config"):
        settings = load_settings({"QCFLOW_GET_RESULT_RATE_PER_SECOND": "15"})
    assert "QCFLOW_GET_RESULT_RATE_PER_SECOND is no longer read: use QCFLOW_GET_RESULT_QUOTA" in caplog.text
    assert settings.quotas.get_result_rate_per_second == 1000 * 0.97 / 60


def test_a_store_given_as_a_bare_path_gets_the_url_to_write() -> None:
    with pytest.raises(ConfigError, match=r"QCFLOW_STORE: .*must start with oss:// or file: \(a folder\? file:\./data\)"):
        load_settings({"QCFLOW_STORE": "./data"})
    with pytest.raises(ConfigError, match=r"must start with oss:// or file: \(got 's3://x'\)"):
        load_settings({"QCFLOW_STORE": "s3://x"})
