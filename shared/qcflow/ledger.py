"""The push ledger: one immutable history per recording, claimed atomically, in ``state/push/``.

Why a ledger: OSS triggers may deliver an event twice, FC retries failed async invocations
(hours later, beyond ``callUuid``'s 2-hour window), and several instances may run at once.
The ledger is the primary exactly-once guarantee; ``callUuid`` is only the second line.

Layout (prefixes in ``qcflow.layout``; every object is created once with ``create_if_absent``
and never overwritten, since conditional overwrite on OSS is unconfirmed: ``qcflow.journal``)::

    state/push/records/<rid>/g000000.claim.json     who works on generation 0, until when
    state/push/records/<rid>/g000000.outcome.json   submitted (taskId…) or failed (code…)
    state/push/records/<rid>/g000001.claim.json     a takeover of an expired claim, or a replay
    state/push/records/<rid>/g000001.released.json  its holder sent nothing and let it go (the CLI)
    state/push/records/<rid>/task-id.json           a taskId learnt later (harvest, from callId)
    state/push/failed/<rid>.g000000                 index of failures, for ``qcflow replay``
    state/push/unknown-task/<contact>/<rid>         submitted with the taskId unknown
    state/push/open/<rid>.g000000                   a generation claimed and not yet settled
    state/push/by-contact/<contact>                 a push by ContactId (``ccc:contact/…``) happened

``<rid>`` is a hash of the recording's location (``oss://bucket/key``): the same object always
maps to the same history. A *generation* is one attempt to settle the recording: its claim
is won by exactly one invocation (create-if-absent), and only the winner writes its outcome.
A claim carries an expiry (the claimant's own deadline plus a margin): an invocation that
crashed leaves a claim without an outcome, which anyone may take over once it has expired
by claiming the next generation. Taking over, or recognising one's own claim on a retry,
means an earlier attempt may have reached SCA: the caller must look before sending again.

A claim's holder that knows it sent nothing (``qcflow push`` interrupted, or failing retryably
before its ``UploadAudioData``) *releases* it (``Ledger.release``): a release record beside the
claim says that generation never reached SCA, so a rerun claims the next one at once, without a
lookup, instead of waiting for the claim to expire. A released generation counts for nothing
but its number. The push function never releases: its claims keep the recording findable by
``qcflow replay`` after FC gives up.

``<contact>`` is ``journal.lookup_segment`` of the ContactId. Ledgers written before it used
another encoding for ContactIds that are not ``[A-Za-z0-9-_.]`` (``_legacy_segment``): the
two keys differ only for such ids, and then the old key is looked up too.

The module is a little over 400 lines because the history, its claim rules and the indexes
kept beside it (failures, open generations, pushes by ContactId, unknown taskIds) must agree:
they change together.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from qcflow import journal, layout
from qcflow.errors import NotFoundError
from qcflow.store import ObjectStore

log = logging.getLogger("qcflow.ledger")

#: Generations per recording before the ledger refuses to go on (a replay loop, a bug).
MAX_GENERATIONS = 1000
#: Rounds of read-and-claim: a lost race re-reads once or twice, then settles as busy.
_CLAIM_ROUNDS = 3

OutcomeState = Literal["submitted", "failed"]


def recording_id(location: str) -> str:
    """The ledger id of a recording: stable, key-safe, independent of the key's characters."""
    return hashlib.sha256(location.encode("utf-8")).hexdigest()[:40]


