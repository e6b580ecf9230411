"""Settings whose values live in KMS Secrets Manager, read once per instance at its start.

FC 3.0's function configuration (fc3's schema) has no secret mechanism of its own: an
environment variable is visible to anyone who may read the function's configuration. So a
secret setting (``QCFLOW_AUDIO_URL_ACCESS_KEY_SECRET``, …) may instead be *named*:
``QCFLOW_<SETTING>_KMS_NAME=<secret name>`` (``qcflow.config.SecretsSettings``). When the
instance builds its clients, each named secret is read with KMS ``GetSecretValue`` (RPC,
version 2016-01-20), signed like every other ACS call with the function role's STS
credentials; the role may read that one secret (``infra/``: ``kms:GetSecretValue`` on
``acs:kms:<region>:<account>:secret/<name>``). The value is kept for the instance's life
(module state is instance state): a rotated secret reaches new instances, not warm ones.

Errors name the setting, the secret and the cause (KMS's code), never the value. A denied
or missing secret is a ``ConfigError`` (the deployment must change); throttling or an
unavailable KMS stays retryable, so FC's retry (or the next timer tick) tries again.

Runtime module (the layer): stdlib, ``qcflow.acs`` and ``qcflow.config`` only, imported by
``qcflow.services`` only when a ``_KMS_NAME`` is set.
"""

from __future__ import annotations

import binascii
import logging
from collections.abc import Mapping
from typing import Any

import httpx

from qcflow.acs.client import client_from_settings
from qcflow.config import VARIABLES, Settings, env_name
from qcflow.credentials import CredentialsProvider
from qcflow.errors import ConfigError, QcflowError

KMS_VERSION = "2016-01-20"

log = logging.getLogger("qcflow.secrets")

#: (endpoint, secret name) → value, for the life of the instance.
_CACHE: dict[tuple[str, str], str] = {}


def kms_endpoint(settings: Settings) -> str:
    """``QCFLOW_SECRETS_KMS_ENDPOINT``, or the public KMS endpoint of ``QCFLOW_REGION``."""
    return settings.secrets.kms_endpoint or f"kms.{settings.store.region}.aliyuncs.com"


def _kms_name_variable(setting: str) -> str:
    """``QCFLOW_<SETTING>_KMS_NAME``: the variable naming the secret that holds ``setting``."""
    return f"{env_name(setting)}_KMS_NAME"


async def read_secret(
    name: str,
    *,
    setting: str,
    settings: Settings,
    credentials: CredentialsProvider,
    http: httpx.AsyncClient | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> str:
    """The text of KMS secret ``name`` (its ACSCurrent version), cached per instance."""
    endpoint = kms_endpoint(settings)
    cached = _CACHE.get((endpoint, name))
    if cached is not None:
        return cached
    where = f"{_kms_name_variable(setting)}: KMS secret {name!r} at {endpoint}"
    acs = client_from_settings(
        settings.http, endpoint=endpoint, version=KMS_VERSION, credentials=credentials, http=http, transport=transport
    )
    try:
        response = await acs.call("GetSecretValue", {"SecretName": name}, is_success=_has_secret_data)
    except QcflowError as exc:
        if exc.retryable:  # throttled, unavailable: the same error (FC's retry), the secret named
            exc.message = f"{where} could not be read yet: {exc.message}"
            exc.args = (exc.message,)
            raise
        raise ConfigError(
            f"{where} could not be read ({exc}); the function's role needs kms:GetSecretValue on it", code=exc.code
        ) from None
    finally:
        if http is None:
            await acs.aclose()
    value = _secret_text(response.body, where)
    _CACHE[(endpoint, name)] = value
    log.info("read %s from KMS", env_name(setting), extra={"event": "secret_read", "secret": name})
    return value


def _has_secret_data(body: Mapping[str, Any]) -> bool:
    return isinstance(body.get("SecretData"), str)


def _secret_text(body: Mapping[str, Any], where: str) -> str:
    data = body["SecretData"]
    if str(body.get("SecretDataType") or "text").lower() == "binary":
        try:
            data = binascii.a2b_base64(data).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise ConfigError(f"{where} is a binary secret that is not UTF-8 text") from None
    value = data.strip()
    if not value:
        raise ConfigError(f"{where} is empty")
    return value


async def resolve_secrets(
    settings: Settings,
    credentials: CredentialsProvider,
    *,
    http: httpx.AsyncClient | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Settings:
    """``settings`` with every setting named by a ``*_KMS_NAME`` filled from KMS (unchanged if none)."""
    names = settings.secrets.kms_names()
    for setting, secret in names.items():
        slice_name, field = VARIABLES[setting]
        assert slice_name is not None, setting
        part = getattr(settings, slice_name)
        if getattr(part, field) is not None:
            raise ConfigError(
                f"{env_name(setting)} and {_kms_name_variable(setting)} are both set: keep one (the KMS secret)"
            )
        value = await read_secret(
            secret, setting=setting, settings=settings, credentials=credentials, http=http, transport=transport
        )
        settings = settings.model_copy(update={slice_name: _with_field(part, field, value, setting, secret)})
    return settings


def _with_field(part: Any, field: str, value: str, setting: str, secret: str) -> Any:
    """``part`` (a settings slice) with ``field`` set to ``value``, validated as the variable would be."""
    try:
        checked = type(part).model_validate({field: value})
    except ValueError as exc:
        problems = "; ".join(str(e.get("msg")) for e in getattr(exc, "errors", lambda: [])()) or type(exc).__name__
        raise ConfigError(
            f"{_kms_name_variable(setting)}: the value of KMS secret {secret!r} is not a valid "
            f"{env_name(setting)}: {problems.replace(value, '***')}"
        ) from None
    return part.model_copy(update={field: getattr(checked, field)})
