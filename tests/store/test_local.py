"""LocalStore specifics: on-disk layout, sidecars, temp-file hygiene and filesystem limits."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from qcflow.errors import NotFoundError, RequestError, ServiceUnavailableError
from qcflow.store import LocalStore, WriterFailedError
from qcflow.store.local import META_DIR, TMP_DIR


@pytest.fixture
def local(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "root")


def test_data_files_hold_exactly_the_bytes(local: LocalStore) -> None:
    local.put("results/dt=2024-01-01/part.jsonl", b'{"a":1}\n', content_type="application/x-ndjson")
    assert (local.root / "results" / "dt=2024-01-01" / "part.jsonl").read_bytes() == b'{"a":1}\n'


def test_no_temp_files_left_behind(local: LocalStore) -> None:
    local.put("a", b"1")
    assert local.create_if_absent("b", b"2")
    assert not local.create_if_absent("b", b"3")
    with local.open_writer("c") as w:
        w.write(b"x" * 1000)
    with pytest.raises(ZeroDivisionError):
        with local.open_writer("d") as w:
            w.write(b"y")
            1 / 0
    assert list((local.root / TMP_DIR).iterdir()) == []
    # one sidecar per live object: the loser's sidecar was removed, not the winner's
    assert len(list((local.root / META_DIR).iterdir())) == 3
    local.delete("a")
    local.delete("b")
    local.delete("c")
    assert list((local.root / META_DIR).iterdir()) == []


def test_hand_dropped_file_is_readable(local: LocalStore) -> None:
    path = local.root / "dropped" / "f.txt"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"by hand")
    got = local.get("dropped/f.txt")
    assert got.body == b"by hand"
    assert got.etag == f'"{hashlib.md5(b"by hand").hexdigest()}"'
    assert got.content_type == "application/octet-stream" and dict(got.metadata) == {}
    assert [i.key for i in local.list()] == ["dropped/f.txt"]


def test_file_replaced_by_hand_does_not_inherit_metadata(local: LocalStore) -> None:
    local.put("f", b"original", content_type="text/plain", metadata={"x": "1"})
    (local.root / "f").unlink()
    (local.root / "f").write_bytes(b"replaced!")
    got = local.get("f")
    assert got.body == b"replaced!" and dict(got.metadata) == {} and got.content_type == "application/octet-stream"


def test_bookkeeping_dirs_are_not_listed(local: LocalStore) -> None:
    local.put("x", b"1", metadata={"m": "v"})
    assert (local.root / META_DIR).is_dir() and (local.root / TMP_DIR).is_dir()
    assert [i.key for i in local.list()] == ["x"]


def test_object_and_prefix_conflict_is_clear(local: LocalStore) -> None:
    local.put("a", b"1")
    with pytest.raises(RequestError, match="both 'a' and 'a/b'"):
        local.put("a/b", b"2")
    local.put("p/q", b"1")
    with pytest.raises(RequestError, match="prefix of other keys"):
        local.put("p", b"2")
    assert [i.key for i in local.list()] == ["a", "p/q"]


def test_concurrent_put_and_get_never_see_torn_objects(local: LocalStore) -> None:
    bodies = [bytes([i]) * 200_000 for i in range(1, 6)]
    local.put("hot", bodies[0])
    stop = threading.Event()
    seen: list[bytes] = []

    def reader() -> None:
        while not stop.is_set():
            seen.append(local.get("hot").body)

    t = threading.Thread(target=reader)
    t.start()
    for _ in range(5):
        for body in bodies:
            local.put("hot", body)
    stop.set()
    t.join()
    assert seen and all(b in bodies for b in seen)


def test_missing_root_lists_nothing(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "does-not-exist")
    assert list(store.list()) == []
    assert not (tmp_path / "does-not-exist").exists()  # reads never create the root


# ------------------------------------------------- review regressions
def test_create_if_absent_on_a_prefix_is_refused_like_put(local: LocalStore) -> None:
    local.put("p/q", b"1")
    with pytest.raises(RequestError, match="prefix of other keys"):
        local.create_if_absent("p", b"2")
    with pytest.raises(RequestError, match="prefix of other keys"):
        local.create_if_absent("p", b"2", claim_token="t-1")
    assert [i.key for i in local.list()] == ["p/q"]
    assert list((local.root / TMP_DIR).iterdir()) == []
    assert len(list((local.root / META_DIR).iterdir())) == 1  # only p/q's sidecar


def test_claim_token_lives_in_the_sidecar(local: LocalStore) -> None:
    assert local.create_if_absent("c", b"1", metadata={"m": "v"}, claim_token="tok-1")
    (sidecar,) = (local.root / META_DIR).iterdir()
    record = json.loads(sidecar.read_text())
    assert record["claim"] == "tok-1" and record["metadata"] == {"m": "v"}


def test_listing_follows_symlinked_directories(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    (outside / "sub").mkdir(parents=True)
    (outside / "sub" / "f").write_bytes(b"through a link")
    store = LocalStore(tmp_path / "root")
    store.put("a/x", b"1")
    os.symlink(outside, store.root / "link")
    assert store.get("link/sub/f").body == b"through a link"  # get follows it...
    infos = list(store.list())
    assert [(i.key, i.size) for i in infos] == [("a/x", 1), ("link/sub/f", 14)]  # ...and so does list
    assert [i.key for i in store.list("link/")] == ["link/sub/f"]
    assert infos[1].etag == store.head("link/sub/f").etag


def test_listing_survives_symlink_loops(local: LocalStore, caplog: pytest.LogCaptureFixture) -> None:
    local.put("d/x", b"1")
    os.symlink(local.root / "d", local.root / "d" / "loop")  # d/loop -> d
    os.symlink(local.root, local.root / "d" / "up")  # d/up -> the root
    with caplog.at_level("WARNING", logger="qcflow.store"):
        listed = [i.key for i in local.list()]
    # A link back into a directory on its own path (d, the root) is not followed.
    assert listed == ["d/x"]
    assert sorted(r.getMessage().rsplit(": ", 1)[1] for r in caplog.records if r.name == "qcflow.store") == [
        "skipping 'd/loop/', a symlink loop", "skipping 'd/up/', a symlink loop"]


def test_listing_skips_dangling_symlink_with_warning(local: LocalStore, caplog: pytest.LogCaptureFixture) -> None:
    local.put("a", b"1")
    os.symlink(local.root / "nowhere", local.root / "dangling")
    with caplog.at_level("WARNING", logger="qcflow.store"):
        assert [i.key for i in local.list()] == ["a"]
    assert [r.getMessage() for r in caplog.records if r.name == "qcflow.store"] == [
        f"listing {local.url}: skipping 'dangling', a symlink to nothing"]


def test_listing_skips_names_that_are_not_keys(local: LocalStore, caplog: pytest.LogCaptureFixture) -> None:
    local.put("ok", b"1")
    (local.root / "back\\slash").write_bytes(b"x")
    os.close(os.open(os.path.join(os.fsencode(local.root), b"bad-\xff-utf8"), os.O_CREAT | os.O_WRONLY))
    with caplog.at_level("WARNING", logger="qcflow.store"):
        assert [i.key for i in local.list()] == ["ok"]
    assert len([r for r in caplog.records if r.name == "qcflow.store"]) == 2


def test_segment_too_long_for_a_folder_is_a_request_error(local: LocalStore) -> None:
    key = "dir/" + "x" * 300  # a valid key (OSS takes it), but no filesystem does
    for call in (lambda: local.put(key, b"1"), lambda: local.get(key), lambda: local.head(key),
                 lambda: local.create_if_absent(key, b"1"), lambda: local.open_writer(key), lambda: local.delete(key)):
        with pytest.raises(RequestError, match="too long for a local folder"):
            call()


class _FailingOpenOs:
    def __init__(self, code: int) -> None:
        self.code = code

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)

    def open(self, *args: Any, **kwargs: Any) -> int:
        raise OSError(self.code, os.strerror(self.code), "/secret/root/.qcflow-tmp/x.tmp")


@pytest.mark.parametrize(("code", "cls"), [
    (errno.ENOSPC, RequestError), (errno.EACCES, RequestError), (errno.EROFS, RequestError),
    (errno.EIO, ServiceUnavailableError), (errno.EAGAIN, ServiceUnavailableError),
    (errno.ENAMETOOLONG, RequestError),
])
def test_os_errors_become_qcflow_errors(local: LocalStore, monkeypatch: pytest.MonkeyPatch, code: int,
                                        cls: type) -> None:
    import qcflow.store.local as local_module

    monkeypatch.setattr(local_module, "os", _FailingOpenOs(code))
    with pytest.raises(cls) as info:
        local.put("state/k", b"1")
    assert type(info.value) is cls
    assert "'state/k'" in str(info.value) and "/secret/root" not in str(info.value)
    assert isinstance(info.value.__cause__, OSError)
    if code == errno.ENAMETOOLONG:
        assert "too long for a local folder" in str(info.value)
    else:
        assert f"in the local store {local.url}:" in str(info.value), "names the store root (issue 22 #9)"


def test_local_write_failure_is_a_qcflow_error_and_nothing_torn(local: LocalStore,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.store.conftest import _ShortWriteOs
    import qcflow.store.local as local_module

    with pytest.raises(WriterFailedError):
        with local.open_writer("res/part.jsonl") as w:
            w.write(b"A" * 1000)
            monkeypatch.setattr(local_module, "os", _ShortWriteOs())
            with pytest.raises(RequestError, match="No space left"):
                w.write(b"B" * 1000)
            monkeypatch.undo()
    with pytest.raises(NotFoundError):
        local.get("res/part.jsonl")
    assert list((local.root / TMP_DIR).iterdir()) == []


# ------------------------------------- sidecars and reused inodes (push ledger review)
class _RacingOs:
    """Stands in for ``os`` inside ``qcflow.store.local``: right after a call that takes the
    object at ``path`` away from its name (unlink, rename, replace), runs ``then`` once — a
    concurrent caller's operation, placed deterministically at the most dangerous moment.
    Everything else is ``os``."""

    def __init__(self, path: Path, then: Any) -> None:
        self.path, self.then, self.fired = os.fspath(path), then, False

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)

    def _after(self, *paths: Any) -> None:
        if not self.fired and self.path in (os.fspath(p) for p in paths):
            self.fired = True
            self.then()

    def unlink(self, path: Any, *args: Any, **kwargs: Any) -> None:
        os.unlink(path, *args, **kwargs)
        self._after(path)

    def rename(self, src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
        os.rename(src, dst, *args, **kwargs)
        self._after(src, dst)

    def replace(self, src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
        os.replace(src, dst, *args, **kwargs)
        self._after(src, dst)


class _Claimant:
    """Creates ledger claims as "another thread" would, until one of them gets the inode
    number of the object just taken away (``freed``) — ext4 and other filesystems reuse a
    free number soon — or ``limit`` claims exist. While the store still holds that inode, no
    claim can get it and all ``limit`` are made."""

    def __init__(self, local: LocalStore, freed: int, prefix: str, limit: int = 20) -> None:
        self.local, self.freed, self.prefix, self.limit = local, freed, prefix, limit
        self.keys: list[str] = []
        self.reused = False

    def __call__(self) -> None:
        while len(self.keys) < self.limit and not self.reused:
            i = len(self.keys)
            key = f"{self.prefix}r{i:03d}/g000000.claim.json"
            assert self.local.create_if_absent(key, b'{"g":0}', content_type="application/json",
                                               metadata={"who": f"c{i}"}, claim_token=f"tok-{i}")
            self.keys.append(key)
            self.reused = os.stat(self.local.root / key).st_ino == self.freed

    def assert_intact(self) -> None:
        for i, key in enumerate(self.keys):
            got = self.local.get(key)
            assert (got.content_type, dict(got.metadata)) == ("application/json", {"who": f"c{i}"}), key
            # A retry with the claimant's own token after an uncertain outcome is still told it won.
            assert self.local.create_if_absent(key, b"again", claim_token=f"tok-{i}") is True, key
            assert self.local.create_if_absent(key, b"again", claim_token="someone-else") is False


@pytest.mark.parametrize("op", ["delete", "put", "writer"])
def test_freed_inode_reused_by_a_concurrent_create_keeps_its_sidecar(local: LocalStore, op: str,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Sidecars are named after the data file's inode. ``delete`` (and ``put`` or a writer
    replacing an object) used to free the old inode first and drop its sidecar after: a
    create running in between could get that inode number, write its sidecar under that
    name, and lose it — the ledger claim lost its metadata and its claim token, so its own
    retry was told "not yours". A few rounds, since which inode a filesystem hands out next
    is its own choice (on a filesystem that never reuses numbers, e.g. tmpfs, this passes
    trivially)."""
    import qcflow.store.local as local_module

    claims: list[_Claimant] = []
    for round_no in range(3):
        key = f"state/push/failed/rid{round_no}.g000000"
        local.put(key, b"", content_type="application/json", metadata={"n": "1"})
        claimant = _Claimant(local, os.stat(local.root / key).st_ino, f"state/push/records/{round_no}-")
        racing = _RacingOs(local.root / key, claimant)
        monkeypatch.setattr(local_module, "os", racing)
        if op == "delete":
            local.delete(key)
        elif op == "put":
            local.put(key, b"replaced", metadata={"n": "2"})
        else:
            with local.open_writer(key, metadata={"n": "2"}) as w:
                w.write(b"replaced")
        monkeypatch.undo()
        assert racing.fired and claimant.keys  # positive control: the concurrent creates ran at that moment
        claims.append(claimant)
        if op == "delete":
            with pytest.raises(NotFoundError):
                local.head(key)
        else:
            assert (local.get(key).body, dict(local.get(key).metadata)) == (b"replaced", {"n": "2"})
    for claimant in claims:
        claimant.assert_intact()
    assert list((local.root / TMP_DIR).iterdir()) == []
    live = sum(len(c.keys) for c in claims) + (0 if op == "delete" else len(claims))
    assert len(list((local.root / META_DIR).iterdir())) == live  # one sidecar per live object, no leftovers


