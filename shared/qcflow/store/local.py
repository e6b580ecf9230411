"""The object store on a local directory — for the demo, the sandbox and tests.

It keeps the same promises as OSS with filesystem primitives:

- **Atomic writes**: bytes go to a temp file in ``<root>/.qcflow-tmp/``, are fsynced, and
  the file is then ``os.replace``-d onto the key's path (the directory is fsynced too), so a
  reader sees the old object or the new one, never a torn one.
- **Create-if-absent**: the complete temp file is ``os.link``-ed to the key's path; ``link``
  fails with ``EEXIST`` atomically if the name exists, so exactly one racer wins and the
  object is complete the moment it is visible (unlike ``O_CREAT|O_EXCL`` followed by writes).
- **Metadata** (content type, user metadata, etag) lives in a JSON sidecar in
  ``<root>/.qcflow-meta/`` named after the data file's inode, written *before* the data file
  becomes visible. Because the sidecar belongs to the inode, a losing create-if-absent racer
  cannot clobber the winner's metadata. A sidecar is trusted only if its key, size and mtime
  match the data file; otherwise (a file dropped in by hand) the store falls back to an
  MD5 etag and ``application/octet-stream``.

Data files hold exactly the object's bytes, so results can be read with ordinary tools.
Limitations: a key cannot be both an object and a "directory" of other keys (``a`` and
``a/b``), which OSS allows; empty directories are left behind by ``delete``.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta, timezone
from pathlib import Path

from qcflow.errors import NotFoundError, RequestError
from qcflow.store.base import (
    DEFAULT_CONTENT_TYPE,
    CommitOnExit,
    DEFAULT_PART_SIZE,
    ObjectInfo,
    StoredObject,
    check_expires,
)
from qcflow.store.keys import (
    RESERVED_SEGMENT_PREFIX,
    validate_content_type,
    validate_key,
    validate_metadata,
    validate_prefix,
)

TMP_DIR = ".qcflow-tmp"
META_DIR = ".qcflow-meta"
_CHUNK = 1024 * 1024


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

    def write(self, data: bytes) -> None:
        assert self._fd is not None, "temp file already closed"
        view = memoryview(data)
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
        return self.root.joinpath(*validate_key(key).split("/"))

    def _sidecar(self, st: os.stat_result) -> Path:
        return self._meta / f"{st.st_dev}-{st.st_ino}.json"

    def _write_sidecar(self, key: str, st: os.stat_result, etag: str, content_type: str, metadata: dict[str, str]) -> Path:
        self._meta.mkdir(parents=True, exist_ok=True)
        record = {
            "key": key,
            "size": st.st_size,
            "mtime_ns": st.st_mtime_ns,
            "etag": etag,
            "content_type": content_type,
            "metadata": metadata,
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
        try:
            with open(path, "rb") as fh:
                st = os.fstat(fh.fileno())
                if _is_dir(st):
                    raise NotFoundError(f"no object {key!r}", action="GetObject")
                body = fh.read()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise NotFoundError(f"no object {key!r} in {self.url}", action="GetObject") from None
        record = self._read_sidecar(key, st)
        if record is None:
            return StoredObject(key, body, _quoted_md5(hashlib.md5(body, usedforsecurity=False).hexdigest()),
                                DEFAULT_CONTENT_TYPE, {}, self._mtime(st))
        return StoredObject(key, body, record["etag"], record["content_type"], dict(record["metadata"]), self._mtime(st))

    def head(self, key: str) -> ObjectInfo:
        path = self._path(key)
        st = self._stat_or_none(path)
        if st is None:
            raise NotFoundError(f"no object {key!r} in {self.url}", action="HeadObject")
        record = self._read_sidecar(key, st)
        if record is None:
            return ObjectInfo(key, st.st_size, self._file_md5(path), self._mtime(st), DEFAULT_CONTENT_TYPE, {})
        return ObjectInfo(key, st.st_size, record["etag"], self._mtime(st), record["content_type"], dict(record["metadata"]))

    def _file_md5(self, path: Path) -> str:
        md5 = hashlib.md5(usedforsecurity=False)
        try:
            with open(path, "rb") as fh:
                while chunk := fh.read(_CHUNK):
                    md5.update(chunk)
        except FileNotFoundError:
            raise NotFoundError(f"no object at {path}") from None
        return _quoted_md5(md5.hexdigest())

    def list(self, prefix: str = "", *, start_after: str | None = None) -> Iterator[ObjectInfo]:
        validate_prefix(prefix)
        # Start from the deepest directory the prefix names; filter the rest by string.
        head, _, _ = prefix.rpartition("/")
        start_dir = self.root.joinpath(*head.split("/")) if head else self.root
        base = f"{head}/" if head else ""
        return self._walk(start_dir, base, prefix, start_after)

    def _walk(self, directory: Path, base: str, prefix: str, start_after: str | None) -> Iterator[ObjectInfo]:
        """Depth-first, each directory sorted so that the concatenated keys come out in
        byte order: a directory ``d`` sorts as ``d/`` (``a-c`` < ``a/b`` because ``-`` <
        ``/``). Only one directory's entries are held per level."""
        try:
            with os.scandir(directory) as it:
                entries = [(e.name + "/" if e.is_dir(follow_symlinks=False) else e.name, e) for e in it]
        except (FileNotFoundError, NotADirectoryError):
            return
        entries.sort(key=lambda pair: pair[0])  # code-point order == UTF-8 byte order
        for name, entry in entries:
            if name.startswith(RESERVED_SEGMENT_PREFIX):
                continue
            full = base + name
            if name.endswith("/"):
                # Skip whole subtrees outside the prefix or wholly before start_after.
                if not (full.startswith(prefix) or prefix.startswith(full)):
                    continue
                if start_after is not None and full < start_after and not start_after.startswith(full):
                    continue
                yield from self._walk(Path(entry.path), full, prefix, start_after)
                continue
            if not full.startswith(prefix) or (start_after is not None and full <= start_after):
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue  # deleted while listing
            record = self._read_sidecar(full, st)
            etag = record["etag"] if record else self._file_md5(Path(entry.path))
            yield ObjectInfo(full, st.st_size, etag, self._mtime(st))

    # ------------------------------------------------------------------ writes
    def _stage(self, key: str, data: bytes, content_type: str, metadata: Mapping[str, str] | None
               ) -> tuple[Path, _TempFile, str, os.stat_result]:
        path = self._path(key)
        validate_content_type(content_type)
        meta = validate_metadata(dict(metadata) if metadata else None)
        tmp = _TempFile(self._tmp)
        try:
            tmp.write(data)
            etag, st = tmp.finish()
            self._write_sidecar(key, st, etag, content_type, meta)
        except BaseException:
            tmp.discard()
            raise
        return path, tmp, etag, st

    def _publish(self, key: str, tmp: _TempFile, st: os.stat_result, path: Path) -> None:
        """``os.replace`` the finished temp file onto ``path``; drop the replaced sidecar."""
        try:
            self._parent_dirs(path)
            old = self._stat_or_none(path)
            os.replace(tmp.path, path)
        except IsADirectoryError as exc:
            tmp.discard()
            self._drop_sidecar(st)
            raise RequestError(f"cannot store {key!r}: it is a prefix of other keys in this local store") from exc
        except BaseException:
            tmp.discard()
            self._drop_sidecar(st)
            raise
        _fsync_dir(path.parent)
        if old is not None and (old.st_dev, old.st_ino) != (st.st_dev, st.st_ino):
            self._drop_sidecar(old)

    def put(self, key: str, data: bytes, *, content_type: str = DEFAULT_CONTENT_TYPE,
            metadata: Mapping[str, str] | None = None) -> str:
        path, tmp, etag, st = self._stage(key, data, content_type, metadata)
        self._publish(key, tmp, st, path)
        return etag

    def create_if_absent(self, key: str, data: bytes, *, content_type: str = DEFAULT_CONTENT_TYPE,
                         metadata: Mapping[str, str] | None = None) -> bool:
        path, tmp, _etag, st = self._stage(key, data, content_type, metadata)
        try:
            self._parent_dirs(path)
            os.link(tmp.path, path)  # atomic: fails with EEXIST if the name exists
        except FileExistsError:
            self._drop_sidecar(st)
            return False
        except OSError as exc:
            self._drop_sidecar(st)
            if exc.errno in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
                raise RequestError(f"the filesystem under {self.root} does not support hard links, "
                                   "which create-if-absent needs") from exc
            raise
        except BaseException:
            self._drop_sidecar(st)
            raise
        finally:
            tmp.discard()  # the temp name only; the object keeps the inode
        _fsync_dir(path.parent)
        return True

    def delete(self, key: str) -> None:
        path = self._path(key)
        st = self._stat_or_none(path)
        try:
            os.unlink(path)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return
        self._drop_sidecar(st)

    def open_writer(self, key: str, *, content_type: str = DEFAULT_CONTENT_TYPE,
                    metadata: Mapping[str, str] | None = None, part_size: int = DEFAULT_PART_SIZE) -> LocalWriter:
        """``part_size`` is accepted for interface parity and ignored: the whole object is
        streamed to one temp file."""
        validate_key(key)
        validate_content_type(content_type)
        return LocalWriter(self, key, content_type, validate_metadata(dict(metadata) if metadata else None))

    def signed_get_url(self, key: str, expires: timedelta) -> str:
        """A ``file://`` URL of the object's data file. Nothing is signed and it never
        expires: anyone who can read the directory can read the object."""
        check_expires(expires)
        return self._path(key).as_uri()


