"""The ``ObjectStore`` protocol: the few object operations push and harvest need, nothing more.

Push keeps a ledger (one object per recording, claimed with create-if-absent); harvest keeps
a checkpoint, takes leases and writes JSONL results. Both are built on these operations
alone — in particular on *create-if-absent*, never on compare-and-swap, because conditional
overwrite (``If-Match``) on real OSS is unconfirmed while ``x-oss-forbid-overwrite`` is
documented. The interface is synchronous and thread-safe; async callers use
``asyncio.to_thread``.

Where create-if-absent's atomicity comes from: on OSS, from the service alone
(``x-oss-forbid-overwrite``, on a bucket where versioning was never enabled); on a local
store, from ``os.link`` of a finished temp file. The test suite runs the OSS adapter against
moto, whose conditional PUT is a non-atomic check-then-put; the test shim serialises those
PUTs, so the OSS race tests prove the adapter's side only, never the service's.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import TracebackType
from typing import Protocol, TypeVar, runtime_checkable

from qcflow.errors import RequestError, WriterFailedError
from qcflow.store.keys import InvalidKeyError, validate_key

log = logging.getLogger("qcflow.store")

DEFAULT_CONTENT_TYPE = "application/octet-stream"

#: Default part size of ``open_writer`` (OSS needs parts of at least 100 KiB but the last).
DEFAULT_PART_SIZE = 8 * 1024 * 1024


@dataclass(frozen=True)
class ObjectInfo:
    """What is known about an object without reading it.

    ``etag`` is opaque: compare it for equality only (it changes when the object is
    rewritten with different content). From ``list()``, ``content_type`` is ``None`` and
    ``metadata`` empty — listings do not carry them; use ``head()`` when needed.
    """

    key: str
    size: int
    etag: str
    last_modified: datetime | None = None
    content_type: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class StoredObject:
    """An object read whole: its bytes and what ``head()`` would say about it."""

    key: str
    body: bytes
    etag: str
    content_type: str | None
    metadata: Mapping[str, str]
    last_modified: datetime | None

    @property
    def size(self) -> int:
        return len(self.body)

    @property
    def info(self) -> ObjectInfo:
        return ObjectInfo(self.key, self.size, self.etag, self.last_modified, self.content_type, self.metadata)


_W = TypeVar("_W", bound="CommitOnExit")


def check_data(data: object) -> memoryview:
    """Object bodies must be bytes-like: a ``str`` (or anything else) would otherwise fail
    deep inside a filesystem or HTTP call, or be silently converted."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"object data must be bytes, bytearray or memoryview, not {type(data).__name__}")
    view = memoryview(data)
    return view if view.format == "B" and view.ndim == 1 else view.cast("B")  # byte-sized items


def listable(key: str, store_url: str) -> bool:
    """Whether a name found by a listing is a valid key. Other names (an OSS console
    folder marker ``a/``, ``a//b``, a hand-made file ``a\\b``) would be refused by every
    other method, so listings skip them — with one WARNING each, so they are not invisible."""
    try:
        validate_key(key)
    except InvalidKeyError as exc:
        log.warning("listing %s: skipping %r, which is not a valid key (%s)", store_url, key, exc.message)
        return False
    return True


class CommitOnExit:
    """The writers' shared context-manager rule: a clean exit commits, an exception aborts.

    A writer whose write failed (disk full, a part upload that kept failing) is *failed*:
    it has discarded what it held, and ``write``/``commit`` raise ``WriterFailedError`` —
    a caller who catches the write error inside the ``with`` block must not get a torn
    object, nor a silent "success" that committed nothing, so a clean exit of a failed
    writer raises too. Only an explicit ``abort()`` makes a clean exit silent.
    """

    _key: str
    _closed: bool = False  # committed, aborted or failed: no more writes
    _aborted: bool = False  # the caller asked for abort()
    _failure: BaseException | None = None  # what broke the writer

    def commit(self) -> str:
        raise NotImplementedError

    def _discard(self) -> None:
        """Drop everything written so far (idempotent)."""
        raise NotImplementedError

    def abort(self) -> None:
        """Discard everything written so far; a clean exit afterwards commits nothing, silently."""
        self._aborted = True
        self._closed = True
        self._discard()

    def _fail(self, exc: BaseException) -> None:
        """Enter the failed state after ``exc`` broke a write, part upload or commit."""
        if self._failure is None:
            self._failure = exc
        self._closed = True
        try:
            self._discard()
        except Exception:  # noqa: BLE001 - the original failure is what the caller sees
            pass

    def _failed_error(self) -> WriterFailedError:
        failure = self._failure
        return WriterFailedError(
            f"writer for {self._key!r} failed earlier ({type(failure).__name__}: {failure}); nothing was committed"
        )

    def _check_open(self) -> None:
        if self._failure is not None:
            raise self._failed_error() from self._failure
        if self._closed:
            raise RequestError(f"writer for {self._key!r} is already closed")

    def __enter__(self: _W) -> _W:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is not None:
            self.abort()
        elif self._aborted:
            return
        elif self._failure is not None:
            raise self._failed_error() from self._failure
        elif not self._closed:
            self.commit()


