"""The ``Pusher``: a recording claimed in the ledger becomes one SCA task, or a recorded failure.

Steps 3–7 of the push use case, whose overview (each step and why) is ``qcflow.push``'s docstring:
**claim** before any API call, CCC ``GetUploadAudioDataParams`` → the call item (``calls``),
**look up** an earlier attempt in SCA when one may have landed, **send** in batches (split on a
refusal), **record** the outcome. A recording comes from ``qcflow.push.recordings``.

Long (about 580 lines) because steps 3–7 share one recording's state (its generation, whether an
earlier attempt may be in SCA, the claim's deadline) and every branch of them ends in a recorded,
logged outcome; what needs none of that state lives beside it (``recordings``, ``calls``, ``results``).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar
from zoneinfo import ZoneInfo

from qcflow.ccc import CccClient
from qcflow.config import CLAIM_MARGIN_SECONDS, PushSettings, env_name
from qcflow.errors import (
    DeploymentError,
    DuplicateCallUuidError,
    PermanentError,
    QcflowError,
    RetryableError,
    ServiceUnavailableError,
)
from qcflow.ledger import Claim, ClaimDecision, Ledger, Outcome
from qcflow.logs import redact
from qcflow.models.ccc import CccCall, UploadAudioDataParams
from qcflow.models.sca import GetResultQuery, format_sca_time
from qcflow.push.calls import (
    CallItem,
    batches,
    call_for,
    call_item,
    check_url_lifetime,
    upload_request,
)
from qcflow.push.recordings import CONTACT_LOCATION, Recording, RecordingFinder
from qcflow.push.results import PushResult, PushStatus, error_result, ignored, logged
from qcflow.sca import ScaClient
from qcflow.store import ObjectStore

if TYPE_CHECKING:
    from qcflow.push.held import ClaimTicket, HeldClaims

log = logging.getLogger("qcflow.push")

_T = TypeVar("_T")

#: The claims of the ``push`` call running in this context (``release_unsent`` only): outcome writes
#: are counted in it, so that a release after a cancellation waits for a write still running in its
#: worker thread and leaves the generation it settles alone.
_HOLDING: contextvars.ContextVar[HeldClaims | None] = contextvars.ContextVar("qcflow_push_holding", default=None)

#: Seconds around the claims' times searched in SCA for an earlier attempt's task: more than any
#: time-zone offset, since the zone SCA reads startTime/endTime in is UNCONFIRMED (the callId
#: filter keeps the answer small whatever the window).
LOOKUP_SLACK_SECONDS = 86400.0


#: The path push puts before the callback token in callbackUrl (``qcflow.callback_handler`` reads
#: only the last segment). Here, not in ``qcflow.callback``: push's cold start does not load that.
CALLBACK_PATH = "/sca-callback"


def _callback_url(base: str | None, token: str | None) -> str | None:
    """The callbackUrl sent to SCA: ``<base>/sca-callback/<token>`` (``qcflow.callback_handler``
    reads the token back). Without a token there is none: the callback function would refuse
    every call, so tasks are left to the timer's harvest (said once, as a warning)."""
    if not base:
        return None
    if not token:
        log.warning(
            "push: %s is set but %s is not: tasks are sent without a callbackUrl (the timer harvests them)",
            env_name("push_callback_url"),
            env_name("callback_token"),
            extra={"event": "push_callback_disabled"},
        )
        return None
    base = base.rstrip("/")
    if base.endswith(CALLBACK_PATH):  # a base given with the path already
        base = base[: -len(CALLBACK_PATH)]
    return f"{base}{CALLBACK_PATH}/{token}"


# _Claimed and _Ready are NamedTuples, not dataclasses: defining a dataclass costs the cold start ~0.5-1 ms.
class _Claimed(NamedTuple):
    """A generation of a recording this invocation holds in the ledger."""

    generation: int
    #: An earlier attempt may have reached SCA (our own claim seen again, or a takeover).
    uncertain: bool
    #: Every claim of the recording: their times bound the lookup of an earlier attempt's task.
    claims: tuple[Claim, ...]
    #: Work on this recording must end by then (its claim's expiry, the invocation's deadline).
    deadline: float


