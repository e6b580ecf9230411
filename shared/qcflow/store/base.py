"""The ``ObjectStore`` protocol: the few object operations push and harvest need, nothing more.

Push keeps a ledger (one object per recording, claimed with create-if-absent); harvest keeps
a checkpoint, takes leases and writes JSONL results. Both are built on these operations
alone — in particular on *create-if-absent*, never on compare-and-swap, because conditional
overwrite (``If-Match``) on real OSS is unconfirmed while ``x-oss-forbid-overwrite`` is
documented. The interface is synchronous and thread-safe; async callers use
``asyncio.to_thread``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import TracebackType
from typing import Protocol, TypeVar, runtime_checkable

from qcflow.errors import RequestError

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


class CommitOnExit:
    """The writers' shared context-manager rule: a clean exit commits, an exception aborts."""

    _closed: bool

    def commit(self) -> str:
        raise NotImplementedError

    def abort(self) -> None:
        raise NotImplementedError

    def __enter__(self: _W) -> _W:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if exc_type is not None:
            self.abort()
        elif not self._closed:
            self.commit()


@runtime_checkable
class ObjectWriter(Protocol):
    """A streaming write that becomes visible all at once, or not at all.

    Use it as a context manager: a clean exit commits (the whole object appears
    atomically); an exception inside the block, or ``abort()``, discards everything written
    so far. One writer belongs to one thread.
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
    ) -> bool:
        """Create the object only if no object has that key: True if this call created it,
        False if it already existed (then nothing is changed). Atomic across processes and
        hosts: of any number of racing callers exactly one gets True, and the content stored
        is that caller's. The object is complete whenever it is visible."""
        ...

    def list(self, prefix: str = "", *, start_after: str | None = None) -> Iterator[ObjectInfo]:
        """Objects whose key starts with ``prefix``, in lexicographic (UTF-8 byte) order,
        strictly after ``start_after`` when given. Streams page by page: never holds the
        whole listing."""
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
