"""ACS3-HMAC-SHA256 request signing, as the official Alibaba Cloud SDKs (tea-openapi) do it.

Pure functions, no I/O: the client uses them to sign, the sandbox to verify. The canonical
form follows ``alibabacloud_tea_openapi.utils.Utils.get_authorization`` exactly — query
values percent-encoded with only ``~`` left bare (so ``*`` → ``%2A``, space → ``%20``,
``/`` → ``%2F``), keys sorted, every header present signed (lower-cased, trimmed, sorted),
and the payload's hex SHA-256 last. Tests prove byte equality against the official SDK.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from urllib.parse import quote

ALGORITHM = "ACS3-HMAC-SHA256"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def percent_encode(value: str) -> str:
    """RFC 3986 encoding as ACS3 wants it: everything but unreserved characters escaped."""
    return quote(value, safe="~", encoding="utf-8")


def canonical_query(query: Mapping[str, str]) -> str:
    """Sorted ``key=value`` pairs joined by ``&``; values encoded, ``None`` values dropped.

    Keys are left as they are, like the official SDK does (API parameter names are ASCII).
    """
    return "&".join(
        f"{key}={percent_encode(query[key])}" for key in sorted(k for k, v in query.items() if v is not None)
    )


def canonical_headers(headers: Mapping[str, str]) -> tuple[str, str]:
    """The canonical header block and the ``SignedHeaders`` list for the given headers."""
    lowered: dict[str, str] = {}
    for name, value in headers.items():
        if value is None:
            continue
        lowered[name.lower()] = str(value).strip()
    names = sorted(lowered)
    block = "".join(f"{name}:{lowered[name]}\n" for name in names)
    return block, ";".join(names)


def canonical_request(
    method: str, path: str, query: Mapping[str, str], headers: Mapping[str, str], payload_hash: str
) -> tuple[str, str]:
    """The canonical request text and the signed-header list it covers."""
    block, signed = canonical_headers(headers)
    text = f"{method.upper()}\n{path or '/'}\n{canonical_query(query)}\n{block}\n{signed}\n{payload_hash}"
    return text, signed


def signature(secret: str, canonical: str) -> str:
    """Hex HMAC-SHA256 of the string to sign built from a canonical request."""
    string_to_sign = f"{ALGORITHM}\n{hashlib.sha256(canonical.encode('utf-8')).hexdigest()}"
    return hmac.new(secret.encode("utf-8"), string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()


def authorization(
    access_key_id: str,
    access_key_secret: str,
    method: str,
    path: str,
    query: Mapping[str, str],
    headers: Mapping[str, str],
    payload_hash: str,
) -> str:
    """The ``Authorization`` header value for a request whose headers are all to be signed."""
    canonical, signed = canonical_request(method, path, query, headers, payload_hash)
    sig = signature(access_key_secret, canonical)
    return f"{ALGORITHM} Credential={access_key_id},SignedHeaders={signed},Signature={sig}"


def acs_timestamp(now: datetime | None = None) -> str:
    """``x-acs-date``: UTC, second precision, ``YYYY-MM-DDTHH:MM:SSZ``."""
    moment = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def new_nonce() -> str:
    """``x-acs-signature-nonce``: unique per request (the service rejects a reused nonce)."""
    return secrets.token_hex(16)


@dataclass(frozen=True)
class ParsedAuthorization:
    """The three parts of an ``Authorization: ACS3-HMAC-SHA256 …`` header."""

    access_key_id: str
    signed_headers: tuple[str, ...]
    signature: str


def parse_authorization(value: str) -> ParsedAuthorization:
    """Split an ACS3 ``Authorization`` header; ``ValueError`` names what is malformed."""
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise ValueError(f"unsupported signature algorithm {algorithm!r}")
    parts: dict[str, str] = {}
    for item in rest.split(","):
        name, sep, part = item.strip().partition("=")
        if not sep:
            raise ValueError(f"malformed Authorization element {item.strip()!r}")
        parts[name] = part
    missing = {"Credential", "SignedHeaders", "Signature"} - parts.keys()
    if missing:
        raise ValueError(f"Authorization lacks {', '.join(sorted(missing))}")
    signed = tuple(name for name in parts["SignedHeaders"].split(";") if name)
    return ParsedAuthorization(parts["Credential"], signed, parts["Signature"])
