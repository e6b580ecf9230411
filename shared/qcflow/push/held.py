"""The claims one run holds in the ledger, and whether it may have sent each (``qcflow push``).

An operator's run that stops (Ctrl-C, SIGTERM, a fault that outlasted its retries) must not
leave claims that block its own rerun until they expire: it *releases* the claims it created
and never sent under (``Ledger.release``). A claim whose ``UploadAudioData`` may have left stays
(the rerun looks in SCA first); its expiry is what the run's summary tells the operator.

Filled from the ledger's worker threads (a claim that lands while its coroutine is being
cancelled is still noted), read by the run's last step: thread-safe, and it knows how many
claims are still being made (``wait_idle``).
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass


@dataclass
class HeldClaim:
    """One generation this run claimed (``created``: by this run, not an earlier one's)."""

    location: str
    key: str | None
    contact_id: str | None
    generation: int
    expires_at: float
    created: bool
    #: An ``UploadAudioData`` carrying the recording may have left: the claim must stay.
    sent: bool = False
    #: An outcome was written: nothing is held any more.
    settled: bool = False
    released: bool = False


class HeldClaims:
    """What a run holds, by recording location (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._claims: dict[str, HeldClaim] = {}
        self._claiming = 0

    def begin(self) -> ClaimTicket:
        """A claim or an outcome is about to be handed to a worker thread (counted until it ends or
        never starts)."""
        with self._lock:
            self._claiming += 1
        return ClaimTicket(self)

    def _end(self) -> None:
        with self._lock:
            self._claiming -= 1

    def claimed(self, claim: HeldClaim) -> None:
        with self._lock:
            self._claims[claim.location] = claim

    def sent(self, location: str) -> None:
        with self._lock:
            if location in self._claims:
                self._claims[location].sent = True

    def not_sent(self, location: str) -> None:
        """The request that carried it was refused or never left (no attempt may have been applied)."""
        with self._lock:
            if location in self._claims:
                self._claims[location].sent = False

    def settled(self, location: str) -> None:
        with self._lock:
            if location in self._claims:
                self._claims[location].settled = True

    def released(self, location: str) -> None:
        with self._lock:
            if location in self._claims:
                self._claims[location].released = True

    def get(self, location: str) -> HeldClaim | None:
        with self._lock:
            return self._claims.get(location)

    def unsent(self, locations: set[str] | None = None) -> list[HeldClaim]:
        """Claims this run created and may release: never sent under, not settled, not yet released."""
        with self._lock:
            return [
                c
                for c in self._claims.values()
                if c.created
                and not (c.sent or c.settled or c.released)
                and (locations is None or c.location in locations)
            ]

    def still_held(self) -> list[HeldClaim]:
        """Claims this run leaves behind: they block a rerun of these recordings until they expire."""
        with self._lock:
            return sorted(
                (c for c in self._claims.values() if not (c.settled or c.released)), key=lambda c: c.expires_at
            )

    def count_released(self) -> int:
        with self._lock:
            return sum(1 for c in self._claims.values() if c.released)

    async def wait_idle(self, timeout: float = 30.0) -> None:
        """Until no claim nor outcome is being written (a cancelled coroutine's thread finishes its
        write: a claim it makes is noted, an outcome it records settles its claim)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self._lock:
                if self._claiming <= 0:
                    return
            await asyncio.sleep(0.02)


class ClaimTicket:
    """One claim handed to a worker thread: it either runs to its end, or never starts (its
    coroutine was cancelled while it waited for a thread): ``wait_idle`` waits for neither."""

    def __init__(self, held: HeldClaims) -> None:
        self._held = held
        self._lock = threading.Lock()
        self._state = "waiting"  # → "running" → "done", or → "abandoned"

    def start(self) -> bool:
        """In the worker thread: False if the claim must not be made any more."""
        with self._lock:
            if self._state != "waiting":
                return False
            self._state = "running"
            return True

    def done(self) -> None:
        """In the worker thread, after the claim (made or failed)."""
        with self._lock:
            self._state = "done"
        self._held._end()

    def abandon(self) -> None:
        """In the caller, cancelled: a claim not started yet never will be."""
        with self._lock:
            if self._state != "waiting":
                return
            self._state = "abandoned"
        self._held._end()
