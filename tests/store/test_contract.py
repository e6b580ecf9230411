"""The ObjectStore contract, run against every adapter (``store`` is parametrized).

Assertions are on what the store holds and returns (keys, bytes, sizes, order), never on the
mere absence of errors: the OSS SDK V2 returns an *empty* listing silently when it cannot
parse an answer, so "no exception" proves nothing.
"""

from __future__ import annotations

import os
import threading
import urllib.request
from datetime import datetime, timedelta
from typing import Any

import pytest

from qcflow.errors import NotFoundError, PermanentError, QcflowError, RequestError
from qcflow.store import InvalidKeyError, InvalidMetadataError, ObjectStore, ObjectWriter, WriterFailedError

from tests.store.conftest import WriteBreaker

ODD_KEYS = ["dir/with space.txt", "plus+sign", "per%20cent", "ünï/cødé-日本.json", "a&b=c?d#e", "tilde~star*"]


def keys(infos: Any) -> list[str]:
    return [i.key for i in infos]


def is_oss(store: ObjectStore) -> bool:
    return type(store).__name__ == "OssStore"


# ---------------------------------------------------------------- basics
def test_store_satisfies_protocol(store: ObjectStore) -> None:
    assert isinstance(store, ObjectStore)
    assert store.url


def test_put_get_round_trip(store: ObjectStore) -> None:
    data = bytes(range(256)) * 3
    etag = store.put("state/a.bin", data, content_type="application/x-test", metadata={"run-id": "r-1", "n": "42"})
    got = store.get("state/a.bin")
    assert got.body == data
    assert got.size == len(data)
    assert got.key == "state/a.bin"
    assert got.etag == etag and etag
    assert got.content_type == "application/x-test"
    assert dict(got.metadata) == {"run-id": "r-1", "n": "42"}
    assert isinstance(got.last_modified, datetime) and got.last_modified.tzinfo is not None

    info = store.head("state/a.bin")
    assert (info.key, info.size, info.etag, info.content_type) == ("state/a.bin", len(data), etag, "application/x-test")
    assert dict(info.metadata) == {"run-id": "r-1", "n": "42"}


def test_default_content_type_and_empty_metadata(store: ObjectStore) -> None:
    store.put("k", b"x")
    got = store.get("k")
    assert got.content_type == "application/octet-stream"
    assert dict(got.metadata) == {}


def test_put_overwrites_and_changes_etag(store: ObjectStore) -> None:
    e1 = store.put("k", b"one", metadata={"v": "1"})
    e2 = store.put("k", b"two-two", content_type="text/plain")
    assert e1 != e2
    got = store.get("k")
    assert (got.body, got.etag, got.content_type, dict(got.metadata)) == (b"two-two", e2, "text/plain", {})


def test_empty_object(store: ObjectStore) -> None:
    store.put("empty", b"")
    assert store.get("empty").body == b""
    assert store.head("empty").size == 0


@pytest.mark.parametrize("op", ["get", "head"])
def test_missing_key_is_not_found(store: ObjectStore, op: str) -> None:
    with pytest.raises(NotFoundError) as info:
        getattr(store, op)("state/nope.json")
    assert isinstance(info.value, PermanentError)


def test_odd_keys_round_trip(store: ObjectStore) -> None:
    for i, key in enumerate(ODD_KEYS):
        store.put(key, f"body-{i}".encode())
    for i, key in enumerate(ODD_KEYS):
        assert store.get(key).body == f"body-{i}".encode()
        assert store.head(key).size == len(f"body-{i}")
    assert keys(store.list()) == sorted(ODD_KEYS, key=lambda k: k.encode())
    store.delete("plus+sign")
    with pytest.raises(NotFoundError):
        store.get("plus+sign")
    assert store.get("per%20cent").body == b"body-2"  # a literal %, not an encoded space