@runtime_checkable
class ObjectWriter(Protocol):
    """A streaming write that becomes visible all at once, or not at all.

    Use it as a context manager: a clean exit commits (the whole object appears
    atomically); an exception inside the block, or ``abort()``, discards everything written
    so far. If a ``write`` fails, the writer is failed: later ``write``/``commit`` calls and
    a clean exit raise ``WriterFailedError`` (nothing is committed) unless the caller called
    ``abort()``. One writer belongs to one thread.
    """

    def write(self, data: bytes) -> None: ...

    def abort(self) -> None: ...

    @property
    def etag(self) -> str | None:
        """The committed object's etag (``None`` until committed)."""
        ...

    def __enter__(self) -> ObjectWriter: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


@runtime_checkable
class ObjectStore(Protocol):
    """Objects under one prefix of one bucket (or one directory). Keys are relative to it.

    Every method validates its key (``InvalidKeyError``) before touching storage. Errors are
    ``qcflow.errors`` classes: ``NotFoundError`` for a missing object, ``RetryableError``
    subclasses for transient faults, ``PermanentError`` subclasses otherwise.
    """

    #: The URL the store was opened from (``oss://bucket/prefix``, ``file:///path``), for logs.
    url: str

    def get(self, key: str) -> StoredObject:
        """Read a whole object; ``NotFoundError`` if absent."""
        ...

    def head(self, key: str) -> ObjectInfo:
        """Size, etag, time, content type and metadata; ``NotFoundError`` if absent."""
        ...

    def put(
        self,
        key: str,
        data: bytes,
        *,
        content_type: str = DEFAULT_CONTENT_TYPE,
        metadata: Mapping[str, str] | None = None,
    ) -> str:
        """Write (or overwrite) an object atomically; returns its etag."""
        ...

    def create_if_absent(
        self,
        key: str,
        data: bytes,
        *,
        content_type: str = DEFAULT_CONTENT_TYPE,
        metadata: Mapping[str, str] | None = None,
        claim_token: str | None = None,
    ) -> bool:
        """Create the object only if no object has that key: True if this call created it,
        False if it already existed (then nothing is changed). Atomic across processes and
        hosts: of any number of racing callers exactly one gets True, and the content stored
        is that caller's (on OSS this rests on ``x-oss-forbid-overwrite``; see the module
        docstring). The object is complete whenever it is visible, with its metadata.

        ``claim_token`` is stored with the object (hidden from ``metadata``) and compared
        when the key already exists: True if the stored token is this one. Without it each
        call uses a fresh random token, so a call that failed with an uncertain outcome
        (``RetryableError`` with ``prior_attempt_uncertain``: the object may have been
        created) and is retried gets False for its own object. Pass a stable token, e.g.
        derived from the invocation, when you retry after an error; it must be unique to
        the claimant (1..256 visible ASCII characters)."""
        ...

    def list(self, prefix: str = "", *, start_after: str | None = None) -> Iterator[ObjectInfo]:
        """Objects whose key starts with ``prefix``, in lexicographic (UTF-8 byte) order,
        strictly after ``start_after`` when given. Streams page by page: never holds the
        whole listing. Names that are not valid keys (an OSS console folder marker ``a/``,
        ``a//b``, a file named ``a\\b``) are skipped with a WARNING on logger
        ``qcflow.store``, so every listed key works with the other methods."""
        ...

    def delete(self, key: str) -> None:
        """Remove an object; deleting a missing object is not an error."""
        ...

    def open_writer(
        self,
        key: str,
        *,
        content_type: str = DEFAULT_CONTENT_TYPE,
        metadata: Mapping[str, str] | None = None,
        part_size: int = DEFAULT_PART_SIZE,
    ) -> ObjectWriter:
        """A writer for a large object (JSONL results) that commits atomically on a clean
        exit and leaves nothing visible on an exception or ``abort()``."""
        ...

    def signed_get_url(self, key: str, expires: timedelta) -> str:
        """A URL that fetches the object without credentials until ``expires`` has passed
        (on a local store, a ``file://`` URL that never expires). The object's existence is
        not checked."""
        ...


def check_expires(expires: timedelta) -> timedelta:
    """Presigned URLs live between one second and OSS's limit of seven days."""
    if not isinstance(expires, timedelta) or expires < timedelta(seconds=1) or expires > timedelta(days=7):
        raise RequestError(f"signed URL lifetime must be between 1 second and 7 days, got {expires!r}")
    return expires