def test_delete_of_a_prefix_or_a_symlink_touches_only_that_name(local: LocalStore) -> None:
    local.put("p/q", b"1", metadata={"m": "q"})
    local.delete("p")  # a "directory": not an object, nothing happens
    assert local.get("p/q").body == b"1"
    local.put("target", b"t", content_type="text/plain", metadata={"m": "t"})
    os.symlink(local.root / "target", local.root / "alias")
    assert local.get("alias").body == b"t"
    local.delete("alias")  # the link goes; the object it pointed to keeps its bytes and metadata
    with pytest.raises(NotFoundError):
        local.head("alias")
    got = local.get("target")
    assert (got.body, got.content_type, dict(got.metadata)) == (b"t", "text/plain", {"m": "t"})
    assert dict(local.get("p/q").metadata) == {"m": "q"}
    assert list((local.root / TMP_DIR).iterdir()) == []
    assert len(list((local.root / META_DIR).iterdir())) == 2


def test_delete_of_a_missing_key_creates_nothing(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "root")
    store.delete("state/never")
    assert not (tmp_path / "root").exists()


class _TempUnlinkFailsOs:
    """Stands in for ``os`` inside ``qcflow.store.local``: removing a temp data file fails
    with EIO (a flaky disk); everything else is ``os``."""

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)

    @staticmethod
    def unlink(path: Any, *args: Any, **kwargs: Any) -> None:
        if os.fspath(path).endswith(".tmp"):
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        os.unlink(path, *args, **kwargs)