# ----------------------------------------------------------- validation
BAD_KEYS = ["", "/abs", "a//b", "a/", "../x", "a/../b", "./a", "a/./b", "a\\b", "tab\there", "nl\nx", "del\x7f",
            ".qcflow-tmp/x", "x" * 1024, "a\ud800", "lone/\udcff/surrogate"]


@pytest.mark.parametrize("bad", BAD_KEYS)
def test_bad_keys_rejected_everywhere(store: ObjectStore, bad: str) -> None:
    calls = [
        lambda: store.get(bad), lambda: store.head(bad), lambda: store.put(bad, b"x"),
        lambda: store.create_if_absent(bad, b"x"), lambda: store.delete(bad),
        lambda: store.open_writer(bad), lambda: store.signed_get_url(bad, timedelta(minutes=1)),
    ]
    for call in calls:
        with pytest.raises(InvalidKeyError):
            call()
    assert list(store.list()) == []


@pytest.mark.parametrize("bad_prefix", ["/x", "a//", "../", "a\\"])
def test_bad_list_prefix_rejected(store: ObjectStore, bad_prefix: str) -> None:
    with pytest.raises(InvalidKeyError):
        list(store.list(bad_prefix))


@pytest.mark.parametrize("meta", [{"Upper": "x"}, {"under_score": "x"}, {"ok": "ünïcode"}, {"ok": "a\nb"},
                                  {"qcflow-claim": "x"}, {"": "x"}, {"ok": " lead"}, {"ok": "trail "}, {"ok": " "}])
def test_bad_metadata_rejected(store: ObjectStore, meta: dict[str, str]) -> None:
    with pytest.raises(InvalidMetadataError):
        store.put("k", b"x", metadata=meta)
    with pytest.raises(InvalidMetadataError):
        store.create_if_absent("k", b"x", metadata=meta)
    with pytest.raises(NotFoundError):
        store.head("k")


@pytest.mark.parametrize("content_type", [" text/plain", "text/plain ", "", "text/plaïn"])
def test_bad_content_type_rejected_up_front(store: ObjectStore, content_type: str) -> None:
    """``requests`` refuses a header value with leading whitespace and HTTP trims trailing
    spaces: both must be refused before any request (never a retryable TransportError)."""
    for call in (lambda: store.put("k", b"x", content_type=content_type),
                 lambda: store.create_if_absent("k", b"x", content_type=content_type),
                 lambda: store.open_writer("k", content_type=content_type)):
        with pytest.raises(InvalidMetadataError):
            call()
    with pytest.raises(NotFoundError):
        store.head("k")


def test_empty_metadata_value_round_trips(store: ObjectStore) -> None:
    store.put("k", b"x", metadata={"empty": "", "inner": "a b"})
    assert dict(store.get("k").metadata) == {"empty": "", "inner": "a b"}


@pytest.mark.parametrize("data", ["text", 42, None, [1, 2]])
def test_data_must_be_bytes_like(store: ObjectStore, data: Any) -> None:
    for call in (lambda: store.put("k", data), lambda: store.create_if_absent("k", data)):
        with pytest.raises(TypeError, match="bytes"):
            call()
    with store.open_writer("w") as w:
        with pytest.raises(TypeError, match="bytes"):
            w.write(data)
        w.write(b"ok")  # a refused argument wrote nothing and does not break the writer
    assert store.get("w").body == b"ok"
    with pytest.raises(NotFoundError):
        store.head("k")


def test_bytearray_and_memoryview_are_accepted(store: ObjectStore) -> None:
    store.put("a", bytearray(b"ba"))
    assert store.create_if_absent("b", memoryview(b"mv"))
    with store.open_writer("c") as w:
        w.write(memoryview(bytearray(b"wr")))
    assert [store.get(k).body for k in "abc"] == [b"ba", b"mv", b"wr"]


def test_key_error_is_permanent_and_clear(store: ObjectStore) -> None:
    with pytest.raises(InvalidKeyError, match=r"'\.\.' segment") as info:
        store.get("state/../../etc/passwd")
    assert isinstance(info.value, PermanentError)


