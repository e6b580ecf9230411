"""Pushing again what did not settle (``qcflow replay``), and pushing a whole prefix (``qcflow push --prefix``).

Both go through ``Pusher.push`` and so through the ledger's claims: a replay or a backfill that
meets a recording already in SCA finds it there (own claim, takeover or ``callUuid`` repeat)
instead of sending it twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from qcflow.ledger import recording_id
from qcflow.push.recordings import Recording
from qcflow.push.results import PushResult

if TYPE_CHECKING:
    from qcflow.push.held import HeldClaims
    from qcflow.push.pusher import Pusher


async def replayable(pusher: Pusher) -> list[tuple[Recording, int]]:
    """Recordings to re-push: recorded failures, and generations claimed but never settled whose
    claim expired (FC gave up on them, a replay met an outage, a kill) — with the generation."""
    return [(recording, generation) for recording, generation, _ in await explained(pusher)]


async def explained(pusher: Pusher) -> list[tuple[Recording, int, str]]:
    """``replayable``, each with why it is there (``qcflow replay --dry-run``): the failure's code
    and message, or the claim that expired without an outcome."""
    ledger = pusher.ledger
    found: dict[str, tuple[Recording, int, str]] = {}
    for rid, generation in await asyncio.to_thread(lambda: list(ledger.failures())):
        entry = await asyncio.to_thread(ledger.read, rid)
        failed = entry.outcomes.get(generation)
        later_settled = entry.latest_generation != generation and entry.outcome is not None
        if entry.submitted is not None or later_settled:
            await asyncio.to_thread(ledger.clear_failure, rid, generation)  # settled since
            continue
        if failed is None or failed.state != "failed":
            continue
        # a later generation still without outcome (a replay that met an outage, or was killed):
        # replay again; its claim decides (busy while it lives, taken over as uncertain after)
        recording = await _fresh(pusher, failed.location, failed.key, failed.etag, failed.contact_id)
        found[rid] = (recording, generation, f"failed: {failed.code or '?'}: {failed.message or ''}".rstrip(": "))
    now = pusher.clock()
    for entry, generation in await asyncio.to_thread(lambda: list(ledger.abandoned(now))):
        claim = entry.claims[generation]
        if entry.rid not in found:
            found[entry.rid] = (
                await _fresh(pusher, claim.location, claim.key, claim.etag, claim.contact_id),
                generation,
                f"claimed at {_iso(claim.claimed_at)}, never settled: the claim expired at {_iso(claim.expires_at)}",
            )
    return list(found.values())


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


async def _fresh(pusher: Pusher, location: str, key: str | None, etag: str | None, contact_id: str | None) -> Recording:
    """The recording as the store shows it now (a new ETag, metadata), under its recorded location."""
    recording = Recording(location, key, etag, contact_id)
    if key is not None and pusher.recordings is not None and location.startswith(("oss://", "file:")):
        fresh = await pusher.resolve(key)
        if isinstance(fresh, Recording):
            recording = replace(fresh, location=location)
    return recording


async def replay(
    pusher: Pusher,
    *,
    token: str,
    deadline: float,
    concurrency: int = 8,
    on_result: Callable[[PushResult], None] | None = None,
    release_unsent: bool = False,
    held: HeldClaims | None = None,
) -> list[PushResult]:
    """Re-push every recorded failure (after its cause was fixed). ``release_unsent``, ``held``:
    as ``Pusher.push`` (a released replay claim leaves the failure in the replay index)."""
    todo = await replayable(pusher)
    results = await pusher.push(
        [r for r, _ in todo],
        token=token,
        deadline=deadline,
        replay=True,
        concurrency=concurrency,
        on_result=on_result,
        release_unsent=release_unsent,
        held=held,
    )
    failed_gen = {recording_id(r.location): g for r, g in todo}
    for result in results:
        rid = recording_id(result.location)
        if result.settled and rid in failed_gen and result.status in ("submitted", "failed", "already_submitted"):
            await asyncio.to_thread(pusher.ledger.clear_failure, rid, failed_gen[rid])
    return results


async def backfill(
    pusher: Pusher,
    source: AsyncIterator[Recording | PushResult],
    *,
    token: str,
    concurrency: int = 8,
    chunk_size: int = 200,
    rounds: int = 3,
    pause_seconds: float = 2.0,
    on_result: Callable[[PushResult], None] | None = None,
    release_unsent: bool = False,
    held: HeldClaims | None = None,
) -> list[PushResult]:
    """Push a stream of recordings (``qcflow push --prefix``) in chunks, so that no claim waits
    long for its send; recordings left ``retry`` are tried again, up to ``rounds`` times, after a
    pause (the same token: each recognises its own claim and looks in SCA before sending).
    Recordings held by a live claim elsewhere stay ``busy``: that invocation settles them.
    ``release_unsent``, ``held``: as ``Pusher.push`` (each round releases what it never sent)."""
    final: list[PushResult] = []
    far = pusher.monotonic() + 10 * 365 * 86400.0  # claims bound each recording's work, not the run

    def report(result: PushResult) -> None:
        if result.status != "retry" and on_result is not None:
            on_result(result)

    async def run(chunk: list[Recording]) -> None:
        todo = chunk
        for attempt in range(rounds):
            results = await pusher.push(
                todo,
                token=token,
                deadline=far,
                concurrency=concurrency,
                on_result=report,
                release_unsent=release_unsent,
                held=held,
            )
            final.extend(r for r in results if r.status != "retry")
            by_location = {r.location: r for r in todo}
            retried = [r for r in results if r.status == "retry" and r.location in by_location]
            todo = [by_location[r.location] for r in retried]
            if not todo:
                return
            if attempt + 1 < rounds:
                await asyncio.sleep(pause_seconds)
        left = [
            replace(r, message=f"still failing after {rounds} rounds: {r.message or r.code or 'retry'}")
            for r in retried
        ]
        for result in left:
            if on_result is not None:
                on_result(result)
        final.extend(left)

    chunk: list[Recording] = []
    async for item in source:
        if isinstance(item, PushResult):
            final.append(item)
            if on_result is not None:
                on_result(item)
            continue
        chunk.append(item)
        if len(chunk) >= chunk_size:
            await run(chunk)
            chunk = []
    if chunk:
        await run(chunk)
    return final
