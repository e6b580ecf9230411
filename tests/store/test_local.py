"""LocalStore specifics: on-disk layout, sidecars, temp-file hygiene and filesystem limits."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import pytest

from qcflow.errors import RequestError
from qcflow.store import LocalStore
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