def call_uuid_for(location: str, etag: str | None) -> str:
    """SCA's ``callUuid``: deterministic per recording content (location + ETag), so a retry
    within SCA's 2-hour window is refused as a repeat instead of creating a second task."""
    return hashlib.sha256(f"{location}\n{etag or ''}".encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Claim:
    generation: int
    token: str
    claimed_at: float
    expires_at: float
    location: str
    key: str | None = None
    etag: str | None = None
    contact_id: str | None = None
    replay: bool = False


@dataclass(frozen=True)
class Outcome:
    generation: int
    state: OutcomeState
    recorded_at: float
    location: str
    key: str | None = None
    etag: str | None = None
    contact_id: str | None = None
    task_id: str | None = None
    call_uuid: str | None = None
    voice_url_strategy: str | None = None
    code: str | None = None
    message: str | None = None
    request_id: str | None = None
    attempts: int | None = None
    #: The outcome is "submitted" because SCA said the callUuid was seen, or a lookup found it.
    via: str | None = None
    #: An attempt of this generation got no answer: the recording may be in SCA even if failed.
    uncertain: bool = False
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class LedgerEntry:
    """What the ledger knows of one recording: its claims and outcomes, by generation."""

    rid: str
    claims: dict[int, Claim] = field(default_factory=dict)
    outcomes: dict[int, Outcome] = field(default_factory=dict)
    task_id_learnt: str | None = None
    #: Generations whose holder released them unsent: they count for their number only.
    released: set[int] = field(default_factory=set)

    @property
    def latest_generation(self) -> int | None:
        """The latest generation that was not released."""
        live = [g for g in self.claims if g not in self.released]
        return max(live) if live else None

    @property
    def next_generation(self) -> int:
        """The number a new claim takes (released generations keep theirs)."""
        return max(self.claims) + 1 if self.claims else 0

    @property
    def latest_claim(self) -> Claim | None:
        gen = self.latest_generation
        return None if gen is None else self.claims[gen]

    @property
    def outcome(self) -> Outcome | None:
        """The outcome of the latest generation (None while it is in flight)."""
        gen = self.latest_generation
        return None if gen is None else self.outcomes.get(gen)

    @property
    def submitted(self) -> Outcome | None:
        return next((o for o in self.outcomes.values() if o.state == "submitted"), None)

    @property
    def task_id(self) -> str | None:
        done = self.submitted
        return (done.task_id if done else None) or self.task_id_learnt

    def unsettled_before(self, generation: int) -> bool:
        """Did an earlier generation end without a certain "not in SCA"? (crash, or uncertain)"""
        return any(
            gen not in self.outcomes or self.outcomes[gen].uncertain
            for gen in self.claims
            if gen < generation and gen not in self.released
        )


@dataclass(frozen=True)
class ClaimDecision:
    """What a claimant may do: ``proceed`` (``uncertain``: look in SCA before sending), or why not."""

    action: Literal["proceed", "submitted", "failed", "busy"]
    entry: LedgerEntry
    generation: int | None = None
    uncertain: bool = False
    busy_until: float | None = None
    #: When the claim in force expires: its holder must be done before then.
    expires_at: float | None = None
    #: ``proceed`` only: this call created the claim (not an earlier attempt with the same token),
    #: so only this call can have sent the recording under it (``Ledger.release``).
    created: bool = False


def _next_generation(
    entry: LedgerEntry, *, token: str, now: float, replay: bool, min_remaining: float
) -> tuple[int, bool] | ClaimDecision:
    """The generation a claimant may claim next and whether an earlier attempt may have
    reached SCA (``uncertain``), or the decision that refuses it (rules: ``Ledger.claim``)."""
    if entry.submitted is not None:
        return ClaimDecision("submitted", entry)
    latest = entry.latest_claim
    if latest is None:
        return entry.next_generation, False  # nothing yet, or only released generations
    if latest.generation in entry.outcomes:  # settled as failed
        return (entry.next_generation, False) if replay else ClaimDecision("failed", entry)
    if latest.token == token:  # our own earlier attempt (an FC retry of this invocation)
        if latest.expires_at - min_remaining > now:
            return latest.generation, True  # still ours
        # too close to its expiry to work under: nobody else may have it, so the next
        # generation is ours at once, with a fresh expiry
        return entry.next_generation, True
    if latest.expires_at > now:
        return ClaimDecision("busy", entry, busy_until=latest.expires_at)
    return entry.next_generation, True  # takeover of a dead claim


class Ledger:
    """The push ledger on an ``ObjectStore`` (synchronous, like the store; thread-safe)."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    # ------------------------------------------------------------------ reading

    def _prefix(self, rid: str) -> str:
        return f"{layout.PUSH_RECORDS}{rid}/"

    def _claim_key(self, rid: str, generation: int) -> str:
        return f"{self._prefix(rid)}{_gen(generation)}.claim.json"

    def _outcome_key(self, rid: str, generation: int) -> str:
        return f"{self._prefix(rid)}{_gen(generation)}.outcome.json"

    def _get_json(self, key: str) -> dict[str, Any] | None:
        """The ledger's reading, as it always was: lenient (any JSON value is returned, a body
        that does not parse raises ``ValueError``), unlike the strict harvest state."""
        return journal.read(self.store, key, strict=False)

    def read(self, rid: str) -> LedgerEntry:
        """One listing plus the objects it names (a new recording costs one empty listing)."""
        entry = LedgerEntry(rid)
        for info in self.store.list(self._prefix(rid)):
            self._load_into(entry, info.key)
        return entry

    def _load_into(self, entry: LedgerEntry, key: str) -> None:
        name = key.rsplit("/", 1)[-1]
        data = self._get_json(key)
        if data is None:
            return  # deleted while listing: only task-id notes are ever deleted, never history
        if name == "task-id.json":
            entry.task_id_learnt = data.get("task_id")
        elif name.endswith(".claim.json"):
            claim = Claim(**_known(Claim, data))
            entry.claims[claim.generation] = claim
        elif name.endswith(".outcome.json"):
            outcome = Outcome(**_known(Outcome, data))
            entry.outcomes[outcome.generation] = outcome
        elif name.endswith(".released.json"):
            entry.released.add(int(data["generation"]))

    def entries(self) -> Iterator[LedgerEntry]:
        """Every recording's history, streamed in rid order (for ``qcflow status``)."""
        current: LedgerEntry | None = None
        for info in self.store.list(layout.PUSH_RECORDS):
            rid = info.key[len(layout.PUSH_RECORDS) :].split("/", 1)[0]
            if current is None or current.rid != rid:
                if current is not None:
                    yield current
                current = LedgerEntry(rid)
            self._load_into(current, info.key)
        if current is not None:
            yield current

    # ------------------------------------------------------------------ claiming

    def claim(
        self,
        location: str,
        *,
        token: str,
        now: float,
        expires_at: float,
        key: str | None = None,
        etag: str | None = None,
        contact_id: str | None = None,
        replay: bool = False,
        min_remaining: float = 0.0,
    ) -> ClaimDecision:
        """Claim the recording's next generation, or say why not.

        - a submitted recording is never claimed again (``submitted``);
        - a failed one only by a replay (``failed`` otherwise);
        - a live claim of someone else: ``busy`` until it expires;
        - our own claim (same token: an FC retry of this invocation) or an expired one taken
          over: ``proceed`` with ``uncertain`` — an earlier attempt may have reached SCA. Our own
          claim with less than ``min_remaining`` seconds left is renewed as the next generation.
        """
        rid = recording_id(location)
        for _ in range(_CLAIM_ROUNDS):
            entry = self.read(rid)
            step = _next_generation(entry, token=token, now=now, replay=replay, min_remaining=min_remaining)
            if isinstance(step, ClaimDecision):
                if step.action == "failed" and entry.latest_generation is not None:
                    # the index is written after the outcome: a kill in between must not hide it from replay
                    self._index_failure(rid, entry.latest_generation)
                return step
            generation, uncertain = step
            claim = Claim(generation, token, now, expires_at, location, key, etag, contact_id, replay)
            if self._write_claim(rid, claim):
                created = generation not in entry.claims
                held = entry.claims.setdefault(generation, claim)  # a claim of ours already there stays
                uncertain = uncertain or entry.unsettled_before(generation)
                return ClaimDecision(
                    "proceed", entry, generation, uncertain, expires_at=held.expires_at, created=created
                )
        entry = self.read(rid)
        latest = entry.latest_claim
        return ClaimDecision("busy", entry, busy_until=latest.expires_at if latest else now)

    def release(self, location: str, generation: int, *, token: str, now: float) -> bool:
        """Let go of a claim that sent nothing: True if released (now, or by an earlier attempt).

        Only for the claim's holder, and only for a claim it *created* (``ClaimDecision.created``)
        and never sent under: an ``UploadAudioData`` that may have left keeps its claim, so that a
        rerun looks in SCA first. Refused (False) unless the claim is still the recording's
        latest, carries ``token``, has no outcome and has not expired: then it may be someone
        else's business already.
        """
        rid = recording_id(location)
        entry = self.read(rid)
        claim = entry.claims.get(generation)
        if generation in entry.released:
            return claim is not None and claim.token == token
        if (
            claim is None
            or claim.token != token
            or generation in entry.outcomes
            or entry.next_generation != generation + 1
            or claim.expires_at <= now
        ):
            return False
        record = {"generation": generation, "token": token, "released_at": now, "location": location}
        key = f"{self._prefix(rid)}{_gen(generation)}.released.json"
        if not journal.write_once(self.store, key, record, token=token, attempts=1):
            return False
        self.store.delete(self._open_key(rid, generation))
        return True

    def _write_claim(self, rid: str, claim: Claim) -> bool:
        """Create the claim: True if it is ours (won now, or by an earlier attempt of this
        invocation: same token). One attempt: an error reaches the caller, whose retry comes
        back with the same token."""
        if claim.generation >= MAX_GENERATIONS:
            raise RuntimeError(f"ledger {rid}: more than {MAX_GENERATIONS} generations; refusing to go on")
        # before the claim: a claimant killed right after it, or given up on by FC, stays findable
        journal.mark(self.store, self._open_key(rid, claim.generation))
        key = self._claim_key(rid, claim.generation)
        return journal.write_once(self.store, key, asdict(claim), token=claim.token, attempts=1)

    # ------------------------------------------------------------------ recording outcomes

    def record(self, outcome: Outcome) -> Outcome:
        """Write a generation's outcome (once; a retry that already wrote it gets the stored one)."""
        rid = recording_id(outcome.location)
        key = self._outcome_key(rid, outcome.generation)
        record = asdict(outcome)
        # the token is the content's hash: a retry after a lost answer recognises its own write,
        # while a different outcome (another writer, a bug) reads back the one that was stored
        if not journal.write_once(self.store, key, record, token=journal.content_token(record), attempts=1):
            stored = self._get_json(key)
            if stored is not None:
                outcome = Outcome(**_known(Outcome, stored))
        if outcome.state == "failed":
            self._index_failure(rid, outcome.generation)
        if outcome.state == "submitted" and outcome.task_id is None and outcome.contact_id:
            segment = journal.lookup_segment(outcome.contact_id)
            self._note(f"{layout.PUSH_UNKNOWN_TASK}{segment}/{rid}", {"contact_id": outcome.contact_id})
        self.store.delete(self._open_key(rid, outcome.generation))
        return outcome

    def _note(self, key: str, value: dict[str, Any]) -> None:
        """Write a note once, in one attempt: a note already there (anyone's) is as good."""
        journal.write_once(self.store, key, value, token=None, attempts=1)

    def _index_failure(self, rid: str, generation: int) -> None:
        journal.mark(self.store, f"{layout.PUSH_FAILED}{rid}.{_gen(generation)}")

    def _open_key(self, rid: str, generation: int) -> str:
        return f"{layout.PUSH_OPEN}{rid}.{_gen(generation)}"

    def abandoned(self, now: float) -> Iterator[tuple[LedgerEntry, int]]:
        """Generations claimed, never settled, whose claim has expired (FC gave up, or a kill):
        ``(entry, generation)``. Markers of settled, released or superseded generations are dropped;
        superseded means a later generation *settled*: one still open (or later released) has the
        recording stay findable through this marker too."""
        for info in list(self.store.list(layout.PUSH_OPEN)):
            rid, _, gen = info.key[len(layout.PUSH_OPEN) :].partition(".g")
            if not gen.isdigit():
                continue
            generation = int(gen)
            entry = self.read(rid)
            claim = entry.claims.get(generation)
            later = [g for g in entry.claims if g > generation and g not in entry.released]
            if (
                generation in entry.outcomes
                or generation in entry.released
                or entry.submitted is not None
                or any(g in entry.outcomes for g in later)
            ):
                self.store.delete(info.key)  # settled, released, or settled by a later generation
                continue
            if later:
                continue  # a later generation is open: its own marker stands for the recording
            if claim is not None and claim.expires_at <= now:
                yield entry, generation

    def mark_contact_push(self, contact_id: str, location: str) -> None:
        """A recording was pushed by ContactId: a push of its object must look in SCA first."""
        key = f"{layout.PUSH_BY_CONTACT}{journal.lookup_segment(contact_id)}"
        self._note(key, {"contact_id": contact_id, "location": location})

    def contact_pushed(self, contact_id: str) -> bool:
        return any(self._exists(f"{layout.PUSH_BY_CONTACT}{segment}") for segment in _contact_segments(contact_id))

    def _exists(self, key: str) -> bool:
        try:
            self.store.head(key)
        except NotFoundError:
            return False
        return True

    def clear_failure(self, rid: str, generation: int) -> None:
        """Drop a failure from the replay index once a later generation settled it."""
        self.store.delete(f"{layout.PUSH_FAILED}{rid}.{_gen(generation)}")

    def failures(self) -> Iterator[tuple[str, int]]:
        """(rid, generation) of every recorded failure not yet replayed."""
        for info in self.store.list(layout.PUSH_FAILED):
            name = info.key[len(layout.PUSH_FAILED) :]
            rid, _, gen = name.partition(".g")
            if gen.isdigit():
                yield rid, int(gen)

    # ------------------------------------------------------------------ taskIds learnt later

    def contacts_with_unknown_task(self) -> set[str]:
        """ContactIds submitted whose taskId SCA did not tell (a repeated callUuid)."""
        found = set()
        for info in self.store.list(layout.PUSH_UNKNOWN_TASK):
            data = self._get_json(info.key)
            if data and data.get("contact_id"):
                found.add(str(data["contact_id"]))
        return found

    def record_task_id(self, contact_id: str, task_id: str) -> None:
        """Harvest found the task of a submission whose taskId was unknown: note it, once."""
        for segment in _contact_segments(contact_id):
            prefix = f"{layout.PUSH_UNKNOWN_TASK}{segment}/"
            for info in list(self.store.list(prefix)):
                rid = info.key[len(prefix) :]
                self._note(f"{self._prefix(rid)}task-id.json", {"task_id": task_id, "contact_id": contact_id})
                self.store.delete(info.key)


def _gen(generation: int) -> str:
    """A generation in a key: ``g000042``."""
    return f"g{generation:06d}"


def _contact_segments(contact_id: str) -> Iterator[str]:
    """The key segments a ContactId may be stored under: today's, then the legacy one if it differs."""
    segment = journal.lookup_segment(contact_id)
    yield segment
    legacy = _legacy_segment(contact_id)
    if legacy != segment:
        yield legacy


def _legacy_segment(contact_id: str) -> str:
    """How ledgers before ``journal.lookup_segment`` named a ContactId (read only: they are
    ``job-<digits>``, for which both agree; anything else was hashed, or cut at 200 characters)."""
    if contact_id and all(c.isalnum() or c in "-_." for c in contact_id) and not contact_id.startswith("."):
        return contact_id[:200]
    return journal.hashed_segment(contact_id)


def _known(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    """Only the fields ``cls`` knows: records written by a newer version still load."""
    names = cls.__dataclass_fields__  # type: ignore[attr-defined]
    return {k: v for k, v in data.items() if k in names}