class LocalWriter(CommitOnExit):
    """Streams to a temp file; a clean exit publishes it with ``os.replace``."""

    def __init__(self, store: LocalStore, key: str, content_type: str, metadata: dict[str, str]) -> None:
        self._store = store
        self._key = key
        self._content_type = content_type
        self._metadata = metadata
        self._tmp: _TempFile | None = None
        self._closed = False
        self.etag: str | None = None

    def write(self, data: bytes) -> None:
        if self._closed:
            raise RequestError(f"writer for {self._key!r} is already closed")
        if self._tmp is None:
            self._tmp = _TempFile(self._store._tmp)
        self._tmp.write(bytes(data))

    def abort(self) -> None:
        self._closed = True
        if self._tmp is not None:
            self._tmp.discard()
            self._tmp = None

    def commit(self) -> str:
        if self._closed:
            raise RequestError(f"writer for {self._key!r} is already closed")
        if self._tmp is None:
            self._tmp = _TempFile(self._store._tmp)  # an empty object is still an object
        tmp = self._tmp
        self._closed = True
        try:
            etag, st = tmp.finish()
            self._store._write_sidecar(self._key, st, etag, self._content_type, self._metadata)
        except BaseException:
            tmp.discard()
            raise
        self._store._publish(self._key, tmp, st, self._store._path(self._key))
        self.etag = etag
        return etag


def _is_dir(st: os.stat_result) -> bool:
    return stat.S_ISDIR(st.st_mode)