# ------------------------------------------------------- create_if_absent
def test_create_if_absent_once(store: ObjectStore) -> None:
    assert store.create_if_absent("state/ledger/job-1.json", b'{"by":"a"}', content_type="application/json",
                                  metadata={"owner": "a"}) is True
    assert store.create_if_absent("state/ledger/job-1.json", b'{"by":"b"}', metadata={"owner": "b"}) is False
    got = store.get("state/ledger/job-1.json")
    assert got.body == b'{"by":"a"}'
    assert got.content_type == "application/json"
    assert dict(got.metadata) == {"owner": "a"}  # no internal bookkeeping leaks out
    assert keys(store.list("state/")) == ["state/ledger/job-1.json"]


def test_create_if_absent_claim_token_recognises_own_object(store: ObjectStore) -> None:
    """A caller retrying with the same claim_token (after an uncertain failure) is told the
    stored object is its own; anyone else — or a call without the token — is not."""
    assert store.create_if_absent("state/ledger/j.json", b"mine", metadata={"who": "a"}, claim_token="inv-1:a") is True
    assert store.create_if_absent("state/ledger/j.json", b"mine", metadata={"who": "a"}, claim_token="inv-1:a") is True
    assert store.create_if_absent("state/ledger/j.json", b"theirs", claim_token="inv-2:b") is False
    assert store.create_if_absent("state/ledger/j.json", b"theirs") is False
    got = store.get("state/ledger/j.json")
    assert (got.body, dict(got.metadata)) == (b"mine", {"who": "a"})  # the token is not metadata
    assert dict(store.head("state/ledger/j.json").metadata) == {"who": "a"}
    store.put("plain", b"by put")
    assert store.create_if_absent("plain", b"x", claim_token="inv-1:a") is False  # no token stored: not ours


@pytest.mark.parametrize("token", ["", "has space", " lead", "ünï", "x" * 257, 7])
def test_bad_claim_token_rejected(store: ObjectStore, token: Any) -> None:
    with pytest.raises(InvalidMetadataError):
        store.create_if_absent("k", b"x", claim_token=token)
    with pytest.raises(NotFoundError):
        store.head("k")


def test_create_if_absent_after_delete(store: ObjectStore) -> None:
    assert store.create_if_absent("lease", b"1")
    store.delete("lease")
    assert store.create_if_absent("lease", b"2")
    assert store.get("lease").body == b"2"


def test_create_if_absent_race_has_exactly_one_winner(store: ObjectStore) -> None:
    """Of many racing claimants exactly one wins, and the stored object is the winner's.

    On OSS this proves the adapter's side only (one conditional PUT per claim, a 409 resolved
    by the claim token): moto evaluates ``If-None-Match`` as a non-atomic check-then-put, and
    the atomicity seen here is the test shim's lock on conditional PUTs. On real OSS it rests
    on ``x-oss-forbid-overwrite``. On a local store it is the adapter's own (``os.link``).
    """
    n = 20
    barrier = threading.Barrier(n)
    results: dict[int, bool] = {}
    errors: list[BaseException] = []

    def claim(i: int) -> None:
        try:
            barrier.wait()
            results[i] = store.create_if_absent("state/ledger/race.json", f"winner-{i}".encode(),
                                                metadata={"who": str(i)})
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert len(results) == n
    winners = [i for i, won in results.items() if won]
    assert len(winners) == 1, winners
    got = store.get("state/ledger/race.json")
    assert got.body == f"winner-{winners[0]}".encode()
    assert dict(got.metadata) == {"who": str(winners[0])}


