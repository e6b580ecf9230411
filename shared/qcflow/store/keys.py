"""Object keys: one validation for every adapter, so a key means the same thing everywhere.

Keys are relative to the store's prefix (``state/ledger/job-1.json``). The same rules apply
to the local filesystem and to OSS, so a key that works in a laptop demo works in the cloud
and a key can never escape the store's root (``..``), name a different file than intended
(``a//b``, ``a/./b``, ``a\\b``) or smuggle control characters into a path or an HTTP request.
"""

from __future__ import annotations

import re

from qcflow.errors import InvalidKeyError, InvalidMetadataError

#: OSS allows object names of 1..1023 UTF-8 bytes; the store's prefix counts too.
MAX_KEY_BYTES = 1023

#: Segments starting with this are the local store's own bookkeeping (temp files, metadata
#: sidecars). They are refused on every adapter so that both accept exactly the same keys.
RESERVED_SEGMENT_PREFIX = ".qcflow"

# C0 controls, DEL and C1 controls: never part of a file name or a header value we send.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_META_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
_META_VALUE = re.compile(r"^[\x20-\x7e]{0,1024}$")


def _check_encodable(text: str, what: str) -> None:
    """A lone surrogate (``"a\\ud800"``, e.g. from an undecodable file name) has no UTF-8
    form: neither a file name nor an OSS object name can carry it."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidKeyError(f"{what} {text!r} is not valid Unicode (it contains a lone surrogate)") from None


def _check_segments(text: str, what: str, *, allow_trailing_slash: bool) -> None:
    _check_encodable(text, what)
    if text.startswith("/"):
        raise InvalidKeyError(f"{what} {text!r} is absolute: keys are relative to the store's prefix")
    if "\\" in text:
        raise InvalidKeyError(f"{what} {text!r} contains a backslash")
    if _CONTROL.search(text):
        raise InvalidKeyError(f"{what} {text!r} contains a control character")
    body = text[:-1] if allow_trailing_slash and text.endswith("/") else text
    for segment in body.split("/"):
        if segment == "":
            raise InvalidKeyError(f"{what} {text!r} has an empty path segment")
        if segment in (".", ".."):
            raise InvalidKeyError(f"{what} {text!r} has a {segment!r} segment")
        if segment.startswith(RESERVED_SEGMENT_PREFIX):
            raise InvalidKeyError(f"{what} {text!r}: segments starting with {RESERVED_SEGMENT_PREFIX!r} are reserved")


def validate_key(key: str) -> str:
    """Return ``key`` unchanged if it is a valid object key, else raise ``InvalidKeyError``.

    Rules: a non-empty ``str``; no leading ``/``; no backslash; no control character; no
    empty, ``.`` or ``..`` segment (so no trailing ``/`` either); no reserved segment; valid
    Unicode (no lone surrogate); at most 1023 UTF-8 bytes. Spaces, ``+``, ``%`` and any
    other Unicode are allowed — the adapters encode them (the OSS SDK URL-encodes keys).
    """
    if not isinstance(key, str) or key == "":
        raise InvalidKeyError(f"key must be a non-empty string, got {key!r}")
    _check_segments(key, "key", allow_trailing_slash=False)
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        raise InvalidKeyError(f"key {key[:40]!r}… is longer than {MAX_KEY_BYTES} UTF-8 bytes")
    return key


def validate_prefix(prefix: str) -> str:
    """Validate a listing prefix (or a store's root prefix): like a key, but may be empty,
    may end with ``/`` (``state/``) and may end mid-segment (``results/dt=2024-``)."""
    if not isinstance(prefix, str):
        raise InvalidKeyError(f"prefix must be a string, got {prefix!r}")
    if prefix == "":
        return prefix
    _check_segments(prefix, "prefix", allow_trailing_slash=True)
    if len(prefix.encode("utf-8")) > MAX_KEY_BYTES:
        raise InvalidKeyError(f"prefix {prefix[:40]!r}… is longer than {MAX_KEY_BYTES} UTF-8 bytes")
    return prefix


def join_key(root_prefix: str, key: str) -> str:
    """The full object name for ``key`` under the store's ``root_prefix`` (``""`` or ``a/b``).

    ``key`` must already be validated: with no ``..`` segments and no leading ``/`` the
    result always lies under ``root_prefix``.
    """
    full = f"{root_prefix}/{key}" if root_prefix else key
    if len(full.encode("utf-8")) > MAX_KEY_BYTES:
        raise InvalidKeyError(f"key {key[:40]!r}… is longer than {MAX_KEY_BYTES} UTF-8 bytes with the store's prefix")
    return full


def validate_metadata(metadata: dict[str, str] | None) -> dict[str, str]:
    """Check user metadata so that it round-trips identically on every adapter.

    OSS carries it as ``x-oss-meta-<name>`` headers and lower-cases the names, so names must
    be lower-case ``[a-z0-9-]`` (at most 64) and values printable ASCII (at most 1024
    characters; encode anything else yourself, e.g. as JSON with ``ensure_ascii``) without
    leading or trailing spaces: HTTP trims those (or ``requests`` refuses the header), so
    they would not round-trip.
    """
    if not metadata:
        return {}
    out: dict[str, str] = {}
    for name, value in metadata.items():
        if not isinstance(name, str) or not _META_NAME.match(name):
            raise InvalidMetadataError(f"metadata name {name!r} must match [a-z0-9][a-z0-9-]{{0,63}}")
        if name.startswith("qcflow-"):
            raise InvalidMetadataError(f"metadata name {name!r}: names starting with 'qcflow-' are reserved")
        if not isinstance(value, str) or not _META_VALUE.match(value):
            raise InvalidMetadataError(f"metadata {name!r} must be printable ASCII, at most 1024 characters")
        if value != value.strip(" "):
            raise InvalidMetadataError(f"metadata {name!r} must not start or end with a space")
        out[name] = value
    return out


def validate_content_type(content_type: str) -> str:
    """A content type is sent as a header: non-empty printable ASCII without leading or
    trailing spaces (which HTTP would trim or ``requests`` refuse)."""
    if (
        not isinstance(content_type, str)
        or not content_type
        or not _META_VALUE.match(content_type)
        or content_type != content_type.strip(" ")
    ):
        raise InvalidMetadataError(
            f"content type {content_type!r} must be non-empty printable ASCII without leading or trailing spaces"
        )
    return content_type


#: A caller-chosen create-if-absent token travels as metadata: visible ASCII, no spaces.
_CLAIM_TOKEN = re.compile(r"^[\x21-\x7e]{1,256}$")


def validate_claim_token(token: str | None) -> str | None:
    """``create_if_absent``'s ``claim_token``: ``None``, or 1..256 visible ASCII characters
    (it is stored as metadata and compared byte for byte)."""
    if token is not None and (not isinstance(token, str) or not _CLAIM_TOKEN.match(token)):
        raise InvalidMetadataError(f"claim_token {token!r} must be 1..256 visible ASCII characters (no spaces)")
    return token