def test_create_if_absent_that_created_never_fails(local: LocalStore, monkeypatch: pytest.MonkeyPatch,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    """Once the object is linked in, the call has created it: a failed temp-file cleanup must
    not turn that into an error, or a caller retrying without its token (or one that
    records the error as the outcome) would take its own claim for someone else's."""
    import qcflow.store.local as local_module

    monkeypatch.setattr(local_module, "os", _TempUnlinkFailsOs())
    with caplog.at_level("WARNING", logger="qcflow.store"):
        assert local.create_if_absent("state/push/records/r/g000000.claim.json", b"{}", metadata={"who": "a"},
                                      claim_token="tok-a") is True
    monkeypatch.undo()
    got = local.get("state/push/records/r/g000000.claim.json")
    assert (got.body, dict(got.metadata)) == (b"{}", {"who": "a"})
    assert local.create_if_absent("state/push/records/r/g000000.claim.json", b"{}", claim_token="tok-a") is True
    assert [r.levelname for r in caplog.records if r.name == "qcflow.store"] == ["WARNING"]
    assert len(list((local.root / TMP_DIR).iterdir())) == 1  # the stray temp file, reported above


class _AfterTempUnlinkOs:
    """Stands in for ``os`` inside ``qcflow.store.local``: right after the first temp data
    file is removed, runs ``claimant`` with that file's (now free) inode number."""

    def __init__(self, claimant: _Claimant) -> None:
        self.claimant, self.fired = claimant, False

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)

    def unlink(self, path: Any, *args: Any, **kwargs: Any) -> None:
        if self.fired or not os.fspath(path).endswith(".tmp"):
            return os.unlink(path, *args, **kwargs)
        self.fired = True
        self.claimant.freed = os.lstat(path).st_ino
        os.unlink(path, *args, **kwargs)
        self.claimant()


def test_losing_claimant_frees_its_inode_only_after_dropping_its_sidecar(local: LocalStore,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Every duplicate event makes a losing claimant. Its staged sidecar must go before its
    temp file does: once the temp file is gone, its inode number can be handed to a
    concurrent create, whose sidecar would then be the one dropped."""
    import qcflow.store.local as local_module

    claims: list[_Claimant] = []
    for round_no in range(3):
        key = f"state/push/records/dup{round_no}/g000000.claim.json"
        assert local.create_if_absent(key, b"first", claim_token="winner")
        claimant = _Claimant(local, -1, f"state/push/records/{round_no}-")
        racing = _AfterTempUnlinkOs(claimant)
        monkeypatch.setattr(local_module, "os", racing)
        assert local.create_if_absent(key, b"duplicate", claim_token="loser") is False
        monkeypatch.undo()
        assert racing.fired and claimant.keys  # positive control: the concurrent creates ran at that moment
        claims.append(claimant)
        assert local.get(key).body == b"first"
    for claimant in claims:
        claimant.assert_intact()
    assert list((local.root / TMP_DIR).iterdir()) == []
