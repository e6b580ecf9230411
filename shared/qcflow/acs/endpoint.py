"""API endpoints as configured: a bare host (HTTPS) or a URL with scheme (the sandbox)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from qcflow.errors import ConfigError


@dataclass(frozen=True)
class Endpoint:
    """Where an API lives. ``host`` keeps the port when one is given: it is signed as such."""

    scheme: str
    host: str

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://{self.host}"


def parse_endpoint(value: str, *, setting: str = "endpoint") -> Endpoint:
    """``ccc.cn-shanghai.aliyuncs.com`` → https; ``http://127.0.0.1:8790`` → as given."""
    text = value.strip().rstrip("/")
    if not text:
        raise ConfigError(f"{setting}: empty endpoint")
    if "://" not in text:
        text = "https://" + text
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/") or parts.query:
        raise ConfigError(f"{setting}: {value!r} is not a host or an http(s) URL without a path")
    return Endpoint(parts.scheme, parts.netloc)
