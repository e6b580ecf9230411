"""The push ledger on both store adapters (a local folder; OSS over moto's server)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from qcflow import journal, layout
from qcflow.ledger import Ledger, Outcome, _legacy_segment, recording_id
from qcflow.store import ObjectStore
from tests.store.conftest import moto_oss, store  # noqa: F401 - fixtures

LOC = "oss://recordings/ccc/job-1.mkv"


def claim(ledger: Ledger, token: str, *, now: float | None = None, ttl: float = 60.0, replay: bool = False):
    now = time.time() if now is None else now
    return ledger.claim(LOC, token=token, now=now, expires_at=now + ttl, key="ccc/job-1.mkv", contact_id="job-1", replay=replay)


def outcome(generation: int, state: str = "submitted", **fields: object) -> Outcome:
    return Outcome(generation=generation, state=state, recorded_at=time.time(), location=LOC, contact_id="job-1", **fields)  # type: ignore[arg-type]


def test_racing_claimants_exactly_one_proceeds(store: ObjectStore) -> None:
    ledger = Ledger(store)
    decisions: list[str] = []
    barrier = threading.Barrier(8)

    def racer(i: int) -> None:
        barrier.wait()
        decisions.append(claim(ledger, f"token-{i}").action)

    threads = [threading.Thread(target=racer, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(decisions) == ["busy"] * 7 + ["proceed"]


def test_a_fresh_claim_is_certain_and_a_retry_of_it_is_not(store: ObjectStore) -> None:
    ledger = Ledger(store)
    first = claim(ledger, "fc-req-1")
    assert (first.action, first.generation, first.uncertain) == ("proceed", 0, False)
    again = claim(ledger, "fc-req-1")  # FC retried the same invocation
    assert (again.action, again.generation, again.uncertain) == ("proceed", 0, True)
    other = claim(ledger, "fc-req-2")
    assert other.action == "busy" and other.busy_until == first.expires_at


def test_an_expired_claim_is_taken_over_as_uncertain(store: ObjectStore) -> None:
    ledger = Ledger(store)
    now = time.time()
    claim(ledger, "dead", now=now - 120, ttl=60)
    taken = claim(ledger, "alive", now=now)
    assert (taken.action, taken.generation, taken.uncertain) == ("proceed", 1, True)
    # our own claim, expired, is not resumed as ours: it is taken over like anyone's
    assert claim(ledger, "dead", now=now).action == "busy"


def test_submitted_is_final_and_failed_only_yields_to_replay(store: ObjectStore) -> None:
    ledger = Ledger(store)
    claim(ledger, "a")
    ledger.record(outcome(0, "failed", code="NotExists.ContactId"))
    assert claim(ledger, "b").action == "failed"
    assert [g for _, g in ledger.failures()] == [0]
    replay = claim(ledger, "c", replay=True)
    assert (replay.action, replay.generation, replay.uncertain) == ("proceed", 1, False)
    ledger.record(outcome(1, task_id="T-1"))
    assert claim(ledger, "d", replay=True).action == "submitted"
    assert ledger.read(recording_id(LOC)).task_id == "T-1"


def test_a_failure_after_an_uncertain_attempt_makes_the_replay_look_first(store: ObjectStore) -> None:
    ledger = Ledger(store)
    claim(ledger, "a")
    ledger.record(outcome(0, "failed", code="InvalidParameter", uncertain=True))
    assert claim(ledger, "b", replay=True).uncertain


def test_recording_an_outcome_twice_keeps_the_first(store: ObjectStore) -> None:
    ledger = Ledger(store)
    claim(ledger, "a")
    first = ledger.record(outcome(0, task_id="T-1"))
    second = ledger.record(outcome(0, task_id="T-2"))
    assert first.task_id == second.task_id == "T-1"


def test_unknown_task_ids_are_indexed_and_filled_in_once(store: ObjectStore) -> None:
    ledger = Ledger(store)
    claim(ledger, "a")
    ledger.record(outcome(0, task_id=None, via="call_uuid_repeated"))
    assert ledger.contacts_with_unknown_task() == {"job-1"}
    ledger.record_task_id("job-1", "T-9")
    assert ledger.contacts_with_unknown_task() == set()
    assert ledger.read(recording_id(LOC)).task_id == "T-9"


def test_entries_stream_every_recording(store: ObjectStore) -> None:
    ledger = Ledger(store)
    for i in range(3):
        now = time.time()
        ledger.claim(f"oss://b/k{i}.mkv", token="t", now=now, expires_at=now + 60)
    assert len({e.rid for e in ledger.entries()}) == 3


ODD_CONTACTS = ["job 1", "作业-1", ".job-1", ".", "..", ".qcflow-1", "x" * 300, "j" * 201 + "|x"]


def test_odd_contact_ids_are_marked_and_found(store: ObjectStore) -> None:
    ledger = Ledger(store)
    for contact in ODD_CONTACTS:
        assert not ledger.contact_pushed(contact)
        ledger.mark_contact_push(contact, f"ccc:contact/{contact}")
        assert ledger.contact_pushed(contact), contact
    assert not ledger.contact_pushed("job-2")


def test_contacts_marked_under_the_legacy_encoding_are_still_found(store: ObjectStore) -> None:
    """Ledgers written before ``journal.lookup_segment`` named odd ContactIds otherwise."""
    ledger = Ledger(store)
    for contact in ODD_CONTACTS:
        legacy = _legacy_segment(contact)
        store.create_if_absent(f"{layout.PUSH_BY_CONTACT}{legacy}", b'{"contact_id":"x"}')
        assert ledger.contact_pushed(contact), contact


def test_unknown_task_ids_indexed_under_the_legacy_encoding_are_filled_in(store: ObjectStore) -> None:
    ledger = Ledger(store)
    contact = "job 1"
    now = time.time()
    ledger.claim(LOC, token="a", now=now, expires_at=now + 60, contact_id=contact)
    rid = recording_id(LOC)
    store.create_if_absent(f"{layout.PUSH_UNKNOWN_TASK}{_legacy_segment(contact)}/{rid}", b'{"contact_id":"job 1"}')
    assert ledger.contacts_with_unknown_task() == {contact}
    ledger.record_task_id(contact, "T-7")
    assert ledger.contacts_with_unknown_task() == set()
    assert ledger.read(rid).task_id == "T-7"


def test_plain_contact_ids_keep_their_key() -> None:
    assert journal.lookup_segment("job-123") == _legacy_segment("job-123") == "job-123"


class _KilledAfterTheClaim(Exception):
    """The claimant dies the instant its claim has landed."""


class _DiesAfterClaiming:
    """A store whose process is killed right after a claim is created (before anything else is written)."""

    def __init__(self, inner: ObjectStore) -> None:
        self.inner = inner
        self.url = inner.url

    def create_if_absent(self, key: str, data: bytes, **kw: Any) -> bool:
        created = self.inner.create_if_absent(key, data, **kw)
        if key.endswith(".claim.json"):
            raise _KilledAfterTheClaim(key)
        return created

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_a_claimant_killed_right_after_its_claim_stays_findable_by_replay(store: ObjectStore) -> None:
    """The open marker is written before the claim: whatever instant the claimant dies at, and even once
    FC has given up on its retries, ``qcflow replay`` (``Ledger.abandoned``) finds the recording."""
    now = 1_700_000_000.0
    with pytest.raises(_KilledAfterTheClaim):
        Ledger(_DiesAfterClaiming(store)).claim("oss://b/killed.mkv", token="fc-1", now=now, expires_at=now + 60)
    found = [(entry.claims[generation].location, generation) for entry, generation in Ledger(store).abandoned(now + 120)]
    assert found == [("oss://b/killed.mkv", 0)]


# --------------------------------------------------------------------------- release (issue 22 #1)


def test_a_released_claim_lets_a_rerun_claim_at_once_and_without_a_lookup(store: ObjectStore) -> None:
    ledger = Ledger(store)
    now = time.time()
    first = claim(ledger, "cli-run-1", now=now)
    assert first.created and claim(ledger, "cli-run-1", now=now).created is False, "created only by the call that made it"
    assert claim(ledger, "cli-run-2", now=now).action == "busy"
    assert ledger.release(LOC, 0, token="cli-run-1", now=now)
    assert ledger.release(LOC, 0, token="cli-run-1", now=now), "a retried release is its own"
    rerun = claim(ledger, "cli-run-2", now=now)
    assert (rerun.action, rerun.generation, rerun.uncertain, rerun.created) == ("proceed", 1, False, True)
    assert list(store.list(layout.PUSH_OPEN)) and [k.key for k in store.list(layout.PUSH_OPEN)] == [
        f"{layout.PUSH_OPEN}{recording_id(LOC)}.g000001"
    ], "the released generation's open marker is gone, the new one's is there"


def test_only_the_holder_of_a_live_unsettled_latest_claim_may_release_it(store: ObjectStore) -> None:
    ledger = Ledger(store)
    now = time.time()
    claim(ledger, "cli-run-1", now=now, ttl=60)
    assert not ledger.release(LOC, 0, token="someone-else", now=now), "another token"
    assert not ledger.release(LOC, 0, token="cli-run-1", now=now + 61), "expired: it may be taken over already"
    assert not ledger.release(LOC, 1, token="cli-run-1", now=now), "no such generation"
    ledger.record(outcome(0, "failed", code="X"))
    assert not ledger.release(LOC, 0, token="cli-run-1", now=now), "settled"
    assert ledger.read(recording_id(LOC)).released == set()


def test_a_released_replay_claim_leaves_the_recording_failed_and_replayable(store: ObjectStore) -> None:
    ledger = Ledger(store)
    now = time.time()
    claim(ledger, "fc-1", now=now)
    ledger.record(outcome(0, "failed", code="NotExists.ContactId"))
    replaying = claim(ledger, "replay-1", now=now, replay=True)
    assert (replaying.action, replaying.generation) == ("proceed", 1)
    assert ledger.release(LOC, 1, token="replay-1", now=now)
    assert claim(ledger, "fc-2", now=now).action == "failed", "a plain push still sees the failure"
    assert (recording_id(LOC), 0) in list(ledger.failures())
    again = claim(ledger, "replay-2", now=now, replay=True)
    assert (again.action, again.generation, again.uncertain) == ("proceed", 2, False)


def test_releasing_a_takeover_keeps_the_dead_claim_uncertain_and_findable(store: ObjectStore) -> None:
    """Generation 0 died (it may have sent); 1 took it over and was released unsent: the next
    claimant must still look in SCA, and ``qcflow replay`` must still find generation 0."""
    ledger = Ledger(store)
    now = time.time()
    claim(ledger, "dead", now=now - 120, ttl=60)
    taken = claim(ledger, "cli-run-1", now=now)
    assert (taken.generation, taken.uncertain) == (1, True)
    assert [g for _, g in ledger.abandoned(now)] == [], "generation 1 is open: 0's marker waits, unreported"
    assert ledger.release(LOC, 1, token="cli-run-1", now=now)
    assert [g for _, g in ledger.abandoned(now)] == [0], "generation 0 is still findable by replay"
    nxt = claim(ledger, "cli-run-2", now=now)
    assert (nxt.generation, nxt.uncertain) == (2, True), "0 may have reached SCA: look first"
