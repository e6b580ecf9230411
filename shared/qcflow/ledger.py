"""The push ledger: one immutable history per recording, claimed atomically, in ``state/push/``.

Why a ledger: OSS triggers may deliver an event twice, FC retries failed async invocations
(hours later, beyond ``callUuid``'s 2-hour window), and several instances may run at once.
The ledger is the primary exactly-once guarantee; ``callUuid`` is only the second line.

Layout (every object is created once with ``create_if_absent`` and never overwritten, since
conditional overwrite on OSS is unconfirmed)::

    state/push/records/<rid>/g000000.claim.json     who works on generation 0, until when
    state/push/records/<rid>/g000000.outcome.json   submitted (taskId…) or failed (code…)
    state/push/records/<rid>/g000001.claim.json     a takeover of an expired claim, or a replay
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
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from qcflow.errors import NotFoundError
from qcflow.store import ObjectStore

log = logging.getLogger("qcflow.ledger")

ROOT = "state/push"
RECORDS = f"{ROOT}/records/"
FAILED = f"{ROOT}/failed/"
UNKNOWN_TASK = f"{ROOT}/unknown-task/"
#: One marker per claimed generation, dropped when it settles: what FC gave up on stays findable.
OPEN = f"{ROOT}/open/"
#: Pushes by ContactId have a ledger id of their own: the object path must know to look first.
BY_CONTACT = f"{ROOT}/by-contact/"
JSON = "application/json"
#: Generations per recording before the ledger refuses to go on (a replay loop, a bug).
MAX_GENERATIONS = 1000

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

    @property
    def latest_generation(self) -> int | None:
        return max(self.claims) if self.claims else None

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
        return any(gen not in self.outcomes or self.outcomes[gen].uncertain for gen in self.claims if gen < generation)


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


def _dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode("utf-8")


class Ledger:
    """The push ledger on an ``ObjectStore`` (synchronous, like the store; thread-safe)."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    # ------------------------------------------------------------------ reading

    def _prefix(self, rid: str) -> str:
        return f"{RECORDS}{rid}/"

    def _claim_key(self, rid: str, generation: int) -> str:
        return f"{self._prefix(rid)}g{generation:06d}.claim.json"

    def _outcome_key(self, rid: str, generation: int) -> str:
        return f"{self._prefix(rid)}g{generation:06d}.outcome.json"

    def _get_json(self, key: str) -> dict[str, Any] | None:
        try:
            return json.loads(self.store.get(key).body)
        except NotFoundError:
            return None

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

    def entries(self) -> Iterator[LedgerEntry]:
        """Every recording's history, streamed in rid order (for ``qcflow status``)."""
        current: LedgerEntry | None = None
        for info in self.store.list(RECORDS):
            rid = info.key[len(RECORDS) :].split("/", 1)[0]
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
        for _ in range(3):  # a lost race re-reads once or twice, then settles
            entry = self.read(rid)
            if entry.submitted is not None:
                return ClaimDecision("submitted", entry)
            latest = entry.latest_claim
            uncertain = False
            if latest is None:
                generation = 0
            elif latest.generation in entry.outcomes:  # settled as failed
                if not replay:
                    # the index is written after the outcome: a kill in between must not hide it from replay
                    self._index_failure(rid, latest.generation)
                    return ClaimDecision("failed", entry)
                generation = latest.generation + 1
            elif latest.token == token and latest.expires_at - min_remaining > now:
                generation, uncertain = latest.generation, True  # our own earlier attempt, still ours
            elif latest.token == token:
                # ours, but too close to its expiry to work under: nobody else may have it, so the
                # next generation is ours at once, with a fresh expiry
                generation, uncertain = latest.generation + 1, True
            elif latest.expires_at > now:
                return ClaimDecision("busy", entry, busy_until=latest.expires_at)
            else:
                generation, uncertain = latest.generation + 1, True  # takeover of a dead claim
            if generation >= MAX_GENERATIONS:
                raise RuntimeError(f"ledger {rid}: more than {MAX_GENERATIONS} generations; refusing to go on")
            claim = Claim(generation, token, now, expires_at, location, key, etag, contact_id, replay)
            # before the claim: a claimant killed right after it, or given up on by FC, stays findable
            self.store.create_if_absent(self._open_key(rid, generation), b"", content_type=JSON)
            won = self.store.create_if_absent(
                self._claim_key(rid, generation), _dumps(asdict(claim)), content_type=JSON, claim_token=token
            )
            if won:
                if latest is None or generation != latest.generation:
                    entry.claims[generation] = claim
                held = entry.claims[generation]
                uncertain = uncertain or entry.unsettled_before(generation)
                return ClaimDecision("proceed", entry, generation, uncertain, expires_at=held.expires_at)
        entry = self.read(rid)
        latest = entry.latest_claim
        return ClaimDecision("busy", entry, busy_until=latest.expires_at if latest else now)

    # ------------------------------------------------------------------ recording outcomes

    def record(self, outcome: Outcome) -> Outcome:
        """Write a generation's outcome (once; a retry that already wrote it gets the stored one)."""
        rid = recording_id(outcome.location)
        body = _dumps(asdict(outcome))
        # the token is the content's hash: a retry after a lost answer recognises its own write,
        # while a different outcome (another writer, a bug) reads back the one that was stored
        created = self.store.create_if_absent(
            self._outcome_key(rid, outcome.generation),
            body,
            content_type=JSON,
            claim_token=hashlib.sha256(body).hexdigest()[:64],
        )
        if not created:
            stored = self._get_json(self._outcome_key(rid, outcome.generation))
            if stored is not None:
                outcome = Outcome(**_known(Outcome, stored))
        if outcome.state == "failed":
            self._index_failure(rid, outcome.generation)
        if outcome.state == "submitted" and outcome.task_id is None and outcome.contact_id:
            self.store.create_if_absent(
                f"{UNKNOWN_TASK}{_safe(outcome.contact_id)}/{rid}",
                _dumps({"contact_id": outcome.contact_id}),
                content_type=JSON,
            )
        self.store.delete(self._open_key(rid, outcome.generation))
        return outcome

    def _index_failure(self, rid: str, generation: int) -> None:
        self.store.create_if_absent(f"{FAILED}{rid}.g{generation:06d}", b"", content_type=JSON)

    def _open_key(self, rid: str, generation: int) -> str:
        return f"{OPEN}{rid}.g{generation:06d}"

    def abandoned(self, now: float) -> Iterator[tuple[LedgerEntry, int]]:
        """Generations claimed, never settled, whose claim has expired (FC gave up, or a kill):
        ``(entry, generation)``. Markers of settled or superseded generations are dropped."""
        for info in list(self.store.list(OPEN)):
            rid, _, gen = info.key[len(OPEN) :].partition(".g")
            if not gen.isdigit():
                continue
            generation = int(gen)
            entry = self.read(rid)
            claim = entry.claims.get(generation)
            if (
                generation in entry.outcomes
                or entry.submitted is not None
                or (entry.latest_generation is not None and entry.latest_generation > generation)
            ):
                self.store.delete(info.key)  # settled, or taken over (the later one has its own marker)
                continue
            if claim is not None and claim.expires_at <= now:
                yield entry, generation

    def mark_contact_push(self, contact_id: str, location: str) -> None:
        """A recording was pushed by ContactId: a push of its object must look in SCA first."""
        self.store.create_if_absent(
            f"{BY_CONTACT}{_safe(contact_id)}",
            _dumps({"contact_id": contact_id, "location": location}),
            content_type=JSON,
        )

    def contact_pushed(self, contact_id: str) -> bool:
        try:
            self.store.head(f"{BY_CONTACT}{_safe(contact_id)}")
        except NotFoundError:
            return False
        return True

    def clear_failure(self, rid: str, generation: int) -> None:
        """Drop a failure from the replay index once a later generation settled it."""
        self.store.delete(f"{FAILED}{rid}.g{generation:06d}")

    def failures(self) -> Iterator[tuple[str, int]]:
        """(rid, generation) of every recorded failure not yet replayed."""
        for info in self.store.list(FAILED):
            name = info.key[len(FAILED) :]
            rid, _, gen = name.partition(".g")
            if gen.isdigit():
                yield rid, int(gen)

    # ------------------------------------------------------------------ taskIds learnt later

    def contacts_with_unknown_task(self) -> set[str]:
        """ContactIds submitted whose taskId SCA did not tell (a repeated callUuid)."""
        found = set()
        for info in self.store.list(UNKNOWN_TASK):
            data = self._get_json(info.key)
            if data and data.get("contact_id"):
                found.add(str(data["contact_id"]))
        return found

    def record_task_id(self, contact_id: str, task_id: str) -> None:
        """Harvest found the task of a submission whose taskId was unknown: note it, once."""
        prefix = f"{UNKNOWN_TASK}{_safe(contact_id)}/"
        for info in list(self.store.list(prefix)):
            rid = info.key[len(prefix) :]
            self.store.create_if_absent(
                f"{self._prefix(rid)}task-id.json",
                _dumps({"task_id": task_id, "contact_id": contact_id}),
                content_type=JSON,
            )
            self.store.delete(info.key)


def _safe(contact_id: str) -> str:
    """A ContactId as one key segment (they are ``job-<digits>``; anything else is hashed)."""
    if contact_id and all(c.isalnum() or c in "-_." for c in contact_id) and not contact_id.startswith("."):
        return contact_id[:200]
    return "h-" + hashlib.sha256(contact_id.encode("utf-8")).hexdigest()[:40]


def _known(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    """Only the fields ``cls`` knows: records written by a newer version still load."""
    names = cls.__dataclass_fields__  # type: ignore[attr-defined]
    return {k: v for k, v in data.items() if k in names}