class _Ready(NamedTuple):
    """A claimed recording with its call item, waiting to be sent."""

    recording: Recording
    generation: int
    uncertain: bool
    item: CallItem
    url_strategy: str
    #: Work on this recording must end by then (its claim's expiry, the invocation's deadline).
    deadline: float


class Pusher:
    """Pushes recordings through the ledger to SCA. One per process; safe for concurrent use."""

    def __init__(
        self,
        settings: PushSettings,
        *,
        zone: ZoneInfo,
        ccc: CccClient,
        sca: ScaClient,
        store: ObjectStore,
        recordings: ObjectStore | None,
        sign_url: Callable[[str], str] | None = None,
        sign_url_problem: str | None = None,
        callback_token: str | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.zone = zone
        self.ccc = ccc
        self.sca = sca
        self.store = store
        self.ledger = Ledger(store)
        self.recordings = recordings
        self.sign_url = sign_url
        self.sign_url_problem = sign_url_problem
        self.clock = clock
        self.monotonic = monotonic
        self.finder = RecordingFinder(settings, recordings, store_url=store.url)
        self._rule_ids: list[int | str] | None = list(settings.rule_ids) or None
        self.callback_url = _callback_url(settings.callback_url, callback_token)

    # ------------------------------------------------------------------ which recordings (RecordingFinder)

    async def resolve(self, key: str) -> Recording | PushResult:
        """The recording behind an event's key (``RecordingFinder.resolve``)."""
        return await self.finder.resolve(key)

    def recordings_under(self, prefix: str) -> AsyncIterator[Recording | PushResult]:
        """Every recording under ``prefix`` of the recordings store (listed lazily)."""
        return self.finder.under(prefix)

    def recording_for_contact(self, contact_id: str) -> Recording:
        """A recording known only by its ContactId (``qcflow push --contact-id``): CCC's URL is sent."""
        return self.finder.for_contact(contact_id)

    # ------------------------------------------------------------------ pushing

    async def push(
        self,
        recordings: Sequence[Recording],
        *,
        token: str,
        deadline: float,
        replay: bool = False,
        concurrency: int = 8,
        on_result: Callable[[PushResult], None] | None = None,
        release_unsent: bool = False,
        held: HeldClaims | None = None,
    ) -> list[PushResult]:
        """Claim, prepare and send ``recordings``; one result each (order not kept).

        ``token`` identifies the invocation (stable across FC's retries of it where possible);
        ``deadline`` is an absolute ``time.monotonic()`` after which nothing new starts.

        A ``DeploymentError`` (credentials, signature, permission) stops the call: nothing new
        starts, nothing is recorded as failed for it, and it raises once every branch is done.

        ``release_unsent`` (the CLI's ``push`` and ``replay``; never the function, whose claims keep
        a recording findable by ``qcflow replay`` after FC gives up): when a recording ends ``retry``,
        or the call is cancelled or raises, the claims this call created and never sent under are
        released (``Ledger.release``), so that a rerun is not ``busy`` for them. ``held`` (one per run,
        across calls) tells what was released and what is still held, until when.
        """
        results: list[PushResult] = []
        if release_unsent and held is None:
            from qcflow.push.held import HeldClaims

            held = HeldClaims()

        def settle(result: PushResult) -> None:
            if held is not None:
                if result.status in ("submitted", "failed"):
                    held.settled(result.location)
                else:
                    result = _with_hold(result, held)
            results.append(result)
            if on_result is not None:
                on_result(result)

        holding = _HOLDING.set(held)
        try:
            await self._push(
                recordings,
                token=token,
                deadline=deadline,
                replay=replay,
                concurrency=concurrency,
                settle=settle,
                held=held,
            )
        except BaseException:
            if release_unsent and held is not None:
                await asyncio.shield(self._release(held, token=token, locations=None))
            raise
        finally:
            _HOLDING.reset(holding)
        if release_unsent and held is not None:
            pending = {r.location for r in results if r.status == "retry"}
            if pending:
                try:
                    await self._release(held, token=token, locations=pending)
                except asyncio.CancelledError:
                    # Ctrl-C while releasing: go on to the last of them (a release is idempotent, and
                    # the one whose thread was writing is counted again), or the rerun is busy for them
                    await asyncio.shield(self._release(held, token=token, locations=pending))
                    raise
                results[:] = [_with_hold(r, held) if r.location in pending else r for r in results]
        return results

    async def _release(self, held: HeldClaims, *, token: str, locations: set[str] | None) -> None:
        """Release the claims in ``held`` this run created and never sent under (``locations``: only those)."""
        await held.wait_idle()
        for claim in held.unsent(locations):
            try:
                done = await asyncio.to_thread(
                    self.ledger.release, claim.location, claim.generation, token=token, now=self.clock()
                )
            except QcflowError as exc:
                log.warning(
                    "could not release the claim on %s: %s",
                    claim.key or claim.location,
                    exc,
                    extra={"event": "push_release_failed", "key": claim.key, "code": exc.code},
                )
                continue
            if done:
                held.released(claim.location)

    async def _push(
        self,
        recordings: Sequence[Recording],
        *,
        token: str,
        deadline: float,
        replay: bool,
        concurrency: int,
        settle: Callable[[PushResult], None],
        held: HeldClaims | None,
    ) -> None:
        gate = asyncio.Semaphore(max(1, concurrency))
        #: The first deployment error: nothing new starts after it (every call would fail alike).
        stopped: list[DeploymentError] = []
        # One invocation has one token: the ledger cannot arbitrate between two copies of a recording in it.
        unique: dict[str, Recording] = {}
        for recording in recordings:
            if recording.location in unique:
                settle(
                    ignored(
                        recording.location,
                        recording.key or recording.location,
                        "the same recording twice in one invocation: pushed once",
                    )
                )
            else:
                unique[recording.location] = recording

        async def prepare(recording: Recording) -> _Ready | None:
            async with gate:
                if stopped:
                    return None
                try:
                    outcome = await self._prepare(recording, token=token, deadline=deadline, replay=replay, held=held)
                except DeploymentError as exc:
                    _stop(stopped, exc)
                    raise
            if isinstance(outcome, PushResult):
                settle(outcome)
                return None
            return outcome

        ready = [r for r in await _gather_all(prepare(r) for r in unique.values()) if r is not None]

        async def send(batch: list[_Ready]) -> None:
            async with gate:
                if stopped:
                    return
                try:
                    for result in await self._send(batch, deadline=min(r.deadline for r in batch), held=held):
                        settle(result)
                except DeploymentError as exc:
                    _stop(stopped, exc)
                    raise

        await _gather_all(send(b) for b in batches(ready, self.settings.batch_size))

    async def _prepare(
        self, recording: Recording, *, token: str, deadline: float, replay: bool, held: HeldClaims | None = None
    ) -> _Ready | PushResult:
        """Claim ``recording``, build its call item and, if an earlier attempt may have sent it,
        look for its task in SCA: a ``_Ready`` to send, or the recording's result."""
        claimed = await self._claim(recording, token=token, deadline=deadline, replay=replay, held=held)
        if isinstance(claimed, PushResult):
            return claimed
        ready = await self._ready(recording, claimed)
        if isinstance(ready, PushResult):
            return ready
        return await self._unless_sent_before(ready, claimed)

    async def _claim(
        self, recording: Recording, *, token: str, deadline: float, replay: bool, held: HeldClaims | None = None
    ) -> _Claimed | PushResult:
        """The recording's next generation, claimed before any API call; or why not (settled
        earlier, claimed elsewhere, the ledger unreachable). ``held`` notes the claim from the
        ledger's thread itself: a claim landing while this coroutine is cancelled is not lost."""
        now = self.clock()
        remaining = max(0.0, deadline - self.monotonic())
        expires_at = now + min(remaining + CLAIM_MARGIN_SECONDS, self.settings.claim_ttl_seconds)

        def claim() -> ClaimDecision:
            decision = self.ledger.claim(
                recording.location,
                token=token,
                now=now,
                expires_at=expires_at,
                key=recording.key,
                etag=recording.etag,
                contact_id=recording.contact_id,
                replay=replay,
                min_remaining=2 * CLAIM_MARGIN_SECONDS,
            )
            if held is not None and decision.action == "proceed" and decision.generation is not None:
                from qcflow.push.held import HeldClaim

                until = decision.expires_at if decision.expires_at is not None else expires_at
                held.claimed(
                    HeldClaim(
                        recording.location,
                        recording.key,
                        recording.contact_id,
                        decision.generation,
                        until,
                        decision.created,
                    )
                )
            return decision

        ticket = held.begin() if held is not None else None
        try:
            decision = await asyncio.to_thread(_counted, claim, ticket)
        except asyncio.CancelledError:
            if ticket is not None:
                ticket.abandon()  # not started yet: it never will (started: its thread notes the claim)
            raise
        except RetryableError as exc:
            return self._result("retry", recording, exc=exc)
        if decision.action in ("submitted", "failed", "busy"):
            return self._not_claimed(recording, decision)
        generation = decision.generation
        assert generation is not None
        # This claim's work must end before the claim does: nobody takes it over meanwhile.
        held_until = decision.expires_at if decision.expires_at is not None else expires_at
        return _Claimed(
            generation,
            decision.uncertain,
            tuple(decision.entry.claims.values()),
            deadline=min(deadline, self.monotonic() + (held_until - now) - CLAIM_MARGIN_SECONDS),
        )

    def _not_claimed(self, recording: Recording, decision: ClaimDecision) -> PushResult:
        """The result of a recording the ledger would not let us claim: settled earlier, or busy."""
        if decision.action == "submitted":
            done = decision.entry.submitted
            return logged(
                PushResult(
                    "already_submitted",
                    recording.location,
                    recording.key,
                    recording.contact_id,
                    task_id=decision.entry.task_id,
                    generation=done.generation if done else None,
                )
            )
        if decision.action == "failed":
            last = decision.entry.outcome
            return logged(
                PushResult(
                    "already_failed",
                    recording.location,
                    recording.key,
                    recording.contact_id,
                    code=last.code if last else None,
                    message="recorded as failed earlier; `qcflow replay` re-pushes it",
                    generation=last.generation if last else None,
                )
            )
        return logged(
            PushResult(
                "busy",
                recording.location,
                recording.key,
                recording.contact_id,
                message=f"claimed by another invocation until {_iso(decision.busy_until)}",
                held_until=decision.busy_until,
            )
        )

    async def _ready(self, recording: Recording, claimed: _Claimed) -> _Ready | PushResult:
        """CCC's upload parameters for the recording's call, made into its call item; or the
        recording's failure (recorded) or ``retry``."""
        generation, uncertain = claimed.generation, claimed.uncertain
        if not recording.contact_id:
            return await self._fail(
                recording,
                generation,
                "NoContactId",
                f"no ContactId in metadata header x-oss-meta-{self.settings.contact_id_metadata} "
                f"nor matching QCFLOW_CONTACT_ID_PATTERN={self.settings.contact_id_pattern!r}",
                uncertain=uncertain,
            )
        try:
            answer = await self.ccc.get_upload_audio_data_params(recording.contact_id, deadline=claimed.deadline)
        except DeploymentError:
            raise  # about the deployment, not the recording: never recorded as its failure
        except PermanentError as exc:
            return await self._fail(
                recording, generation, exc.code or type(exc).__name__, exc.message, exc=exc, uncertain=uncertain
            )
        except RetryableError as exc:
            return self._result("retry", recording, exc=exc, generation=generation)
        try:
            item = self._call_item(recording, answer.params)
        except PermanentError as exc:
            return await self._fail(
                recording,
                generation,
                exc.code or "InvalidParams",
                exc.message,
                request_id=answer.request_id,
                uncertain=uncertain,
            )
        strategy = self.settings.audio_url_strategy
        return _Ready(recording, generation, uncertain, item, strategy, claimed.deadline)

    def _call_item(self, recording: Recording, params: UploadAudioDataParams) -> CallItem:
        source = call_for(params, recording.contact_id)
        if source is None:
            raise PermanentError("CCC ParamsStr has no callList entry", code="InvalidParamsStr")
        url = self._voice_file_url(recording, source)
        check_url_lifetime(url, minimum=self.settings.audio_url_min_seconds, now=self.clock())
        return call_item(self.settings, recording, source, params, url=url, remarks=dict(self.settings.remarks))

    def _voice_file_url(self, recording: Recording, source: CccCall) -> str:
        """CCC's URL of the recording (strategy ``ccc``), or the recording object signed by us (``signed``)."""
        if self.settings.audio_url_strategy == "ccc":
            if not source.voice_file_url:
                raise PermanentError("CCC ParamsStr has no voiceFileUrl", code="NoVoiceFileUrl")
            return source.voice_file_url
        if self.sign_url is None or recording.key is None:
            raise PermanentError(
                self.sign_url_problem or f"{env_name('audio_url_strategy')}=signed needs a recording object to sign",
                code="AudioUrlSigningUnavailable",
            )
        return self.sign_url(recording.key)

    async def _unless_sent_before(self, ready: _Ready, claimed: _Claimed) -> _Ready | PushResult:
        """``ready``, unless SCA has a task of an earlier attempt (then recorded as submitted).

        Looked up only when an earlier attempt may have reached SCA: the claim says so, or the call
        is pushed both by ContactId and by key (two ledger ids, one call: any task of the ContactId
        uploaded since the call started counts).
        """
        recording = ready.recording
        contact_id = recording.contact_id
        assert contact_id is not None  # _ready refuses a recording without one
        uncertain, any_name = claimed.uncertain, False
        if recording.location.startswith(CONTACT_LOCATION):
            # the call's recording object may have been pushed by the trigger, under another ledger id
            await asyncio.to_thread(self.ledger.mark_contact_push, contact_id, recording.location)
            uncertain = any_name = True
        elif await asyncio.to_thread(self.ledger.contact_pushed, contact_id):
            uncertain = any_name = True  # `qcflow push --contact-id` pushed this call already?
        if not uncertain:
            return ready
        started = ready.item.call.call_start_time
        since = started / 1000.0 if any_name and started else None
        try:
            found = await self._lookup(
                recording, claimed.claims, deadline=ready.deadline, any_name=any_name, since=since
            )
        except RetryableError as exc:
            return self._result("retry", recording, exc=exc, generation=ready.generation)
        except DeploymentError:
            raise
        except PermanentError as exc:
            return await self._fail(
                recording, ready.generation, exc.code or type(exc).__name__, exc.message, exc=exc, uncertain=True
            )
        if found is not None:
            return await self._submitted(ready, task_id=found, via="lookup")
        return ready

    async def _lookup(
        self,
        recording: Recording,
        claims: Iterable[Any],
        *,
        deadline: float,
        any_name: bool = False,
        since: float | None = None,
    ) -> str | None:
        """The taskId of an earlier attempt's upload of this recording, if SCA has one (``any_name``:
        any task of its ContactId uploaded after ``since``, e.g. the call's start)."""
        times = [c.claimed_at for c in claims] + ([since] if since else []) or [self.clock()]
        zone = self.zone
        start = datetime.fromtimestamp(min(times) - LOOKUP_SLACK_SECONDS, timezone.utc)
        end = datetime.fromtimestamp(self.clock() + LOOKUP_SLACK_SECONDS, timezone.utc)
        query = GetResultQuery(
            call_id=recording.contact_id,
            start_time=format_sca_time(start, zone),
            end_time=format_sca_time(end, zone),
            page_size=99,
            required_fields="taskId,status,recording",
        )
        page = await self.sca.get_result_page(query, deadline=deadline)
        for item in page.items:
            name = (item.get("Recording") or {}).get("Name")
            if item.get("TaskId") and (any_name or name is None or name == recording.file_name):
                log.info(
                    "found an earlier attempt's task in SCA",
                    extra={"event": "push_lookup_found", "task_id": item["TaskId"], "contact_id": recording.contact_id},
                )
                return str(item["TaskId"])
        return None

    async def _send(
        self, batch: list[_Ready], *, deadline: float, held: HeldClaims | None = None, landed: bool = False
    ) -> list[PushResult]:
        """Send ``batch`` in one ``UploadAudioData``: a result per recording.

        ``landed``: an earlier request of this generation that carried these recordings (the batch
        that was split into them) may have reached SCA. Then no later refusal, however certain,
        makes them unsent: their claims stay, and an outcome says ``uncertain``.
        """
        first = batch[0]
        request = upload_request([r.item for r in batch], callback_url=self.callback_url, rule_ids=self._rule_ids)
        if held is not None:
            for one in batch:
                held.sent(one.recording.location)  # before the request: it may leave, whatever follows
        try:
            receipt = await self.sca.upload_audio_data(request, deadline=deadline)
        except DuplicateCallUuidError as exc:
            if len(batch) > 1:
                return await self._split(batch, deadline=deadline, cause=exc, held=held, landed=landed)
            return [await self._submitted(first, task_id=None, via="call_uuid_repeated", exc=exc)]
        except DeploymentError as exc:
            _answered(held, batch, exc, landed=landed)
            raise  # the credentials or the RAM policy, for every recording alike: nothing to split or record
        except PermanentError as exc:
            if len(batch) > 1:
                return await self._split(batch, deadline=deadline, cause=exc, held=held, landed=landed)
            return [
                await self._fail(
                    first.recording,
                    first.generation,
                    exc.code or type(exc).__name__,
                    exc.message,
                    exc=exc,
                    uncertain=first.uncertain or landed or exc.prior_attempt_uncertain,
                )
            ]
        except RetryableError as exc:
            _answered(held, batch, exc, landed=landed)
            return [self._result("retry", r.recording, exc=exc, generation=r.generation) for r in batch]
        return [
            await self._submitted(
                r,
                task_id=receipt.task_id,
                via="upload",
                attempts=receipt.attempts,
                request_id=receipt.request_id,
                uncertain=receipt.prior_attempt_uncertain or landed,
            )
            for r in batch
        ]

    async def _split(
        self,
        batch: list[_Ready],
        *,
        deadline: float,
        cause: QcflowError,
        held: HeldClaims | None = None,
        landed: bool = False,
    ) -> list[PushResult]:
        """Send each recording of a refused ``batch`` alone. A refusal after an attempt that may have
        been applied (a lost answer, then "callUuid repeated") means the batch may be in SCA: each
        recording is sent ``landed`` (``_send``), whatever its own request meets."""
        landed = landed or cause.prior_attempt_uncertain
        log.warning(
            "UploadAudioData refused a batch of %d (%s); sending each recording alone",
            len(batch),
            cause.code,
            extra={"event": "push_batch_split", "code": cause.code, "request_id": cause.request_id},
        )
        results: list[PushResult] = []
        for one in batch:
            results.extend(await self._send([one], deadline=min(deadline, one.deadline), held=held, landed=landed))
        return results

    # ------------------------------------------------------------------ outcomes

    async def _submitted(
        self,
        ready: _Ready,
        *,
        task_id: str | None,
        via: str,
        exc: QcflowError | None = None,
        attempts: int | None = None,
        request_id: str | None = None,
        uncertain: bool = False,
    ) -> PushResult:
        rec = ready.recording
        outcome = Outcome(
            generation=ready.generation,
            state="submitted",
            recorded_at=self.clock(),
            location=rec.location,
            key=rec.key,
            etag=rec.etag,
            contact_id=rec.contact_id,
            task_id=task_id,
            call_uuid=rec.call_uuid,
            voice_url_strategy=ready.url_strategy,
            code=exc.code if exc else None,
            request_id=request_id or (exc.request_id if exc else None),
            attempts=attempts or (exc.attempts if exc else None),
            via=via,
            uncertain=uncertain or bool(exc and exc.prior_attempt_uncertain),
        )
        return await self._write(outcome, rec)

    async def _fail(
        self,
        recording: Recording,
        generation: int,
        code: str,
        message: str,
        *,
        exc: QcflowError | None = None,
        request_id: str | None = None,
        uncertain: bool = False,
    ) -> PushResult:
        outcome = Outcome(
            generation=generation,
            state="failed",
            recorded_at=self.clock(),
            location=recording.location,
            key=recording.key,
            etag=recording.etag,
            contact_id=recording.contact_id,
            call_uuid=recording.call_uuid,
            code=code,
            message=redact(message),
            request_id=request_id or (exc.request_id if exc else None),
            attempts=exc.attempts if exc else None,
            uncertain=uncertain or bool(exc and exc.prior_attempt_uncertain),
        )
        return await self._write(outcome, recording)

    async def _write(self, outcome: Outcome, recording: Recording) -> PushResult:
        held = _HOLDING.get()
        ticket = held.begin() if held is not None else None

        def record() -> Outcome:
            stored = self.ledger.record(outcome)
            if held is not None:  # from the thread: settled even if its coroutine was cancelled meanwhile
                held.settled(outcome.location)
            return stored

        try:
            stored = await asyncio.to_thread(_counted, record, ticket)
        except asyncio.CancelledError:
            if ticket is not None:
                ticket.abandon()  # not started yet: it never will (started: the release waits for it)
            raise
        except RetryableError as exc:
            return self._result("retry", recording, exc=exc, generation=outcome.generation)
        status: PushStatus = "submitted" if stored.state == "submitted" else "failed"
        return logged(
            PushResult(
                status,
                stored.location,
                stored.key,
                stored.contact_id,
                task_id=stored.task_id,
                code=stored.code,
                message=stored.message,
                request_id=stored.request_id,
                generation=stored.generation,
                attempts=stored.attempts,
                uncertain=stored.uncertain,
            )
        )

    @staticmethod
    def _result(
        status: PushStatus, recording: Recording, *, exc: QcflowError, generation: int | None = None
    ) -> PushResult:
        return error_result(
            status,
            exc,
            location=recording.location,
            key=recording.key,
            contact_id=recording.contact_id,
            generation=generation,
        )

    # ------------------------------------------------------------------ replay (qcflow.push.replay)
    # Operators' commands (``qcflow replay``): imported when called, so the push function never loads them.

    async def replayable(self) -> list[tuple[Recording, int]]:
        """Recordings to re-push, with the generation to settle (``qcflow.push.replay.replayable``)."""
        from qcflow.push import replay as replaying

        return await replaying.replayable(self)

    async def replay(
        self,
        *,
        token: str,
        deadline: float,
        concurrency: int = 8,
        on_result: Callable[[PushResult], None] | None = None,
    ) -> list[PushResult]:
        """Re-push every recorded failure (after its cause was fixed)."""
        from qcflow.push import replay as replaying

        return await replaying.replay(
            self, token=token, deadline=deadline, concurrency=concurrency, on_result=on_result
        )


async def _gather_all(aws: Iterable[Any]) -> list[Any]:
    """``asyncio.gather`` that lets every branch finish before raising the first error: a branch
    left running would go on (send, record) after the invocation ended, on the instance's loop."""
    results = await asyncio.gather(*aws, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results


def _counted(work: Callable[[], _T], ticket: ClaimTicket | None) -> _T:
    """``work()`` (a claim, an outcome) in a worker thread, unless its caller was cancelled before
    the thread started; ``HeldClaims.wait_idle`` waits for it while it runs."""
    if ticket is None:
        return work()
    if not ticket.start():
        raise asyncio.CancelledError()
    try:
        return work()
    finally:
        ticket.done()


def _stop(stopped: list[DeploymentError], exc: DeploymentError) -> None:
    """Note a deployment error; the first is logged with what to fix (the recording is not burnt)."""
    if not stopped:
        log.error(
            "push stopped by a deployment error, nothing recorded as failed: %s; fix: %s",
            exc,
            exc.remedy,
            extra={"event": "push_deployment_error", "code": exc.code, "request_id": exc.request_id},
        )
    stopped.append(exc)


def _answered(held: HeldClaims | None, batch: list[_Ready], exc: QcflowError, *, landed: bool = False) -> None:
    """An ``UploadAudioData`` refused before any work (throttling, the caller refused, a connection
    never made, the deadline) sent nothing: its recordings' claims may be released after all —
    unless an earlier request carrying them may have been applied (``landed``: the batch they were
    split from). A failure of the service itself (``InternalError``, ``ServiceUnavailable``, 5xx)
    says it failed, not that it did nothing: the task may exist, so the claim stays."""
    if isinstance(exc, ServiceUnavailableError):
        return
    if held is not None and not (landed or exc.prior_attempt_uncertain):
        for one in batch:
            held.not_sent(one.recording.location)


def _with_hold(result: PushResult, held: HeldClaims) -> PushResult:
    """``result`` saying whether this run released its claim or still holds it, until when."""
    claim = held.get(result.location)
    if claim is None or result.status not in ("retry", "busy") or result.held_until is not None:
        return result
    if claim.released:
        return replace(result, released=True)
    if claim.settled:
        return result
    return replace(result, held_until=claim.expires_at)


def _iso(epoch: float | None) -> str:
    return "?" if epoch is None else datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="seconds")
