"""Alibaba Cloud credentials: from the standard environment variables or the FC context.

Function Compute hands a function STS credentials of its role; they expire, so callers ask
a provider for them on every request instead of caching them beyond one invocation.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from qcflow.errors import ConfigError

ENV_ACCESS_KEY_ID = "ALIBABA_CLOUD_ACCESS_KEY_ID"
ENV_ACCESS_KEY_SECRET = "ALIBABA_CLOUD_ACCESS_KEY_SECRET"
ENV_SECURITY_TOKEN = "ALIBABA_CLOUD_SECURITY_TOKEN"


@dataclass(frozen=True)
class Credentials:
    """An access key pair, with the STS token when the pair is temporary."""

    access_key_id: str
    access_key_secret: str
    security_token: str | None = None

    def __post_init__(self) -> None:
        # Values end up in HTTP headers: refuse what would break a request (and then leak
        # into an HTTP library's error text), naming the field, never the value.
        for name in ("access_key_id", "access_key_secret", "security_token"):
            value = getattr(self, name)
            if value is None:
                continue
            if not value or not value.isascii() or not value.isprintable() or value != value.strip():
                raise ConfigError(f"credentials: {name} is empty or holds spaces, control or non-ASCII characters")

    def __repr__(self) -> str:  # never print the secret or the token
        token = ", security_token=***" if self.security_token else ""
        return f"Credentials(access_key_id={self.access_key_id!r}, access_key_secret=***{token})"

    @property
    def provider_name(self) -> str:
        """The name the official SDK sends in ``x-acs-credentials-provider``."""
        return "static_sts" if self.security_token else "static_ak"


CredentialsProvider = Callable[[], Credentials]


def credentials_from_env(environ: Mapping[str, str] | None = None) -> Credentials:
    """Read the standard ``ALIBABA_CLOUD_*`` variables; a missing one is named in the error."""
    env = os.environ if environ is None else environ
    key_id = env.get(ENV_ACCESS_KEY_ID, "").strip()
    secret = env.get(ENV_ACCESS_KEY_SECRET, "").strip()
    token = env.get(ENV_SECURITY_TOKEN, "").strip() or None
    missing = [name for name, value in ((ENV_ACCESS_KEY_ID, key_id), (ENV_ACCESS_KEY_SECRET, secret)) if not value]
    if missing:
        raise ConfigError(f"{' and '.join(missing)} not set: Alibaba Cloud credentials are required")
    return Credentials(key_id, secret, token)


def credentials_from_fc_context(context: Any, environ: Mapping[str, str] | None = None) -> Credentials:
    """Credentials of the function's role.

    python3.9/3.10 runtimes put them on ``context.credentials``; python3.12 has no
    ``credentials`` attribute and sets the ``ALIBABA_CLOUD_*`` variables instead.
    """
    fc_creds = getattr(context, "credentials", None)
    key_id = getattr(fc_creds, "access_key_id", None) or getattr(fc_creds, "accessKeyId", None)
    if fc_creds is not None and key_id:
        secret = getattr(fc_creds, "access_key_secret", None) or getattr(fc_creds, "accessKeySecret", None)
        token = getattr(fc_creds, "security_token", None) or getattr(fc_creds, "securityToken", None)
        if not secret:
            raise ConfigError("FC context credentials carry no access_key_secret")
        return Credentials(str(key_id).strip(), str(secret).strip(), str(token).strip() if token else None)
    return credentials_from_env(environ)