def test_create_if_absent_is_complete_whenever_visible(store: ObjectStore) -> None:
    """Claimants race with large distinct payloads while readers ``get``/``head`` the key in
    a loop: every read is ``NotFoundError`` or the winner's whole payload with the winner's
    metadata and etag — never a torn body, nor the body without its metadata. Afterwards
    each claimant retries with its own claim token: only the winner is told it won. (On a
    local store this catches a create that makes the file with ``O_CREAT|O_EXCL`` and then
    writes it in place.)

    On OSS, as in the race test above, this proves the adapter's side only: one PUT carries
    the whole body, and which PUT wins is decided atomically by the test shim's lock (moto's
    own check is not atomic); on real OSS by ``x-oss-forbid-overwrite``.
    """
    rounds, racers, readers, size = 5, 6, 3, 384 * 1024
    reads_found = reads_absent = 0
    for round_no in range(rounds):
        key = f"state/push/records/r{round_no}/g000000.claim.json"
        payloads = [os.urandom(size) for _ in range(racers)]
        results: dict[int, bool] = {}
        seen: list[tuple[str, bytes | None, int, str, dict[str, str]]] = []
        errors: list[BaseException] = []
        absent: list[int] = []
        start, stop = threading.Barrier(racers + readers), threading.Event()

        def claim(i: int) -> None:
            try:
                start.wait()
                results[i] = store.create_if_absent(key, payloads[i], content_type="application/json",
                                                    metadata={"who": str(i)}, claim_token=f"tok-{round_no}-{i}")
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        def read() -> None:
            try:
                start.wait()
                for n in range(10_000):  # bounded; normally ended by ``stop``
                    if stop.is_set():
                        return
                    try:
                        if n % 2:
                            got = store.get(key)
                            seen.append(("get", got.body, got.size, got.etag, dict(got.metadata)))
                        else:
                            info = store.head(key)
                            seen.append(("head", None, info.size, info.etag, dict(info.metadata)))
                    except NotFoundError:
                        absent.append(1)
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=claim, args=(i,)) for i in range(racers)]
        threads += [threading.Thread(target=read) for _ in range(readers)]
        for t in threads:
            t.start()
        for t in threads[:racers]:
            t.join(30)
        stop.set()
        for t in threads[racers:]:
            t.join(30)
        assert errors == []
        winners = [i for i, won in results.items() if won]
        assert len(results) == racers and len(winners) == 1, results
        (w,) = winners
        final = store.get(key)
        assert final.body == payloads[w] and dict(final.metadata) == {"who": str(w)}
        for op, body, length, etag, metadata in seen:
            assert length == size and (body is None or body == payloads[w]), f"{op}: a torn or foreign object"
            assert (metadata, etag) == ({"who": str(w)}, final.etag), f"{op}: the body without its own metadata"
        for i in range(racers):  # a retry after an uncertain outcome: only the winner's token wins
            assert store.create_if_absent(key, payloads[i], claim_token=f"tok-{round_no}-{i}") is (i == w)
        assert store.get(key).body == payloads[w]
        reads_found += len(seen)
        reads_absent += len(absent)
    # Positive control: readers really overlapped the claims (on OSS a PUT may land before
    # the first read, so only the local store is sure to show the "absent" side too).
    assert reads_found > 0
    assert reads_absent > 0 or is_oss(store)


