"""Immutable JSON records on an ``ObjectStore``: written once, read back, named by sequence.

Why write-once: conditional overwrite (``If-Match``) on OSS is unconfirmed while
``x-oss-forbid-overwrite`` is documented, so the push ledger and the harvest state are built
on ``create_if_absent`` alone. A value that changes over time is a *sequence* of immutable
records (``seq_name``), its current value the last one listed; a record is never rewritten.

Writing once (``write_once``): of racing writers exactly one gets True. A create whose answer
was lost may have landed; retried with the same *claim token* it is recognised as the
writer's own (True), while a record stored by anyone else (another token) is False. So the
token must be unique to the writer and stable across its retries: an invocation id, a run
id, or the content's hash (``content_token``) where identical content may count as one's own.
How many attempts a writer makes is its caller's policy, stated at each call.

Reading (``read``) is strict by default: these objects are written whole by qcflow only, so
a body that is not a JSON object is refused (tampering must not pass). ``strict=False`` is
the push ledger's older reading, kept as it was: any JSON value, ``ValueError`` if the body
does not parse.

Key segments (``key_segment``): ids become one key segment by percent-encoding, reversibly
(``segment_value``), so a listing alone names the ids. ``lookup_segment`` bounds the length
for ids that are only looked up by value, never decoded from a key.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any
from urllib.parse import quote, unquote

from qcflow.errors import NotFoundError, RequestError, RetryableError
from qcflow.store import ObjectStore
from qcflow.store.keys import RESERVED_SEGMENT_PREFIX

JSON = "application/json"
#: Lost races before giving up (another writer keeps winning: something is wrong).
MAX_RACES = 50
#: Attempts of a create whose answer may have been lost (same claim token), by default.
CREATE_ATTEMPTS = 3
#: Digits of a sequence number in a record's name (zero-padded: listings sort by number).
SEQ_DIGITS = 12
#: Longest ``lookup_segment``; a longer id is named by its hash.
MAX_LOOKUP_SEGMENT = 200


def dumps(value: Any) -> bytes:
    """The stored form: compact, keys sorted (the same value always gives the same bytes)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode("utf-8")


def content_token(value: Any) -> str:
    """A claim token that is the record's content: a retry of the same write is one's own,
    a different record (another writer, a bug) is not."""
    return hashlib.sha256(dumps(value)).hexdigest()


# ----------------------------------------------------------------------------- writing


def write_once(store: ObjectStore, key: str, value: Any, *, token: str | None, attempts: int = CREATE_ATTEMPTS) -> bool:
    """Create the record at ``key`` if absent: True if it is this writer's (created now, or by
    an earlier attempt with the same ``token``), False if someone else's is there.

    A ``RetryableError`` is retried up to ``attempts`` times in all, with the same token, so
    a create that landed although its answer was lost counts as ours. ``attempts=1`` leaves
    the retry to the caller (who must come back with the same token). ``token=None`` means a
    fresh random token per call: only for records where "already there" is as good as "mine".
    """
    data = dumps(value)
    for attempt in range(attempts):
        try:
            return store.create_if_absent(key, data, content_type=JSON, claim_token=token)
        except RetryableError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


def mark(store: ObjectStore, key: str) -> bool:
    """Create an empty marker (its name is its content) if absent, in one attempt."""
    return store.create_if_absent(key, b"", content_type=JSON)


# ----------------------------------------------------------------------------- reading


def read(store: ObjectStore, key: str, *, strict: bool = True) -> dict[str, Any] | None:
    """The record at ``key``, or ``None`` if absent.

    ``strict``: a body that is not a JSON object raises ``RequestError``. ``strict=False``:
    the parsed body as it is (any JSON value), ``ValueError`` if it does not parse.
    """
    try:
        body = store.get(key).body
    except NotFoundError:
        return None
    if not strict:
        lenient: dict[str, Any] | None = json.loads(body)  # typed as callers use it; not checked
        return lenient
    try:
        value = json.loads(body)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise RequestError(f"state object {key!r} in {store.url} is not a JSON object; remove or repair it")
    return value


# ----------------------------------------------------------------------------- names


def seq_name(seq: int, suffix: str = ".json") -> str:
    """The name of record ``seq`` of a sequence (``000000000042.json``)."""
    return f"{seq:0{SEQ_DIGITS}d}{suffix}"


def seq_of(name: str) -> int | None:
    """The sequence number a name starts with, or ``None`` if it is not a sequence name."""
    head = name.split(".", 1)[0]
    return int(head) if head.isdigit() else None


def key_segment(value: str) -> str:
    """An id as one key segment: ``[A-Za-z0-9-_.]`` stay, anything else is percent-encoded
    (UTF-8), so ``segment_value`` gives the id back. A segment the store would refuse
    (``.``, ``..``, the reserved ``.qcflow…``) has its leading dot encoded too."""
    segment = quote(value, safe="-_.")
    if segment in (".", "..") or segment.startswith(RESERVED_SEGMENT_PREFIX):
        segment = "%2E" + segment[1:]
    return segment


def segment_value(segment: str) -> str:
    """The id a ``key_segment`` encodes."""
    return unquote(segment)


def lookup_segment(value: str) -> str:
    """An id as one key segment of bounded length: ``key_segment``, or — past
    ``MAX_LOOKUP_SEGMENT`` characters, or empty — ``h-`` and a hash. Not reversible: for ids that are
    looked up by value (and carried in the record's body), never decoded from a listing."""
    segment = key_segment(value)
    return segment if 0 < len(segment) <= MAX_LOOKUP_SEGMENT else hashed_segment(value)


def hashed_segment(value: str) -> str:
    """``h-`` and 40 hex digits of the id's SHA-256."""
    return "h-" + hashlib.sha256(value.encode("utf-8")).hexdigest()[:40]
