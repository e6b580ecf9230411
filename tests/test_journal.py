"""Write-once JSON records, their reading policies and key names (``qcflow.journal``), and the
one map of the store's prefixes (``qcflow.layout``), on both store adapters."""

from __future__ import annotations

import re
from typing import Any

import pytest

from qcflow import journal, layout
from qcflow.errors import RequestError, TransportError
from qcflow.store import ObjectStore
from qcflow.store.keys import validate_key

from tests.harvest.conftest import twin
from tests.store.conftest import moto_oss, store  # noqa: F401 - fixtures: each test taking `store` runs on both adapters


class LostAnswer:
    """A store whose first ``create_if_absent`` lands but whose answer is lost."""

    def __init__(self, inner: ObjectStore) -> None:
        self.inner = inner
        self.url = inner.url
        self.calls = 0

    def create_if_absent(self, key: str, data: bytes, **kw: Any) -> bool:
        self.calls += 1
        created = self.inner.create_if_absent(key, data, **kw)
        if self.calls == 1:
            raise TransportError(f"answer to the create of {key} lost (created: {created})")
        return created

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_write_once_has_one_winner_and_never_overwrites(store: ObjectStore) -> None:
    assert journal.write_once(store, "state/t/a.json", {"who": "a"}, token="tok-a")
    assert not journal.write_once(twin(store), "state/t/a.json", {"who": "b"}, token="tok-b")
    assert journal.read(store, "state/t/a.json") == {"who": "a"}


def test_a_lost_answer_retried_with_the_same_token_is_ours(store: ObjectStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(journal.time, "sleep", lambda seconds: None)
    lossy = LostAnswer(store)
    assert journal.write_once(lossy, "state/t/lost.json", {"n": 1}, token="run-1")
    assert lossy.calls == 2
    assert not journal.write_once(store, "state/t/lost.json", {"n": 2}, token="run-2"), "someone else's stays theirs"
    assert journal.read(store, "state/t/lost.json") == {"n": 1}


def test_one_attempt_leaves_the_retry_to_the_caller(store: ObjectStore) -> None:
    lossy = LostAnswer(store)
    with pytest.raises(TransportError):
        journal.write_once(lossy, "state/t/once.json", {"n": 1}, token="inv-1", attempts=1)
    assert journal.write_once(lossy, "state/t/once.json", {"n": 1}, token="inv-1", attempts=1)


def test_a_content_token_makes_the_same_record_ours_and_another_not(store: ObjectStore) -> None:
    record = {"state": "failed", "generation": 0}
    assert journal.write_once(store, "state/t/o.json", record, token=journal.content_token(record))
    assert journal.write_once(twin(store), "state/t/o.json", dict(record), token=journal.content_token(dict(record)))
    other = {**record, "state": "submitted"}
    assert not journal.write_once(store, "state/t/o.json", other, token=journal.content_token(other))


def test_records_are_stored_compact_and_sorted(store: ObjectStore) -> None:
    journal.write_once(store, "state/t/s.json", {"b": 1, "a": "é"}, token="t")
    got = store.get("state/t/s.json")
    assert got.body == '{"a":"é","b":1}'.encode() and got.content_type == journal.JSON


def test_markers_are_empty_and_created_once(store: ObjectStore) -> None:
    assert journal.mark(store, "state/t/m")
    assert not journal.mark(twin(store), "state/t/m")
    assert store.get("state/t/m").body == b""


@pytest.mark.parametrize("body", [b"not json", b"[1]", b"null", b'"text"'])
def test_the_strict_read_refuses_anything_but_a_json_object(store: ObjectStore, body: bytes) -> None:
    store.put("state/t/bad.json", body)
    with pytest.raises(RequestError, match="not a JSON object"):
        journal.read(store, "state/t/bad.json")


def test_the_lenient_read_returns_any_json_and_raises_on_a_body_that_does_not_parse(store: ObjectStore) -> None:
    store.put("state/t/list.json", b"[1]")
    assert journal.read(store, "state/t/list.json", strict=False) == [1]
    store.put("state/t/null.json", b"null")
    assert journal.read(store, "state/t/null.json", strict=False) is None
    store.put("state/t/bad.json", b"not json")
    with pytest.raises(ValueError):
        journal.read(store, "state/t/bad.json", strict=False)


def test_an_absent_record_reads_as_none_either_way(store: ObjectStore) -> None:
    assert journal.read(store, "state/t/none.json") is None
    assert journal.read(store, "state/t/none.json", strict=False) is None


def test_sequence_names_sort_by_number_and_parse_back() -> None:
    names = [journal.seq_name(n, suffix) for n, suffix in ((9, ".json"), (10, ".json"), (10, ".released"))]
    assert names == sorted(names) and names[0] == "000000000009.json"
    assert [journal.seq_of(n) for n in names] == [9, 10, 10]
    assert journal.seq_of("latest.json") is None and journal.seq_of("x") is None


@pytest.mark.parametrize(
    "value",
    ["A6BEC8D2-9A5B-4BE5-8432-4F635E3A0B11|job-1", "T|", "T|odd/id with space", "作业|1", "%2E", ".", "..",
     ".qcflow-x", ".hidden|x", "a" * 300],
)
def test_key_segments_are_one_valid_segment_and_reversible(value: str) -> None:
    segment = journal.key_segment(value)
    validate_key(f"state/t/{segment}.json")
    assert "/" not in segment and journal.segment_value(segment) == value


def test_key_segments_keep_the_names_stores_already_hold() -> None:
    """What harvest stores hold was written with ``quote(value, safe="-_.")``: unchanged."""
    assert journal.key_segment("T-1|job_2.x") == "T-1%7Cjob_2.x"
    assert journal.key_segment("T|odd/id with space") == "T%7Codd%2Fid%20with%20space"
    assert journal.key_segment(".hidden|x") == ".hidden%7Cx"


def test_lookup_segments_are_bounded() -> None:
    assert journal.lookup_segment("job-123") == "job-123"
    assert journal.lookup_segment("odd id") == "odd%20id"
    long = journal.lookup_segment("x" * 300)
    assert long == journal.hashed_segment("x" * 300) and re.fullmatch(r"h-[0-9a-f]{40}", long)
    assert journal.lookup_segment("") == journal.hashed_segment("")


# ------------------------------------------------------------------------------ layout


def _prefixes() -> dict[str, str]:
    return {name: value for name, value in vars(layout).items() if name.isupper() and isinstance(value, str)}


def test_every_tree_is_named_once() -> None:
    assert layout.TREES == (layout.STATE, layout.RESULTS, layout.REVIEWS)


def test_every_prefix_is_under_state_or_results_and_named_once() -> None:
    prefixes = _prefixes()
    assert all(value.endswith("/") for value in prefixes.values()), prefixes
    assert all(value.startswith(layout.TREES) for value in prefixes.values()), prefixes
    assert len(set(prefixes.values())) == len(prefixes), "two names for one prefix"
    for value in set(prefixes.values()) - set(layout.TREES):  # one tree: each parent is named too
        assert value.rstrip("/").rsplit("/", 1)[0] + "/" in prefixes.values(), value


def test_every_prefix_is_drawn_in_the_tree() -> None:
    tree = layout.__doc__ or ""
    for name, value in _prefixes().items():
        last = value.rstrip("/").rsplit("/", 1)[-1]
        assert f"{last}/" in tree, f"{name} ({value}) is not in layout's docstring"
