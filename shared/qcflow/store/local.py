"""The object store on a local directory — for the demo, the sandbox and tests.

It keeps the same promises as OSS with filesystem primitives:

- **Atomic writes**: bytes go to a temp file in ``<root>/.qcflow-tmp/``, are fsynced, and
  the file is then ``os.replace``-d onto the key's path (the directory is fsynced too), so a
  reader sees the old object or the new one, never a torn one.
- **Create-if-absent**: the complete temp file is ``os.link``-ed to the key's path; ``link``
  fails with ``EEXIST`` atomically if the name exists, so exactly one racer wins and the
  object is complete the moment it is visible (unlike ``O_CREAT|O_EXCL`` followed by writes).
  This atomicity is the adapter's own, across threads and processes on one filesystem. Once
  the link is made the call returns True whatever happens next (a temp file that cannot be
  removed is logged), so a creator is never told it failed.
- **Metadata** (content type, user metadata, etag) lives in a JSON sidecar in
  ``<root>/.qcflow-meta/`` named after the data file's inode, written *before* the data file
  becomes visible. Because the sidecar belongs to the inode, a losing create-if-absent racer
  cannot clobber the winner's metadata. A sidecar is trusted only if its key, size and mtime
  match the data file; otherwise (a file dropped in by hand) the store falls back to an
  MD5 etag and ``application/octet-stream``.
- **Inode numbers are reused** (ext4 hands a freed one out again at once), so a sidecar is
  always dropped while its inode is still allocated: ``delete`` first renames the object
  into the temp dir, ``put`` first hard-links the object it replaces there, and a losing
  racer drops its sidecar before its temp file. Otherwise a concurrent create that got the
  freed number would have its new sidecar — its metadata and claim token — dropped.
- **Listing** walks directories that other threads may be creating objects in: an object
  that exists throughout the listing is listed once, in order; one created or deleted
  meanwhile may or may not be — as on OSS.

Data files hold exactly the object's bytes, so results can be read with ordinary tools.
``create_if_absent``'s ``claim_token`` is kept in the sidecar (never in ``metadata``).
Symlinks inside the root are followed by every method, listings included (a symlink loop
is listed once, a dangling symlink is skipped with a WARNING), except ``delete``, which
removes the link and leaves its target (and the target's metadata) alone. Filesystem errors become
``qcflow.errors`` in one place (``_os_error``): a segment longer than 255 bytes, a full,
read-only or forbidden disk are ``RequestError``; EIO/EAGAIN are ``ServiceUnavailableError``.

Known limits:

- a key cannot be both an object and a "directory" of other keys (``a`` and ``a/b``),
  which OSS allows; empty directories are left behind by ``delete``;
- a ``get`` racing with a ``put`` of the same key returns complete bytes (old or new) but
  may report the default content type, empty metadata and an MD5 etag: the replaced
  object's sidecar is removed right after the replace, while the reader still holds it;
- on a case-insensitive filesystem (macOS, Windows defaults) ``A`` and ``a`` are the same
  object, unlike on OSS; keep keys lower-case if a store may live on one;
- two ``put``s of one key at once may leave the sidecar of the object replaced in between
  behind: garbage only (a sidecar is checked against its data file, and a new object that
  gets the same inode number writes its own over it).

Why ~670 lines: the local adapter gives a folder the store's guarantees (atomic
create-if-absent, complete-when-visible writes, race-free deletes) with POSIX primitives; each
guarantee needs its own careful code, and the contract suite checks it against OSS's.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

from qcflow.errors import NotFoundError, QcflowError, RequestError, ServiceUnavailableError
from qcflow.store.base import (
    DEFAULT_CONTENT_TYPE,
    DEFAULT_PART_SIZE,
    CommitOnExit,
    ObjectInfo,
    StoredObject,
    check_data,
    check_expires,
    listable,
    log,
)
from qcflow.store.keys import (
    RESERVED_SEGMENT_PREFIX,
    validate_claim_token,
    validate_content_type,
    validate_key,
    validate_metadata,
    validate_prefix,
)

TMP_DIR = ".qcflow-tmp"
META_DIR = ".qcflow-meta"
_CHUNK = 1024 * 1024
#: The longest file name (one key segment) common local filesystems accept, in bytes.
NAME_MAX = 255
#: Faults that may pass (a flaky disk or network filesystem); everything else is permanent.
_TRANSIENT_ERRNOS = frozenset({errno.EIO, errno.EAGAIN, errno.EBUSY, errno.EINTR, errno.ETIMEDOUT})


def _os_error(exc: OSError, key: str | None, doing: str, where: str | None = None) -> QcflowError:
    """The one translation of filesystem errors: callers see ``qcflow.errors`` naming the
    key and the store (its URL, as configured: a full disk or a read-only folder is fixed
    there); the message carries no other path, the ``__cause__`` keeps the OSError."""
    what = repr(key) if key is not None else "objects"
    reason = exc.strerror or type(exc).__name__
    store = f"the local store {where}" if where else "the local store"
    if exc.errno == errno.ENAMETOOLONG:
        return RequestError(f"cannot {doing} {what}: a segment is too long for a local folder ({reason})")
    if exc.errno in _TRANSIENT_ERRNOS:
        return ServiceUnavailableError(f"cannot {doing} {what} in {store}: {reason}")
    return RequestError(f"cannot {doing} {what} in {store}: {reason}")


@contextmanager
def _mapped(key: str | None, doing: str, where: str | None = None) -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        raise _os_error(exc, key, doing, where) from exc


def _quoted_md5(digest: str) -> str:
    return f'"{digest}"'


def _fsync_dir(path: Path) -> None:
    """Make a rename/link in ``path`` durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class _TempFile:
    """A uniquely named temp file in the store's temp dir, hashed as it is written."""

    def __init__(self, tmp_dir: Path) -> None:
        tmp_dir.mkdir(parents=True, exist_ok=True)
        self.path = tmp_dir / f"{os.urandom(16).hex()}.tmp"
        self._fd: int | None = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        self._md5 = hashlib.md5(usedforsecurity=False)
        self.size = 0

    def write(self, data: memoryview) -> None:
        assert self._fd is not None, "temp file already closed"
        view = data
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        self._md5.update(data)
        self.size += len(data)

    def finish(self) -> tuple[str, os.stat_result]:
        """fsync and close; return the etag and the file's stat (inode, mtime)."""
        assert self._fd is not None
        os.fsync(self._fd)
        st = os.fstat(self._fd)
        os.close(self._fd)
        self._fd = None
        return _quoted_md5(self._md5.hexdigest()), st

    def discard(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


class LocalStore:
    """``ObjectStore`` on a directory (``file:///abs/path`` or ``file:relative/path``)."""

    def __init__(self, root: str | os.PathLike[str], *, url: str | None = None) -> None:
        self.root = Path(root).absolute()
        self.url = url or self.root.as_uri()
        self._tmp = self.root / TMP_DIR
        self._meta = self.root / META_DIR

    def __repr__(self) -> str:
        return f"LocalStore({str(self.root)!r})"

    # ------------------------------------------------------------------ paths
    def _path(self, key: str) -> Path:
        segments = validate_key(key).split("/")
        for segment in segments:
            if len(segment.encode("utf-8")) > NAME_MAX:
                raise RequestError(
                    f"key {key[:60]!r}…: segment {segment[:20]!r}… is too long for a local folder "
                    f"(at most {NAME_MAX} UTF-8 bytes per segment)"
                )
        return self.root.joinpath(*segments)

    def _sidecar(self, st: os.stat_result) -> Path:
        return self._meta / f"{st.st_dev}-{st.st_ino}.json"

    def _write_sidecar(
        self,
        key: str,
        st: os.stat_result,
        etag: str,
        content_type: str,
        metadata: dict[str, str],
        claim: str | None = None,
    ) -> Path:
        self._meta.mkdir(parents=True, exist_ok=True)
        record = {
            "key": key,
            "size": st.st_size,
            "mtime_ns": st.st_mtime_ns,
            "etag": etag,
            "content_type": content_type,
            "metadata": metadata,
            "claim": claim,
        }
        final = self._sidecar(st)
        tmp = self._tmp / f"{os.urandom(16).hex()}.meta"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(record, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, final)
        _fsync_dir(self._meta)
        return final

    def _read_sidecar(self, key: str, st: os.stat_result) -> dict | None:
        try:
            with open(self._sidecar(st), encoding="utf-8") as fh:
                record = json.load(fh)
        except (FileNotFoundError, ValueError):
            return None
        if record.get("key") != key or record.get("size") != st.st_size or record.get("mtime_ns") != st.st_mtime_ns:
            return None  # a stale sidecar of a reused inode, or a file written by hand
        return record

    def _drop_sidecar(self, st: os.stat_result | None) -> None:
        if st is None:
            return
        try:
            os.unlink(self._sidecar(st))
        except FileNotFoundError:
            pass

    @staticmethod
    def _mtime(st: os.stat_result) -> datetime:
        return datetime.fromtimestamp(st.st_mtime_ns / 1e9, tz=timezone.utc)

    @staticmethod
    def _stat_or_none(path: Path) -> os.stat_result | None:
        try:
            st = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        return st if not _is_dir(st) else None

    def _parent_dirs(self, path: Path) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError) as exc:
            raise RequestError(
                f"cannot store {path.relative_to(self.root)}: a parent path is an object (a local store "
                "cannot hold both 'a' and 'a/b')"
            ) from exc

    # ------------------------------------------------------------------- reads
    def get(self, key: str) -> StoredObject:
        path = self._path(key)
        with _mapped(key, "read", self.url):
            try:
                with open(path, "rb") as fh:
                    st = os.fstat(fh.fileno())
                    if _is_dir(st):
                        raise NotFoundError(f"no object {key!r} in {self.url}", action="GetObject")
                    body = fh.read()
            except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
                raise NotFoundError(f"no object {key!r} in {self.url}", action="GetObject") from None
            record = self._read_sidecar(key, st)
        if record is None:
            return StoredObject(
                key,
                body,
                _quoted_md5(hashlib.md5(body, usedforsecurity=False).hexdigest()),
                DEFAULT_CONTENT_TYPE,
                {},
                self._mtime(st),
            )
        return StoredObject(
            key, body, record["etag"], record["content_type"], dict(record["metadata"]), self._mtime(st)
        )

    def head(self, key: str) -> ObjectInfo:
        path = self._path(key)
        with _mapped(key, "read", self.url):
            st = self._stat_or_none(path)
            if st is None:
                raise NotFoundError(f"no object {key!r} in {self.url}", action="HeadObject")
            record = self._read_sidecar(key, st)
            if record is None:
                return ObjectInfo(key, st.st_size, self._file_md5(path), self._mtime(st), DEFAULT_CONTENT_TYPE, {})
        return ObjectInfo(
            key, st.st_size, record["etag"], self._mtime(st), record["content_type"], dict(record["metadata"])
        )

    def _file_md5(self, path: Path) -> str:
        md5 = hashlib.md5(usedforsecurity=False)
        try:
            with open(path, "rb") as fh:
                while chunk := fh.read(_CHUNK):
                    md5.update(chunk)
        except FileNotFoundError:
            raise NotFoundError(f"no object at {path.relative_to(self.root)} in {self.url}") from None
        return _quoted_md5(md5.hexdigest())

    def list(self, prefix: str = "", *, start_after: str | None = None) -> Iterator[ObjectInfo]:
        validate_prefix(prefix)
        # Start from the deepest directory the prefix names; filter the rest by string.
        head, _, _ = prefix.rpartition("/")
        start_dir = self.root.joinpath(*head.split("/")) if head else self.root
        base = f"{head}/" if head else ""
        return self._list(start_dir, base, prefix, start_after)

    def _list(self, start_dir: Path, base: str, prefix: str, start_after: str | None) -> Iterator[ObjectInfo]:
        with _mapped(None, "list", self.url):
            try:
                st = start_dir.stat()
            except (FileNotFoundError, NotADirectoryError):
                return
            if _is_dir(st):
                yield from self._walk(start_dir, base, prefix, start_after, frozenset({(st.st_dev, st.st_ino)}))

    def _walk(
        self, directory: Path, base: str, prefix: str, start_after: str | None, ancestors: frozenset[tuple[int, int]]
    ) -> Iterator[ObjectInfo]:
        """Depth-first, each directory sorted so that the concatenated keys come out in
        byte order: a directory ``d`` sorts as ``d/`` (``a-c`` < ``a/b`` because ``-`` <
        ``/``). Only one directory's entries are held per level.

        Symlinks are followed, as ``get``/``put`` follow them. ``ancestors`` holds the
        (device, inode) of the directories on the current path: a link back to one of them
        (a loop) is skipped, so the walk ends. It is not a global "visited" set, because a
        directory reachable under two names holds objects under both keys for ``get``."""
        try:
            with os.scandir(directory) as it:
                entries = [
                    (e.name + "/" if e.is_dir() else e.name, e)
                    for e in it
                    if not e.name.startswith(RESERVED_SEGMENT_PREFIX)
                ]
        except (FileNotFoundError, NotADirectoryError):
            return
        entries.sort(key=lambda pair: pair[0])  # code-point order == UTF-8 byte order
        for name, entry in entries:
            full = base + name
            if name.endswith("/"):
                # Skip whole subtrees outside the prefix or wholly before start_after.
                if not (full.startswith(prefix) or prefix.startswith(full)):
                    continue
                if start_after is not None and full < start_after and not start_after.startswith(full):
                    continue
                try:
                    st = entry.stat()
                except FileNotFoundError:
                    continue  # deleted while listing
                ident = (st.st_dev, st.st_ino)
                if ident in ancestors:
                    log.warning("listing %s: skipping %r, a symlink loop", self.url, full)
                    continue
                yield from self._walk(Path(entry.path), full, prefix, start_after, ancestors | {ident})
                continue
            if not full.startswith(prefix) or (start_after is not None and full <= start_after):
                continue
            try:
                st = entry.stat()  # follows a symlink, as get() does
            except FileNotFoundError:
                if entry.is_symlink():
                    log.warning("listing %s: skipping %r, a symlink to nothing", self.url, full)
                continue  # or deleted while listing
            if not listable(full, self.url):
                continue
            record = self._read_sidecar(full, st)
            try:
                etag = record["etag"] if record else self._file_md5(Path(entry.path))
            except NotFoundError:
                continue  # deleted while listing
            yield ObjectInfo(full, st.st_size, etag, self._mtime(st))

    # ------------------------------------------------------------------ writes
    def _stage(
        self, key: str, data: bytes, content_type: str, metadata: Mapping[str, str] | None, claim: str | None = None
    ) -> tuple[Path, _TempFile, str, os.stat_result]:
        path = self._path(key)
        view = check_data(data)
        validate_content_type(content_type)
        meta = validate_metadata(dict(metadata) if metadata else None)
        tmp = _TempFile(self._tmp)
        try:
            tmp.write(view)
            etag, st = tmp.finish()
            self._write_sidecar(key, st, etag, content_type, meta, claim)
        except BaseException:
            tmp.discard()
            raise
        return path, tmp, etag, st

    def _publish(self, key: str, tmp: _TempFile, st: os.stat_result, path: Path) -> None:
        """``os.replace`` the finished temp file onto ``path``; drop the replaced sidecar.

        The replaced object is first given a second name in the temp dir (``_hold``), so its
        inode stays allocated until its sidecar is gone: a freed inode number is soon handed
        out again (ext4 does at once), and a concurrent create that got it would otherwise
        write its sidecar under that name and see it dropped — losing its metadata and claim.
        """
        holder: Path | None = None
        try:
            try:
                self._parent_dirs(path)
                holder, unheld = self._hold(path)
                os.replace(tmp.path, path)
            except IsADirectoryError as exc:
                self._drop_sidecar(st)  # before the temp file, so its inode number is still ours
                tmp.discard()
                raise RequestError(f"cannot store {key!r}: it is a prefix of other keys in this local store") from exc
            except BaseException:
                self._drop_sidecar(st)
                tmp.discard()
                raise
            _fsync_dir(path.parent)
            # Published: from here on, failures leave garbage (logged), never a failed call.
            try:
                if holder is not None:
                    held = os.lstat(holder)
                    if stat.S_ISREG(held.st_mode):  # a symlink's target lives on, with its sidecar
                        self._drop_sidecar(held)
                elif unheld is not None:
                    self._drop_sidecar_if_own(key, unheld)
            except OSError as exc:
                log.warning(
                    "stored %r in %s, but the replaced object's sidecar stays behind in %s (%s)",
                    key,
                    self.url,
                    META_DIR,
                    exc.strerror or type(exc).__name__,
                )
        finally:
            if holder is not None:
                try:
                    _unlink_if_there(holder)
                except OSError as exc:
                    log.warning(
                        "a replaced copy of %r stays behind in %s of %s (%s)",
                        key,
                        TMP_DIR,
                        self.url,
                        exc.strerror or type(exc).__name__,
                    )

    def _hold(self, path: Path) -> tuple[Path | None, os.stat_result | None]:
        """Hard-link whatever regular file (or symlink) is at ``path`` into the temp dir, so its
        inode cannot be freed before we drop its sidecar. Returns ``(holder, None)``; ``(None,
        None)`` when nothing is there (or a directory); ``(None, stat)`` on a filesystem without
        hard links (``put`` works there, ``create_if_absent`` does not), where the caller falls
        back to a checked drop."""
        holder = self._tmp / f"{os.urandom(16).hex()}.held"
        try:
            os.link(path, holder, follow_symlinks=False)
        except (FileNotFoundError, NotADirectoryError):
            return None, None
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.EISDIR, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
                raise
            try:
                old = os.lstat(path)
            except (FileNotFoundError, NotADirectoryError):
                return None, None
            return None, (old if stat.S_ISREG(old.st_mode) else None)
        return holder, None

    def _drop_sidecar_if_own(self, key: str, st: os.stat_result) -> None:
        """Fallback without a held inode: drop the sidecar only if it still describes the
        object that was at ``key`` (a create that reused the number wrote a different one).
        A narrow race remains between the check and the unlink."""
        if self._read_sidecar(key, st) is not None:
            self._drop_sidecar(st)

    def put(
        self,
        key: str,
        data: bytes,
        *,
        content_type: str = DEFAULT_CONTENT_TYPE,
        metadata: Mapping[str, str] | None = None,
    ) -> str:
        with _mapped(key, "write", self.url):
            path, tmp, etag, st = self._stage(key, data, content_type, metadata)
            self._publish(key, tmp, st, path)
        return etag

    def create_if_absent(
        self,
        key: str,
        data: bytes,
        *,
        content_type: str = DEFAULT_CONTENT_TYPE,
        metadata: Mapping[str, str] | None = None,
        claim_token: str | None = None,
    ) -> bool:
        validate_claim_token(claim_token)
        with _mapped(key, "create", self.url):
            path, tmp, _etag, st = self._stage(key, data, content_type, metadata, claim_token)
            try:
                self._parent_dirs(path)
                os.link(tmp.path, path)  # atomic: fails with EEXIST if the name exists
            except FileExistsError:
                self._drop_sidecar(st)  # always before the temp file: its inode number is still ours
                tmp.discard()
                return self._claimed_by(key, path, claim_token)
            except OSError as exc:
                self._drop_sidecar(st)
                tmp.discard()
                if exc.errno in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
                    raise RequestError(
                        f"the filesystem under {self.root} does not support hard links, which create-if-absent needs"
                    ) from exc
                raise
            except BaseException:
                self._drop_sidecar(st)
                tmp.discard()
                raise
            # Created. Nothing after this point may fail the call: a caller retrying without
            # its claim token would then be told that its own object is someone else's.
            try:
                tmp.discard()  # the temp name only; the object keeps the inode
            except OSError as exc:
                log.warning(
                    "created %r in %s, but its temp file stays behind in %s (%s)",
                    key,
                    self.url,
                    TMP_DIR,
                    exc.strerror or type(exc).__name__,
                )
            _fsync_dir(path.parent)
        return True

    def _claimed_by(self, key: str, path: Path, claim_token: str | None) -> bool:
        """After ``EEXIST``: refuse a directory as ``put`` does, else True only if the
        existing object carries this call's ``claim_token``."""
        try:
            st = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            return False  # it existed at our link and was deleted since: not ours
        if _is_dir(st):
            raise RequestError(f"cannot store {key!r}: it is a prefix of other keys in this local store")
        if claim_token is None:
            return False
        record = self._read_sidecar(key, st)
        return record is not None and record.get("claim") == claim_token

    def delete(self, key: str) -> None:
        """Rename the object onto a placeholder in the temp dir, drop its sidecar, then unlink
        it. The rename takes exactly what is at the key — a directory is refused, as ``unlink``
        refused it, because it cannot replace a file — and keeps the inode allocated until the
        sidecar is gone (see ``_publish``). A symlinked key loses the link only: its target
        keeps its bytes and its sidecar."""
        path = self._path(key)
        with _mapped(key, "delete", self.url):
            try:
                os.lstat(path)
            except (FileNotFoundError, NotADirectoryError):
                return  # nothing there: touch nothing (not even the temp dir)
            self._tmp.mkdir(parents=True, exist_ok=True)
            holder = self._tmp / f"{os.urandom(16).hex()}.deleted"
            os.close(os.open(holder, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            try:
                try:
                    os.rename(path, holder)
                except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
                    return  # deleted meanwhile, or a directory: not an object
                except OSError as exc:
                    if exc.errno != errno.EXDEV:
                        raise
                    # A key under a symlinked directory on another filesystem: the store never
                    # wrote it (its writes link/replace within the root's filesystem), so no
                    # sidecar of ours names that inode.
                    try:
                        os.unlink(path)
                    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
                        pass
                    return
                held = os.lstat(holder)
                if stat.S_ISREG(held.st_mode):
                    self._drop_sidecar(held)
            finally:
                _unlink_if_there(holder)

    def open_writer(
        self,
        key: str,
        *,
        content_type: str = DEFAULT_CONTENT_TYPE,
        metadata: Mapping[str, str] | None = None,
        part_size: int = DEFAULT_PART_SIZE,
    ) -> LocalWriter:
        """``part_size`` is accepted for interface parity and ignored: the whole object is
        streamed to one temp file."""
        self._path(key)
        validate_content_type(content_type)
        return LocalWriter(self, key, content_type, validate_metadata(dict(metadata) if metadata else None))

    def signed_get_url(self, key: str, expires: timedelta) -> str:
        """A ``file://`` URL of the object's data file. Nothing is signed and it never
        expires: anyone who can read the directory can read the object."""
        check_expires(expires)
        return self._path(key).as_uri()


class LocalWriter(CommitOnExit):
    """Streams to a temp file; a clean exit publishes it with ``os.replace``. A failed
    write discards the temp file (see ``CommitOnExit``): a short write must never be
    published as the object."""

    def __init__(self, store: LocalStore, key: str, content_type: str, metadata: dict[str, str]) -> None:
        self._store = store
        self._key = key
        self._content_type = content_type
        self._metadata = metadata
        self._tmp: _TempFile | None = None
        self._closed = False
        self.etag: str | None = None

    def write(self, data: bytes) -> None:
        view = check_data(data)
        self._check_open()
        try:
            with _mapped(self._key, "write", self._store.url):
                if self._tmp is None:
                    self._tmp = _TempFile(self._store._tmp)
                self._tmp.write(view)
        except BaseException as exc:
            self._fail(exc)
            raise

    def _discard(self) -> None:
        tmp, self._tmp = self._tmp, None
        if tmp is not None:
            tmp.discard()

    def commit(self) -> str:
        self._check_open()
        store = self._store
        try:
            with _mapped(self._key, "write", self._store.url):
                if self._tmp is None:
                    self._tmp = _TempFile(store._tmp)  # an empty object is still an object
                etag, st = self._tmp.finish()
                store._write_sidecar(self._key, st, etag, self._content_type, self._metadata)
                store._publish(self._key, self._tmp, st, store._path(self._key))
        except BaseException as exc:
            self._fail(exc)
            raise
        self._tmp = None
        self._closed = True
        self.etag = etag
        return etag


def _is_dir(st: os.stat_result) -> bool:
    return stat.S_ISDIR(st.st_mode)


def _unlink_if_there(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