# ---------------------------------------------------------------- listing
def test_list_order_sizes_prefix_and_start_after(store: ObjectStore) -> None:
    names = ["a-c", "a/b", "a/b/c", "a.txt", "a0", "b", "results/dt=2024-01-02/hour=00/part-1.jsonl",
             "results/dt=2024-01-02/hour=01/part-1.jsonl", "results/dt=2024-01-03/hour=00/part-1.jsonl"]
    # "a/b" and "a/b/c" cannot both exist on a filesystem; keep the set portable.
    names.remove("a/b/c")
    for i, name in enumerate(names):
        store.put(name, b"x" * (i + 1))
    listed = list(store.list())
    expected = sorted(names, key=lambda k: k.encode())
    assert keys(listed) == expected
    assert expected.index("a-c") < expected.index("a/b")  # '-' sorts before '/'
    assert {i.key: i.size for i in listed} == {name: i + 1 for i, name in enumerate(names)}
    assert all(i.etag for i in listed)
    assert all(isinstance(i.last_modified, datetime) for i in listed)

    assert keys(store.list("a/")) == ["a/b"]
    assert keys(store.list("a")) == [k for k in expected if k.startswith("a")]
    assert keys(store.list("results/dt=2024-01-02")) == [
        "results/dt=2024-01-02/hour=00/part-1.jsonl", "results/dt=2024-01-02/hour=01/part-1.jsonl"]
    assert keys(store.list("results/", start_after="results/dt=2024-01-02/hour=00/part-1.jsonl")) == [
        "results/dt=2024-01-02/hour=01/part-1.jsonl", "results/dt=2024-01-03/hour=00/part-1.jsonl"]
    assert keys(store.list(start_after="a0")) == [k for k in expected if k > "a0"]
    assert keys(store.list(start_after="a/")) == [k for k in expected if k > "a/"]
    assert list(store.list("zzz")) == []


def test_list_while_creating_under_the_prefix(store: ObjectStore) -> None:
    """The push ledger lists ``state/push/records/`` while other threads create claims under
    it. Every listing taken meanwhile is in strict key order with no duplicates, lists only
    complete objects that were really created, and misses none that existed before it began.
    (On OSS, pages of two keys: the listing crosses many continuation tokens while keys are
    created both ahead of it and behind it.)"""
    if is_oss(store):
        store.list_page_size = 2  # type: ignore[attr-defined]
    prefix = "state/push/records/"
    body = b'{"generation": 0}' * 20
    early = [f"{prefix}{i:02d}-0/g000000.claim.json" for i in range(0, 64, 4)]
    for key in early:
        assert store.create_if_absent(key, body, claim_token="early")
    creators, per = 3, 16
    all_keys = set(early) | {f"{prefix}{j * 4 + c + 1:02d}-{c}/g000000.claim.json"
                             for c in range(creators) for j in range(per)}
    created: set[str] = set(early)
    lock, errors = threading.Lock(), []
    overlapped = 0  # listings during which some claim was created

    def create(c: int) -> None:
        try:
            for j in range(per):
                key = f"{prefix}{j * 4 + c + 1:02d}-{c}/g000000.claim.json"
                assert store.create_if_absent(key, body, content_type="application/json", claim_token=f"c{c}")
                with lock:
                    created.add(key)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=create, args=(c,)) for c in range(creators)]
    for t in threads:
        t.start()
    for _ in range(200):  # bounded; normally ended when the creators are done
        with lock:
            before = set(created)
        listed = list(store.list(prefix))
        with lock:
            overlapped += len(created) > len(before)
        names = keys(listed)
        assert names == sorted(set(names), key=lambda k: k.encode()), "out of order or duplicated"
        assert before <= set(names), f"missed {sorted(before - set(names))[:3]}"
        assert set(names) <= all_keys
        assert all(i.size == len(body) and i.etag for i in listed)
        if not any(t.is_alive() for t in threads):
            break
    for t in threads:
        t.join(30)
    assert errors == []
    assert overlapped > 0  # positive control: claims were created while a listing ran
    assert set(keys(store.list(prefix))) == all_keys


def test_list_is_lazy(store: ObjectStore) -> None:
    for i in range(3):
        store.put(f"p/{i}", b"x")
    it = store.list("p/")
    assert iter(it) is it  # an iterator, not a materialised list
    assert next(it).key == "p/0"
    assert [i.key for i in it] == ["p/1", "p/2"]


