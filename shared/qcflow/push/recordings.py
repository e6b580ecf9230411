"""Which objects are recordings to push, and what each one is.

A recording is known by its ``location`` (the ledger's identity: comparable across stores), the
key and ETag of its object in the recordings store, and its ContactId (the metadata header
``QCFLOW_CONTACT_ID_METADATA`` first, else ``QCFLOW_CONTACT_ID_PATTERN`` in the key). Objects under
the store's own ``state/``/``results/`` (no recursive triggers), outside ``QCFLOW_RECORDING_PREFIX``
or without an audio suffix are not recordings: they are ignored, with a log line.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import unquote, unquote_plus

from qcflow import layout
from qcflow.config import PushSettings
from qcflow.errors import ConfigError, InvalidKeyError, NotFoundError, RequestError, RetryableError
from qcflow.ledger import call_uuid_for
from qcflow.push.results import PushResult, error_result, ignored, log_fields
from qcflow.store import ObjectStore, parse_store_url

log = logging.getLogger("qcflow.push")

#: The ledger location of a recording pushed by ContactId (``qcflow push --contact-id``).
CONTACT_LOCATION = "ccc:contact/"
_T = TypeVar("_T")


@dataclass(frozen=True)
class Recording:
    """One recording to push: where it lives (``location``, the ledger's identity) and what
    the object says (key in the recordings store, ETag, ContactId)."""

    location: str
    key: str | None
    etag: str | None
    contact_id: str | None

    @property
    def file_name(self) -> str:
        """Sent as ``fileName``: GetResult's ``Recording.Name`` then maps back to the object."""
        return self.key or self.contact_id or self.location

    @property
    def call_uuid(self) -> str:
        return call_uuid_for(self.location, self.etag)


def object_location(store_url: str, key: str) -> str:
    """A location comparable across stores: ``oss://bucket/full/key`` or ``file:/abs/path/key``."""
    kind, where, prefix = parse_store_url(store_url)
    if kind == "oss":
        return f"oss://{where}/{prefix + '/' if prefix else ''}{key}"
    from pathlib import Path

    return f"file:{Path(where).expanduser().absolute().as_posix().rstrip('/')}/{key}"


class RecordingFinder:
    """Finds the recordings to push in the recordings store: filters objects, resolves an event's
    key to a ``Recording``, lists a prefix. Reads only (``head`` and ``list``)."""

    def __init__(self, settings: PushSettings, recordings: ObjectStore | None, *, store_url: str) -> None:
        self.settings = settings
        self.recordings = recordings
        self._pattern = re.compile(settings.contact_id_pattern)
        self._suffixes = settings.recording_suffixes
        self._own_prefixes = tuple(object_location(store_url, p) for p in layout.TREES)

    def why_ignored(self, location: str, key: str) -> str | None:
        """The reason ``key`` is not a recording to push, or None."""
        if location.startswith(self._own_prefixes):
            return "object under the store's own state/, results/ or reviews/ prefix (no recursive triggers)"
        if not key.startswith(self.settings.recording_prefix):
            return f"key outside QCFLOW_RECORDING_PREFIX={self.settings.recording_prefix!r}"
        if self._suffixes and not key.lower().endswith(self._suffixes):
            return f"not an audio suffix ({', '.join(self._suffixes)})"
        return None

    def contact_id_for(self, key: str, metadata: dict[str, str] | None) -> str | None:
        """The ContactId: the metadata header first, else the first match of the pattern in the key."""
        header = (metadata or {}).get(self.settings.contact_id_metadata.lower())
        if header and header.strip():
            return header.strip()
        match = self._pattern.search(key)
        if not match:
            return None
        return match.groupdict().get("contact") or match.group(0)

    def _store(self) -> ObjectStore:
        if self.recordings is None:
            raise ConfigError("no recordings store: set QCFLOW_RECORDINGS_URL")
        return self.recordings

    async def resolve(self, key: str) -> Recording | PushResult:
        """The recording behind an event's key: filtered, ``head``-ed (raw key, then decoded), ContactId found."""
        recordings = self._store()
        candidates = [key]
        for decoded in (unquote_plus(key), unquote(key)):
            if decoded not in candidates:
                candidates.append(decoded)
        first_location = object_location(recordings.url, key)
        reason = self.why_ignored(first_location, key)
        if reason:
            return ignored(first_location, key, reason)
        for candidate in candidates:
            location = object_location(recordings.url, candidate)
            try:
                info = await asyncio.to_thread(recordings.head, candidate)
            except NotFoundError:
                continue
            except (InvalidKeyError, RequestError) as exc:  # e.g. a segment too long for a local folder
                return ignored(location, candidate, f"not a valid object key: {exc.message}")
            except RetryableError as exc:
                return error_result("retry", exc, location=location, key=candidate, contact_id=None)
            if candidate != key:
                reason = self.why_ignored(location, candidate)
                if reason:
                    return ignored(location, candidate, reason)
                log.info("key %r found URL-decoded as %r", key, candidate, extra={"event": "push_key_decoded"})
            contact_id = self.contact_id_for(candidate, dict(info.metadata))
            return Recording(location, candidate, info.etag.strip('"') or None, contact_id)
        result = PushResult(
            "failed",
            first_location,
            key,
            code="ObjectNotFound",
            message=f"no object {key!r} in {recordings.url} (nor its URL-decoded form)",
        )
        log.error("push: %s", result.message, extra=log_fields(result, event="push_outcome"))
        return result

    async def under(self, prefix: str) -> AsyncIterator[Recording | PushResult]:
        """Every recording under ``prefix`` of the recordings store (listed lazily)."""
        recordings = self._store()
        listing = iter(recordings.list(prefix))
        while True:
            chunk = await asyncio.to_thread(_take, listing, 200)
            if not chunk:
                return
            for info in chunk:
                location = object_location(recordings.url, info.key)
                reason = self.why_ignored(location, info.key)
                if reason:
                    yield PushResult("ignored", location, info.key, message=reason)
                    continue
                metadata: dict[str, str] | None = None
                if self._pattern.search(info.key) is None:  # the listing has no metadata: head only when needed
                    metadata = dict((await asyncio.to_thread(recordings.head, info.key)).metadata)
                yield Recording(
                    location, info.key, info.etag.strip('"') or None, self.contact_id_for(info.key, metadata)
                )

    @staticmethod
    def for_contact(contact_id: str) -> Recording:
        """A recording known only by its ContactId (``qcflow push --contact-id``): CCC's URL is sent."""
        return Recording(f"{CONTACT_LOCATION}{contact_id}", None, None, contact_id)


def _take(iterator: Iterator[_T], n: int) -> list[_T]:
    out = []
    for item in iterator:
        out.append(item)
        if len(out) >= n:
            break
    return out
