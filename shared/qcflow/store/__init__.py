"""Where qcflow keeps state (``state/``: ledger, checkpoint, leases) and results (``results/``).

``open_store(url)`` picks the adapter from the store URL (``QCFLOW_STORE``):

- ``oss://bucket/prefix`` — OSS through the official SDK V2 (``qcflow.store.oss``);
- ``file:///abs/path`` or ``file:relative/path`` — a local directory (``qcflow.store.local``).

Importing this package stays cheap on a cold start: the OSS SDK (and pydantic settings) are
imported only when an ``oss://`` store is opened.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from qcflow.errors import ConfigError
from qcflow.store.base import (
    DEFAULT_CONTENT_TYPE,
    DEFAULT_PART_SIZE,
    ObjectInfo,
    ObjectStore,
    ObjectWriter,
    StoredObject,
    WriterFailedError,
)
from qcflow.store.keys import (
    InvalidKeyError,
    InvalidMetadataError,
    validate_key,
    validate_prefix,
)
from qcflow.store.local import LocalStore

if TYPE_CHECKING:
    from qcflow.config import Settings
    from qcflow.credentials import Credentials, CredentialsProvider

__all__ = [
    "DEFAULT_CONTENT_TYPE",
    "DEFAULT_PART_SIZE",
    "InvalidKeyError",
    "InvalidMetadataError",
    "LocalStore",
    "ObjectInfo",
    "ObjectStore",
    "ObjectWriter",
    "StoredObject",
    "WriterFailedError",
    "open_store",
    "parse_store_url",
    "validate_key",
    "validate_prefix",
]  # not OssStore: ``import *`` must not import the OSS SDK (it stays a lazy attribute)

ENV_STORE = "QCFLOW_STORE"
# OSS bucket names: 3-63 of lower-case letters, digits and hyphens, alphanumeric at both ends.
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")


def __getattr__(name: str) -> Any:  # lazy: ``from qcflow.store import OssStore`` imports the SDK
    if name == "OssStore":
        from qcflow.store.oss import OssStore

        return OssStore
    raise AttributeError(name)


def parse_store_url(url: str) -> tuple[str, str, str]:
    """Split a store URL into ``("oss", bucket, prefix)`` or ``("file", path, "")``.

    Errors are ``ConfigError`` naming ``QCFLOW_STORE``, since that is where the URL comes from.
    """
    if not isinstance(url, str) or not url.strip():
        raise ConfigError(f"{ENV_STORE} is empty: use oss://bucket/prefix or file:///path")
    url = url.strip()
    if url.startswith("oss://"):
        rest = url[len("oss://") :]
        bucket, _, prefix = rest.partition("/")
        if not _BUCKET.match(bucket):
            raise ConfigError(f"{ENV_STORE}={url!r}: {bucket!r} is not a valid OSS bucket name")
        prefix = prefix.rstrip("/")
        try:
            validate_prefix(prefix)
        except InvalidKeyError as exc:
            raise ConfigError(f"{ENV_STORE}={url!r}: bad prefix: {exc.message}") from None
        return "oss", bucket, prefix
    if url.startswith("file:"):
        parts = urlsplit(url)
        if parts.query or parts.fragment:
            raise ConfigError(f"{ENV_STORE}={url!r}: a file: store URL takes no query or fragment")
        if url.startswith("file://"):
            if parts.netloc not in ("", "localhost"):
                raise ConfigError(f"{ENV_STORE}={url!r}: file:// URLs must be local (file:///abs/path)")
            path = unquote(parts.path)
            if not path.startswith("/"):
                raise ConfigError(f"{ENV_STORE}={url!r}: file:// needs an absolute path (file:///abs/path)")
        else:
            path = unquote(url[len("file:") :])
            if not path:
                raise ConfigError(f"{ENV_STORE}={url!r}: no path after file:")
        return "file", path, ""
    scheme = url.split(":", 1)[0] if ":" in url else url
    raise ConfigError(f"{ENV_STORE}={url!r}: unsupported scheme {scheme!r}; use oss://bucket/prefix or file:///path")


def open_store(
    url: str,
    *,
    settings: Settings | None = None,
    credentials: Credentials | CredentialsProvider | None = None,
) -> ObjectStore:
    """Open the store a URL names.

    For ``oss://`` the region, endpoint (``oss_endpoint``, or the internal endpoint when
    ``oss_internal``), timeouts, retry policy and ``store_allow_unverified_versioning`` come
    from ``settings`` (default: read from the environment); credentials from ``credentials``
    (a ``Credentials``, or a provider
    called on every request) or, when omitted, from ``ALIBABA_CLOUD_*`` at each request.
    A relative ``file:`` path is resolved against the current directory now.
    """
    kind, where, prefix = parse_store_url(url)
    if kind == "file":
        return LocalStore(Path(where).expanduser().absolute(), url=url)
    from qcflow.store.oss import OssStore  # the SDK only for an oss:// store

    if settings is None:
        from qcflow.config import load_settings

        settings = load_settings()
    return OssStore.from_settings(where, prefix, settings, credentials, url=url)