def test_list_pages_across_many_pages(store: ObjectStore) -> None:
    n = 11
    for i in range(n):
        store.put(f"state/leases/{i:03d}", b"l" * i)
    store.put("state/other", b"o")
    if is_oss(store):
        store.list_page_size = 3  # type: ignore[attr-defined]
        calls = []
        real = store._client.list_objects_v2  # type: ignore[attr-defined]

        def counting(request: Any, **kw: Any) -> Any:
            calls.append(request.continuation_token)
            return real(request, **kw)

        store._client.list_objects_v2 = counting  # type: ignore[attr-defined]
        listed = list(store.list("state/leases/"))
        assert len(calls) == 4  # 3 + 3 + 3 + 2
        assert calls[0] is None and all(calls[1:])
    else:
        listed = list(store.list("state/leases/"))
    assert keys(listed) == [f"state/leases/{i:03d}" for i in range(n)]
    assert [i.size for i in listed] == list(range(n))


def test_object_bytes_are_never_rewritten(store: ObjectStore) -> None:
    """An object whose bytes look like an S3 API answer comes back byte for byte (the OSS
    test harness translates API answers only, never object data)."""
    data = (b'<?xml version="1.0"?><ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
            b"<Contents><Key>k</Key></Contents></ListBucketResult>")
    store.put("doc.xml", data, content_type="application/xml")
    got = store.get("doc.xml")
    assert got.body == data
    assert store.head("doc.xml").size == len(data) == got.size


# ------------------------------------------------------------------ delete
def test_delete_is_idempotent(store: ObjectStore) -> None:
    store.put("d/x", b"1")
    store.delete("d/x")
    store.delete("d/x")
    store.delete("never/existed")
    with pytest.raises(NotFoundError):
        store.head("d/x")
    assert list(store.list("d/")) == []


# ------------------------------------------------------------------ writer
PART = 100 * 1024  # OSS's minimum part size


def _payload(n: int) -> bytes:
    return os.urandom(n)


def test_writer_multipart_round_trip(store: ObjectStore) -> None:
    data = _payload(5 * PART + 12345)
    with store.open_writer("results/dt=2024-01-01/hour=00/part-a.jsonl", content_type="application/x-ndjson",
                           metadata={"rows": "7"}, part_size=PART) as w:
        assert isinstance(w, ObjectWriter)
        for off in range(0, len(data), 70_000):  # chunks that do not align with parts
            w.write(data[off:off + 70_000])
    if is_oss(store):
        assert len(w._parts) >= 4  # type: ignore[attr-defined] - it really was a multipart upload
    got = store.get("results/dt=2024-01-01/hour=00/part-a.jsonl")
    assert got.size == len(data)
    assert got.body == data
    assert got.etag == w.etag
    assert got.content_type == "application/x-ndjson"
    assert dict(got.metadata) == {"rows": "7"}
    assert [(i.key, i.size) for i in store.list("results/")] == [("results/dt=2024-01-01/hour=00/part-a.jsonl", len(data))]


def test_writer_small_write_and_empty(store: ObjectStore) -> None:
    with store.open_writer("small", part_size=PART) as w:
        w.write(b"line\n")
    assert store.get("small").body == b"line\n"
    with store.open_writer("nothing", part_size=PART):
        pass
    assert store.get("nothing").body == b""


class Crash(Exception):
    pass


def _in_progress(store: ObjectStore) -> list[str]:
    """What is in flight for this store: OSS multipart upload ids, local temp files."""
    if is_oss(store):
        import alibabacloud_oss_v2 as oss

        uploads = store._client.list_multipart_uploads(  # type: ignore[attr-defined]
            oss.ListMultipartUploadsRequest(bucket=store.bucket, prefix=store.prefix + "/"))  # type: ignore[attr-defined]
        return [u.upload_id for u in uploads.uploads or []]
    tmp = store.root / ".qcflow-tmp"  # type: ignore[attr-defined]
    return [p.name for p in tmp.iterdir()] if tmp.is_dir() else []


