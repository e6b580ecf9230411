"""Secrets from KMS Secrets Manager (issue 25): ``QCFLOW_<SETTING>_KMS_NAME`` instead of the value.

Against the sandbox on loopback, which answers KMS ``GetSecretValue`` (signed ACS3 like every
other call, verified by the sandbox): the value arrives once per instance, both-set and
missing secrets are refused naming the variable, the secret and KMS's code, throttling stays
retryable, and no error or log line holds the value (the suite's leak scan knows it: it
contains ``test-secret``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from qcflow import secrets
from qcflow.config import load_settings
from qcflow.credentials import Credentials
from qcflow.errors import ConfigError, QcflowError
from qcflow.services import build_services
from qcflow.tools.fc_local import context_for
from qcflow.tools.sandbox.options import (
    DEFAULT_ACCESS_KEY_ID,
    DEFAULT_ACCESS_KEY_SECRET,
    FaultOptions,
    SandboxOptions,
)
from qcflow.tools.sandbox.server import SandboxServer
from tests.push.conftest import FC_CREDS, push_world

SECRET_NAME = "qcflow/audio-url-key"
VALUE = "test-secret-from-kms-0123456789"
CREDS = Credentials(DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET, "test-sts-token")


@pytest.fixture(autouse=True)
def fresh_instance() -> Iterator[None]:
    secrets._CACHE.clear()  # each test is a new instance
    yield
    secrets._CACHE.clear()


@pytest.fixture
def kms() -> Iterator[SandboxServer]:
    with SandboxServer(replace(SandboxOptions(), secrets=((SECRET_NAME, VALUE),))) as server:
        yield server


def settings_for(server: SandboxServer, tmp_path: Path, **env: str) -> Any:
    return load_settings(
        {
            "QCFLOW_STORE": f"file:{tmp_path / 'store'}",
            "QCFLOW_SECRETS_KMS_ENDPOINT": server.url,
            "QCFLOW_CALL_DEADLINE_SECONDS": "2",
            "QCFLOW_BACKOFF_INITIAL_SECONDS": "0.01",
            "QCFLOW_THROTTLE_BACKOFF_INITIAL_SECONDS": "0.05",
            "QCFLOW_THROTTLE_BACKOFF_MAX_SECONDS": "0.2",
            **env,
        }
    )


def secret_reads(server: SandboxServer) -> dict[str, int]:
    return {k: v for k, v in server.app.snapshot()["answers"].items() if k.startswith("GetSecretValue")}


async def _build(settings: Any) -> Any:
    services = await build_services(lambda: CREDS, settings)
    await services.aclose()
    return services


def test_the_secret_comes_from_kms_once_per_instance(kms: SandboxServer, tmp_path: Path) -> None:
    settings = settings_for(kms, tmp_path, QCFLOW_AUDIO_URL_ACCESS_KEY_SECRET_KMS_NAME=SECRET_NAME)
    assert settings.push.audio_url_access_key_secret is None
    services = asyncio.run(_build(settings))
    assert services.settings.push.audio_url_access_key_secret.get_secret_value() == VALUE
    assert VALUE not in repr(services.settings)
    asyncio.run(_build(settings))  # the instance builds again (or another app in it): no second read
    assert secret_reads(kms) == {"GetSecretValue 200": 1}


def test_without_a_kms_name_nothing_is_read_nor_imported(kms: SandboxServer, tmp_path: Path) -> None:
    services = asyncio.run(_build(settings_for(kms, tmp_path, QCFLOW_AUDIO_URL_ACCESS_KEY_SECRET="plain")))
    assert services.settings.push.audio_url_access_key_secret.get_secret_value() == "plain"
    assert secret_reads(kms) == {}


def test_the_real_push_function_reads_it_at_its_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    options = replace(SandboxOptions(), task_seconds=0.2, secrets=((SECRET_NAME, VALUE),))
    with push_world(
        tmp_path,
        monkeypatch,
        options,
        QCFLOW_AUDIO_URL_ACCESS_KEY_ID="LTAI-audio-url-signer",
        QCFLOW_AUDIO_URL_ACCESS_KEY_SECRET_KMS_NAME=SECRET_NAME,
    ) as world:
        monkeypatch.setenv("QCFLOW_SECRETS_KMS_ENDPOINT", world.server.url)
        push = world.instance()
        push.initialize(context_for("push", FC_CREDS))
        assert push.app.services().settings.push.audio_url_access_key_secret.get_secret_value() == VALUE
        world.put_recording("ccc/2026/11/20/job-1.mkv")
        assert world.deliver(push, "ccc/2026/11/20/job-1.mkv") == {"records": 1, "submitted": 1}
        assert secret_reads(world.server) == {"GetSecretValue 200": 1}


def test_a_missing_secret_names_the_variable_the_secret_and_the_cause(kms: SandboxServer, tmp_path: Path) -> None:
    settings = settings_for(kms, tmp_path, QCFLOW_AUDIO_URL_ACCESS_KEY_SECRET_KMS_NAME="qcflow/no-such-secret")
    with pytest.raises(ConfigError) as caught:
        asyncio.run(_build(settings))
    text = str(caught.value)
    assert "QCFLOW_AUDIO_URL_ACCESS_KEY_SECRET_KMS_NAME" in text and "'qcflow/no-such-secret'" in text
    assert "Forbidden.ResourceNotFound" in text and "kms:GetSecretValue" in text


def test_the_variable_and_its_kms_name_together_are_refused(kms: SandboxServer, tmp_path: Path) -> None:
    settings = settings_for(
        kms,
        tmp_path,
        QCFLOW_AUDIO_URL_ACCESS_KEY_SECRET="plain",
        QCFLOW_AUDIO_URL_ACCESS_KEY_SECRET_KMS_NAME=SECRET_NAME,
    )
    with pytest.raises(ConfigError, match="both set"):
        asyncio.run(_build(settings))
    assert secret_reads(kms) == {}


def test_a_throttled_kms_stays_retryable_and_names_the_secret(tmp_path: Path) -> None:
    faults = FaultOptions(throttle_rate=1.0, actions=frozenset({"GetSecretValue"}))
    with SandboxServer(replace(SandboxOptions(), secrets=((SECRET_NAME, VALUE),), faults=faults)) as server:
        settings = settings_for(server, tmp_path, QCFLOW_AUDIO_URL_ACCESS_KEY_SECRET_KMS_NAME=SECRET_NAME)
        with pytest.raises(QcflowError) as caught:
            asyncio.run(_build(settings))
    # KMS's own code (HTTP 429 Rejected.Throttling), not the other APIs' Throttling.User: still retryable
    assert caught.value.retryable and caught.value.code == "Rejected.Throttling", caught.value
    assert SECRET_NAME in str(caught.value) and VALUE not in str(caught.value)


def test_an_invalid_value_is_refused_without_showing_it(tmp_path: Path) -> None:
    """The value is validated as the variable would be; the error says why, never what."""
    settings = load_settings({"QCFLOW_STORE": f"file:{tmp_path}"})
    bad = "test-secret-not-a-number"
    with pytest.raises(ConfigError) as caught:
        secrets._with_field(
            settings.push, "audio_url_lifetime_seconds", bad, "audio_url_lifetime_seconds", "qcflow/bad"
        )
    text = str(caught.value)
    assert "'qcflow/bad'" in text and "QCFLOW_AUDIO_URL_LIFETIME_SECONDS" in text and "integer" in text
    assert bad not in text


def test_the_sandbox_answers_getsecretvalue_as_kms_does(kms: SandboxServer) -> None:
    from qcflow.acs.client import AcsClient

    async def call(name: str) -> Any:
        async with AcsClient(endpoint=kms.url, version=secrets.KMS_VERSION, credentials=lambda: CREDS) as acs:
            return (await acs.call("GetSecretValue", {"SecretName": name})).body

    body = asyncio.run(call(SECRET_NAME))
    assert body["SecretName"] == SECRET_NAME and body["SecretData"] == VALUE and body["SecretDataType"] == "text"
    assert json.dumps(body).count(VALUE) == 1


def test_the_callback_token_can_come_from_kms_too(kms: SandboxServer, tmp_path: Path) -> None:
    # push and callback read the token through services.settings: the secret fills it like any other
    services = asyncio.run(_build(settings_for(kms, tmp_path, QCFLOW_CALLBACK_TOKEN_KMS_NAME=SECRET_NAME)))
    assert services.settings.callback.token.get_secret_value() == VALUE
    assert secret_reads(kms) == {"GetSecretValue 200": 1}