def test_writer_crash_leaves_nothing(store: ObjectStore) -> None:
    with pytest.raises(Crash):
        with store.open_writer("results/crash.jsonl", part_size=PART) as w:
            for _ in range(6):
                w.write(_payload(PART))
            if is_oss(store):
                assert len(w._parts) >= 3  # type: ignore[attr-defined] - parts were uploaded
            assert len(_in_progress(store)) == 1  # positive control: the upload is seen in flight
            raise Crash("killed mid-write")
    with pytest.raises(NotFoundError):
        store.get("results/crash.jsonl")
    assert list(store.list()) == []
    assert _in_progress(store) == []  # the multipart upload was aborted / the temp file removed


def test_writer_abort_leaves_nothing(store: ObjectStore) -> None:
    with store.open_writer("aborted", part_size=PART) as w:
        w.write(_payload(3 * PART))
        assert len(_in_progress(store)) == 1  # positive control
        w.abort()
    with pytest.raises(NotFoundError):
        store.head("aborted")
    assert _in_progress(store) == []
    with pytest.raises(RequestError):
        w.write(b"more")


@pytest.mark.parametrize("then", ["clean-exit", "abort"])
def test_writer_failed_write_caught_in_block_commits_nothing(store: ObjectStore, write_breaker: WriteBreaker,
                                                             then: str) -> None:
    """A write error caught inside the block must neither publish a torn object (what was
    written before the failure) nor let a clean exit pass silently with nothing committed."""
    store.put("results/r.jsonl", b"previous\n")

    def body() -> None:
        with store.open_writer("results/r.jsonl", part_size=PART) as w:
            w.write(b"A" * (2 * PART))  # written (local) / part 1 uploaded (OSS)
            write_breaker.arm()
            with pytest.raises(QcflowError) as failed:
                w.write(b"B" * (2 * PART))  # a short write then ENOSPC / part 2 keeps failing
            assert not isinstance(failed.value, WriterFailedError)
            write_breaker.disarm()  # the disk has room again / OSS is back
            with pytest.raises(WriterFailedError, match="nothing was committed") as again:
                w.write(b"C\n")
            assert again.value.__cause__ is failed.value
            with pytest.raises(WriterFailedError):
                w.commit()
            if then == "abort":
                w.abort()  # the caller gives up explicitly: a clean exit is then silent

    if then == "clean-exit":
        with pytest.raises(WriterFailedError, match="nothing was committed") as info:
            body()
        assert isinstance(info.value, PermanentError)
    else:
        body()
    assert store.get("results/r.jsonl").body == b"previous\n"
    assert keys(store.list()) == ["results/r.jsonl"]
    assert _in_progress(store) == []


def test_writer_replaces_atomically(store: ObjectStore) -> None:
    store.put("results/r.jsonl", b"old\n")
    data = _payload(4 * PART)
    with store.open_writer("results/r.jsonl", part_size=PART) as w:
        w.write(data)
        assert store.get("results/r.jsonl").body == b"old\n"  # nothing visible before commit
    assert store.get("results/r.jsonl").body == data


# ------------------------------------------------------------- signed URLs
def test_signed_get_url_fetches_object(store: ObjectStore) -> None:
    """For OSS this checks plumbing only: moto does not verify signatures."""
    store.put("share/ünï code+%.txt", b"shared bytes", content_type="text/plain")
    url = store.signed_get_url("share/ünï code+%.txt", timedelta(minutes=10))
    if is_oss(store):
        import httpx

        assert "x-oss-signature-version=OSS4-HMAC-SHA256" in url  # V4 presign, as in production
        assert "x-oss-security-token=" in url  # the STS token travels with the URL
        resp = httpx.get(url)
        assert resp.status_code == 200
        assert resp.content == b"shared bytes"
    else:
        assert url.startswith("file://")
        with urllib.request.urlopen(url) as resp:  # noqa: S310 - a file: URL we just made
            assert resp.read() == b"shared bytes"


@pytest.mark.parametrize("expires", [timedelta(0), timedelta(days=8)])
def test_signed_url_lifetime_bounds(store: ObjectStore, expires: timedelta) -> None:
    with pytest.raises(RequestError):
        store.signed_get_url("k", expires)
