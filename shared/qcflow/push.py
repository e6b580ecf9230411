"""The push use case: every recording becomes exactly one SCA task, or a recorded failure.

Free of Function Compute details: it takes settings, the CCC and SCA clients, the state store
(ledger) and the recordings store. Per recording:

1. **filter** — objects under the store's own ``state/``/``results/`` (no recursive triggers),
   outside ``QCFLOW_RECORDING_PREFIX`` or without an audio suffix are ignored, with a log line;
2. **resolve** — ``head`` the object (the key as given, then URL-decoded only if the raw key is
   not found); the ContactId from the metadata header or ``QCFLOW_CONTACT_ID_PATTERN``;
3. **claim** the recording in the ledger *before any API call* (``qcflow.ledger``);
4. CCC ``GetUploadAudioDataParams`` → the ``UploadAudioData`` call item; the ``voiceFileUrl``
   must stay fetchable for ``QCFLOW_AUDIO_URL_MIN_SECONDS`` (12 h) or the push fails, recorded;
5. if an earlier attempt may have reached SCA (our own claim seen again, or a takeover),
   **look it up** in SCA (``GetResult`` by ``callId``) before sending: ``callUuid`` only
   covers 2 hours and FC retries can come later;
6. **send** in batches (``callList``), each recording with its deterministic ``callUuid``;
   a batch refused for one repeated ``callUuid`` (or failing permanently) is split and its
   recordings sent again one by one; a repeat of a single recording means "already in SCA":
   recorded as submitted with the taskId unknown (harvest fills it in from ``callId``);
7. **record** the outcome. Permanent errors are recorded as failed (``qcflow replay`` re-pushes
   them); retryable ones that outlast the deadline leave the claim and are reported as
   ``retry`` so the caller raises and FC's async retry takes over.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any, Literal
from urllib.parse import parse_qsl, unquote, unquote_plus, urlsplit

from qcflow.ccc import CccClient
from qcflow.config import Settings, env_name
from qcflow.errors import (
    ConfigError,
    NotFoundError,
    PermanentError,
    PushIncomplete,
    QcflowError,
    RequestError,
    RetryableError,
)
from qcflow.ledger import Ledger, Outcome, call_uuid_for, recording_id
from qcflow.logs import redact
from qcflow.models.ccc import CccCall, UploadAudioDataParams
from qcflow.models.sca import GetResultQuery, UploadAudioDataJson, UploadCall, format_sca_time
from qcflow.sca import DuplicateCallUuidError, ScaClient
from qcflow.store import InvalidKeyError, ObjectStore, parse_store_url

log = logging.getLogger("qcflow.push")

PushStatus = Literal["submitted", "already_submitted", "failed", "already_failed", "ignored", "busy", "retry"]
#: Seconds a claim outlives its claimant's deadline (clock skew between instances).
CLAIM_MARGIN_SECONDS = 30.0
#: Seconds around the claims' times searched in SCA for an earlier attempt's task: more than any
#: time-zone offset, since the zone SCA reads startTime/endTime in is UNCONFIRMED (the callId
#: filter keeps the answer small whatever the window).
LOOKUP_SLACK_SECONDS = 86400.0
#: The ledger location of a recording pushed by ContactId (``qcflow push --contact-id``).
CONTACT_LOCATION = "ccc:contact/"
_AUDIO_URL_CONFIG = env_name("audio_url_strategy")
_DIGITS = re.compile(r"[0-9]{1,12}")  # str.isdigit() also accepts "²", which float() and int() refuse


@dataclass(frozen=True)
class Recording:
    """One recording to push: where it lives (``location``, the ledger's identity) and what
    the object says (key in the recordings store, ETag, ContactId)."""

    location: str
    key: str | None
    etag: str | None
    contact_id: str | None

    @property
    def file_name(self) -> str:
        """Sent as ``fileName``: GetResult's ``Recording.Name`` then maps back to the object."""
        return self.key or self.contact_id or self.location

    @property
    def call_uuid(self) -> str:
        return call_uuid_for(self.location, self.etag)


@dataclass(frozen=True)
class PushResult:
    """What happened to one recording (or event record) in this run."""

    status: PushStatus
    location: str
    key: str | None = None
    contact_id: str | None = None
    task_id: str | None = None
    code: str | None = None
    message: str | None = None
    request_id: str | None = None
    generation: int | None = None
    attempts: int | None = None
    uncertain: bool = False

    @property
    def settled(self) -> bool:
        """Nothing more to do now (``busy`` and ``retry`` need a later attempt)."""
        return self.status not in ("busy", "retry")


@dataclass
class _Ready:
    """A claimed recording with its call item, waiting to be sent."""

    recording: Recording
    generation: int
    uncertain: bool
    call: UploadCall
    auto_split: Literal[0, 1]
    sample_rate: Literal[8, 16] | None
    url_strategy: str
    #: Work on this recording must end by then (its claim's expiry, the invocation's deadline).
    deadline: float


def object_location(store_url: str, key: str) -> str:
    """A location comparable across stores: ``oss://bucket/full/key`` or ``file:/abs/path/key``."""
    kind, where, prefix = parse_store_url(store_url)
    if kind == "oss":
        return f"oss://{where}/{prefix + '/' if prefix else ''}{key}"
    from pathlib import Path

    return f"file:{Path(where).expanduser().absolute().as_posix().rstrip('/')}/{key}"


def url_expires_at(url: str, now: float) -> float | None:
    """When a pre-signed URL stops working (epoch seconds), or None if it does not say.

    OSS V1 (``Expires=<epoch>``), OSS V4 (``x-oss-date`` + ``x-oss-expires``) and S3-style
    (``X-Amz-Date`` + ``X-Amz-Expires``) are understood.
    """
    params = {k.lower(): v for k, v in parse_qsl(urlsplit(url).query, keep_blank_values=True)}
    if _DIGITS.fullmatch(params.get("expires", "")):
        return float(params["expires"])
    for date_key, expires_key in (("x-oss-date", "x-oss-expires"), ("x-amz-date", "x-amz-expires")):
        if _DIGITS.fullmatch(params.get(expires_key, "")) and params.get(date_key):
            try:
                signed = datetime.strptime(params[date_key], "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
            except ValueError:
                return None
            return signed.timestamp() + int(params[expires_key])
    return None


class Pusher:
    """Pushes recordings through the ledger to SCA. One per process; safe for concurrent use."""

    def __init__(
        self,
        settings: Settings,
        *,
        ccc: CccClient,
        sca: ScaClient,
        store: ObjectStore,
        recordings: ObjectStore | None,
        sign_url: Callable[[str], str] | None = None,
        sign_url_problem: str | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.ccc = ccc
        self.sca = sca
        self.store = store
        self.ledger = Ledger(store)
        self.recordings = recordings
        self.sign_url = sign_url
        self.sign_url_problem = sign_url_problem
        self.clock = clock
        self.monotonic = monotonic
        self._pattern = re.compile(settings.contact_id_pattern)
        self._suffixes = tuple(s.strip().lower() for s in settings.recording_suffixes.split(",") if s.strip())
        self._remarks = _parse_remarks(settings.push_remarks)
        try:  # the values too: one UploadCall refuses would fail every push after its claim
            UploadCall(voice_file_url="https://example.invalid/a.wav", **self._remarks)
        except ValueError as exc:
            raise ConfigError(f"{env_name('push_remarks')}: {str(exc).splitlines()[0]}") from None
        if settings.push_claim_ttl_seconds <= 2 * CLAIM_MARGIN_SECONDS:
            raise ConfigError(
                f"{env_name('push_claim_ttl_seconds')} must exceed {2 * CLAIM_MARGIN_SECONDS:g} s: a claimant "
                f"stops working {CLAIM_MARGIN_SECONDS:g} s before its claim expires"
            )
        self._rule_ids: list[int | str] | None = [
            r.strip() for r in (settings.push_rule_ids or "").split(",") if r.strip()
        ] or None
        self._own_prefixes = tuple(object_location(settings.store, p) for p in ("state/", "results/"))

    # ------------------------------------------------------------------ which objects

    def why_ignored(self, location: str, key: str) -> str | None:
        """The reason ``key`` is not a recording to push, or None."""
        if location.startswith(self._own_prefixes):
            return "object under the store's own state/ or results/ prefix (no recursive triggers)"
        if not key.startswith(self.settings.recording_prefix):
            return f"key outside QCFLOW_RECORDING_PREFIX={self.settings.recording_prefix!r}"
        if self._suffixes and not key.lower().endswith(self._suffixes):
            return f"not an audio suffix ({', '.join(self._suffixes)})"
        return None

    def contact_id_for(self, key: str, metadata: dict[str, str] | None) -> str | None:
        """The ContactId: the metadata header first, else the first match of the pattern in the key."""
        header = (metadata or {}).get(self.settings.contact_id_metadata.lower())
        if header and header.strip():
            return header.strip()
        match = self._pattern.search(key)
        if not match:
            return None
        return match.groupdict().get("contact") or match.group(0)

    async def resolve(self, key: str) -> Recording | PushResult:
        """The recording behind an event's key: filtered, ``head``-ed (raw key, then decoded), ContactId found."""
        if self.recordings is None:
            raise ConfigError("no recordings store: set QCFLOW_RECORDINGS_URL")
        recordings_url = self.recordings.url
        candidates = [key]
        for decoded in (unquote_plus(key), unquote(key)):
            if decoded not in candidates:
                candidates.append(decoded)
        first_location = object_location(recordings_url, key)
        reason = self.why_ignored(first_location, key)
        if reason:
            return self._ignored(first_location, key, reason)
        for candidate in candidates:
            location = object_location(recordings_url, candidate)
            try:
                info = await asyncio.to_thread(self.recordings.head, candidate)
            except NotFoundError:
                continue
            except (InvalidKeyError, RequestError) as exc:  # e.g. a segment too long for a local folder
                return self._ignored(location, candidate, f"not a valid object key: {exc.message}")
            except RetryableError as exc:
                return self._result("retry", Recording(location, candidate, None, None), exc=exc)
            if candidate != key:
                reason = self.why_ignored(location, candidate)
                if reason:
                    return self._ignored(location, candidate, reason)
                log.info("key %r found URL-decoded as %r", key, candidate, extra={"event": "push_key_decoded"})
            contact_id = self.contact_id_for(candidate, dict(info.metadata))
            return Recording(location, candidate, info.etag.strip('"') or None, contact_id)
        result = PushResult(
            "failed",
            first_location,
            key,
            code="ObjectNotFound",
            message=f"no object {key!r} in {recordings_url} (nor its URL-decoded form)",
        )
        log.error("push: %s", result.message, extra=_fields(result, event="push_outcome"))
        return result

    def _ignored(self, location: str, key: str, reason: str) -> PushResult:
        result = PushResult("ignored", location, key, message=reason)
        shown = key if len(key) <= 300 else key[:300] + f"… ({len(key)} characters)"  # a forged key: a bounded line
        log.info(
            "ignored %r: %s",
            shown,
            reason[:300],
            extra=_fields(replace(result, key=shown, message=reason[:300]), event="push_ignored"),
        )
        return result

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
    ) -> list[PushResult]:
        """Claim, prepare and send ``recordings``; one result each (order not kept).

        ``token`` identifies the invocation (stable across FC's retries of it where possible);
        ``deadline`` is an absolute ``time.monotonic()`` after which nothing new starts.
        """
        results: list[PushResult] = []

        def settle(result: PushResult) -> None:
            results.append(result)
            if on_result is not None:
                on_result(result)

        gate = asyncio.Semaphore(max(1, concurrency))
        # One invocation has one token: the ledger cannot arbitrate between two copies of a recording in it.
        unique: dict[str, Recording] = {}
        for recording in recordings:
            if recording.location in unique:
                settle(
                    self._ignored(
                        recording.location,
                        recording.key or recording.location,
                        "the same recording twice in one invocation: pushed once",
                    )
                )
            else:
                unique[recording.location] = recording

        async def prepare(recording: Recording) -> _Ready | None:
            async with gate:
                outcome = await self._prepare(recording, token=token, deadline=deadline, replay=replay)
            if isinstance(outcome, PushResult):
                settle(outcome)
                return None
            return outcome

        ready = [r for r in await _gather_all(prepare(r) for r in unique.values()) if r is not None]
        batches = _batches(ready, self.settings.push_batch_size)

        async def send(batch: list[_Ready]) -> None:
            async with gate:
                for result in await self._send(batch, deadline=min(r.deadline for r in batch)):
                    settle(result)

        await _gather_all(send(b) for b in batches)
        return results

    async def _prepare(self, recording: Recording, *, token: str, deadline: float, replay: bool) -> _Ready | PushResult:
        now = self.clock()
        remaining = max(0.0, deadline - self.monotonic())
        expires_at = now + min(remaining + CLAIM_MARGIN_SECONDS, self.settings.push_claim_ttl_seconds)
        try:
            decision = await asyncio.to_thread(
                self.ledger.claim,
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
        except RetryableError as exc:
            return self._result("retry", recording, exc=exc)
        if decision.action == "submitted":
            done = decision.entry.submitted
            return self._log(
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
            return self._log(
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
        if decision.action == "busy":
            return self._log(
                PushResult(
                    "busy",
                    recording.location,
                    recording.key,
                    recording.contact_id,
                    message=f"claimed by another invocation until {_iso(decision.busy_until)}",
                )
            )
        generation = decision.generation
        assert generation is not None
        # This claim's work must end before the claim does: nobody takes it over meanwhile.
        held_until = decision.expires_at if decision.expires_at is not None else expires_at
        deadline = min(deadline, self.monotonic() + (held_until - now) - CLAIM_MARGIN_SECONDS)

        if not recording.contact_id:
            return await self._fail(
                recording,
                generation,
                "NoContactId",
                f"no ContactId in metadata header x-oss-meta-{self.settings.contact_id_metadata} "
                f"nor matching QCFLOW_CONTACT_ID_PATTERN={self.settings.contact_id_pattern!r}",
                uncertain=decision.uncertain,
            )
        try:
            answer = await self.ccc.get_upload_audio_data_params(recording.contact_id, deadline=deadline)
        except PermanentError as exc:
            return await self._fail(
                recording,
                generation,
                exc.code or type(exc).__name__,
                exc.message,
                exc=exc,
                uncertain=decision.uncertain,
            )
        except RetryableError as exc:
            return self._result("retry", recording, exc=exc, generation=generation)
        try:
            ready = self._ready(recording, generation, decision.uncertain, answer.params, deadline)
        except PermanentError as exc:
            return await self._fail(
                recording,
                generation,
                exc.code or "InvalidParams",
                exc.message,
                request_id=answer.request_id,
                uncertain=decision.uncertain,
            )
        uncertain, any_name = decision.uncertain, False
        if recording.location.startswith(CONTACT_LOCATION):
            # the call's recording object may have been pushed by the trigger, under another ledger id
            await asyncio.to_thread(self.ledger.mark_contact_push, recording.contact_id, recording.location)
            uncertain = any_name = True
        elif await asyncio.to_thread(self.ledger.contact_pushed, recording.contact_id):
            uncertain = any_name = True  # `qcflow push --contact-id` pushed this call already?
        if uncertain:
            since = ready.call.call_start_time / 1000.0 if any_name and ready.call.call_start_time else None
            try:
                found = await self._lookup(
                    recording, decision.entry.claims.values(), deadline=deadline, any_name=any_name, since=since
                )
            except RetryableError as exc:
                return self._result("retry", recording, exc=exc, generation=generation)
            except PermanentError as exc:
                return await self._fail(
                    recording, generation, exc.code or type(exc).__name__, exc.message, exc=exc, uncertain=True
                )
            if found is not None:
                return await self._submitted(ready, task_id=found, via="lookup")
        return ready

    def _ready(
        self, recording: Recording, generation: int, uncertain: bool, params: UploadAudioDataParams, deadline: float
    ) -> _Ready:
        source = _call_for(params, recording.contact_id)
        if source is None:
            raise PermanentError("CCC ParamsStr has no callList entry", code="InvalidParamsStr")
        strategy = self.settings.audio_url_strategy
        if strategy == "ccc":
            url = source.voice_file_url
            if not url:
                raise PermanentError("CCC ParamsStr has no voiceFileUrl", code="NoVoiceFileUrl")
        else:
            if self.sign_url is None or recording.key is None:
                raise PermanentError(
                    self.sign_url_problem or f"{_AUDIO_URL_CONFIG}=signed needs a recording object to sign",
                    code="AudioUrlSigningUnavailable",
                )
            url = self.sign_url(recording.key)
        self._check_url_lifetime(url)
        call = UploadCall(
            voice_file_url=url,
            file_name=recording.file_name,
            call_id=recording.contact_id,
            call_uuid=recording.call_uuid,
            call_type=source.call_type,
            call_start_time=source.call_start_time,
            caller=source.caller,
            callee=source.callee,
            customer_service_id=source.customer_service_id,
            customer_service_name=source.customer_service_name,
            skill_group_id=source.skill_group_id,
            skill_group_name=source.skill_group_name,
            business=self.settings.push_business,
            scheme_task_config_id=self.settings.push_scheme_task_config_id,
            **self._remarks,
        )
        auto_split: Literal[0, 1] = 0 if params.auto_split == 0 else 1
        sample_rate: Literal[8, 16] | None = 8 if params.sample_rate == 8 else 16 if params.sample_rate == 16 else None
        return _Ready(recording, generation, uncertain, call, auto_split, sample_rate, strategy, deadline)

    def _check_url_lifetime(self, url: str) -> None:
        minimum = self.settings.audio_url_min_seconds
        if minimum <= 0:
            return
        now = self.clock()
        expires = url_expires_at(url, now)
        if expires is None:
            log.warning(
                "voiceFileUrl does not say when it expires; sending it as is",
                extra={"event": "push_url_lifetime_unknown"},
            )
            return
        left = expires - now
        if left < minimum:
            raise PermanentError(
                f"voiceFileUrl expires in {left / 3600:.1f} h, "
                f"less than the {minimum / 3600:.1f} h SCA needs to fetch it "
                f"(QCFLOW_AUDIO_URL_MIN_SECONDS); with {_AUDIO_URL_CONFIG}=signed, sign with a long-lived key "
                "(QCFLOW_AUDIO_URL_ACCESS_KEY_ID): an STS-signed URL dies with its token",
                code="VoiceFileUrlTooShortLived",
            )

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
        zone = self.settings.zone
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

    async def _send(self, batch: list[_Ready], *, deadline: float) -> list[PushResult]:
        first = batch[0]
        request = UploadAudioDataJson(
            call_list=[r.call for r in batch],
            auto_split=first.auto_split,
            sample_rate=first.sample_rate,
            callback_url=self.settings.push_callback_url,
            rule_ids=self._rule_ids,
            service_channel=0 if first.auto_split == 0 else None,
            client_channel=1 if first.auto_split == 0 else None,
        )
        try:
            receipt = await self.sca.upload_audio_data(request, deadline=deadline)
        except DuplicateCallUuidError as exc:
            if len(batch) > 1:
                return await self._split(batch, deadline=deadline, cause=exc)
            return [await self._submitted(first, task_id=None, via="call_uuid_repeated", exc=exc)]
        except PermanentError as exc:
            if len(batch) > 1:
                return await self._split(batch, deadline=deadline, cause=exc)
            return [
                await self._fail(
                    first.recording,
                    first.generation,
                    exc.code or type(exc).__name__,
                    exc.message,
                    exc=exc,
                    uncertain=first.uncertain or exc.prior_attempt_uncertain,
                )
            ]
        except RetryableError as exc:
            return [self._result("retry", r.recording, exc=exc, generation=r.generation) for r in batch]
        return [
            await self._submitted(
                r,
                task_id=receipt.task_id,
                via="upload",
                attempts=receipt.attempts,
                request_id=receipt.request_id,
                uncertain=receipt.prior_attempt_uncertain,
            )
            for r in batch
        ]

    async def _split(self, batch: list[_Ready], *, deadline: float, cause: QcflowError) -> list[PushResult]:
        log.warning(
            "UploadAudioData refused a batch of %d (%s); sending each recording alone",
            len(batch),
            cause.code,
            extra={"event": "push_batch_split", "code": cause.code, "request_id": cause.request_id},
        )
        results: list[PushResult] = []
        for one in batch:
            results.extend(await self._send([one], deadline=min(deadline, one.deadline)))
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
        try:
            stored = await asyncio.to_thread(self.ledger.record, outcome)
        except RetryableError as exc:
            return self._result("retry", recording, exc=exc, generation=outcome.generation)
        status: PushStatus = "submitted" if stored.state == "submitted" else "failed"
        return self._log(
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

    def _result(
        self, status: PushStatus, recording: Recording, *, exc: QcflowError, generation: int | None = None
    ) -> PushResult:
        return self._log(
            PushResult(
                status,
                recording.location,
                recording.key,
                recording.contact_id,
                code=exc.code or type(exc).__name__,
                message=redact(str(exc)),
                request_id=exc.request_id,
                generation=generation,
                attempts=exc.attempts,
                uncertain=exc.prior_attempt_uncertain,
            )
        )

    @staticmethod
    def _log(result: PushResult) -> PushResult:
        level = {"failed": logging.ERROR, "retry": logging.WARNING, "busy": logging.WARNING}.get(
            result.status, logging.INFO
        )
        log.log(
            level,
            "push %s: %s",
            result.status,
            result.key or result.location,
            extra=_fields(result, event="push_outcome"),
        )
        return result

    # ------------------------------------------------------------------ backfill and replay

    async def recordings_under(self, prefix: str) -> AsyncIterator[Recording | PushResult]:
        """Every recording under ``prefix`` of the recordings store (listed lazily)."""
        if self.recordings is None:
            raise ConfigError("no recordings store: set QCFLOW_RECORDINGS_URL")
        listing = iter(self.recordings.list(prefix))
        while True:
            chunk = await asyncio.to_thread(_take, listing, 200)
            if not chunk:
                return
            for info in chunk:
                location = object_location(self.recordings.url, info.key)
                reason = self.why_ignored(location, info.key)
                if reason:
                    yield PushResult("ignored", location, info.key, message=reason)
                    continue
                metadata: dict[str, str] | None = None
                if self._pattern.search(info.key) is None:  # the listing has no metadata: head only when needed
                    metadata = dict((await asyncio.to_thread(self.recordings.head, info.key)).metadata)
                yield Recording(
                    location, info.key, info.etag.strip('"') or None, self.contact_id_for(info.key, metadata)
                )

    def recording_for_contact(self, contact_id: str) -> Recording:
        """A recording known only by its ContactId (``qcflow push --contact-id``): CCC's URL is sent."""
        return Recording(f"{CONTACT_LOCATION}{contact_id}", None, None, contact_id)

    async def replayable(self) -> list[tuple[Recording, int]]:
        """Recordings to re-push: recorded failures, and generations claimed but never settled whose
        claim expired (FC gave up on them, a replay met an outage, a kill) — with the generation."""
        found: dict[str, tuple[Recording, int]] = {}
        for rid, generation in await asyncio.to_thread(lambda: list(self.ledger.failures())):
            entry = await asyncio.to_thread(self.ledger.read, rid)
            failed = entry.outcomes.get(generation)
            later_settled = entry.latest_generation != generation and entry.outcome is not None
            if entry.submitted is not None or later_settled:
                await asyncio.to_thread(self.ledger.clear_failure, rid, generation)  # settled since
                continue
            if failed is None or failed.state != "failed":
                continue
            # a later generation still without outcome (a replay that met an outage, or was killed):
            # replay again; its claim decides (busy while it lives, taken over as uncertain after)
            found[rid] = (await self._fresh(failed.location, failed.key, failed.etag, failed.contact_id), generation)
        now = self.clock()
        for entry, generation in await asyncio.to_thread(lambda: list(self.ledger.abandoned(now))):
            claim = entry.claims[generation]
            if entry.rid not in found:
                found[entry.rid] = (
                    await self._fresh(claim.location, claim.key, claim.etag, claim.contact_id),
                    generation,
                )
        return list(found.values())

    async def _fresh(self, location: str, key: str | None, etag: str | None, contact_id: str | None) -> Recording:
        recording = Recording(location, key, etag, contact_id)
        if key is not None and self.recordings is not None and location.startswith(("oss://", "file:")):
            fresh = await self.resolve(key)
            if isinstance(fresh, Recording):
                recording = replace(fresh, location=location)
        return recording

    async def replay(
        self,
        *,
        token: str,
        deadline: float,
        concurrency: int = 8,
        on_result: Callable[[PushResult], None] | None = None,
    ) -> list[PushResult]:
        """Re-push every recorded failure (after its cause was fixed)."""
        todo = await self.replayable()
        results = await self.push(
            [r for r, _ in todo],
            token=token,
            deadline=deadline,
            replay=True,
            concurrency=concurrency,
            on_result=on_result,
        )
        failed_gen = {recording_id(r.location): g for r, g in todo}
        for result in results:
            rid = recording_id(result.location)
            if result.settled and rid in failed_gen and result.status in ("submitted", "failed", "already_submitted"):
                await asyncio.to_thread(self.ledger.clear_failure, rid, failed_gen[rid])
        return results


async def _gather_all(aws: Iterable[Any]) -> list[Any]:
    """``asyncio.gather`` that lets every branch finish before raising the first error: a branch
    left running would go on (send, record) after the invocation ended, on the instance's loop."""
    results = await asyncio.gather(*aws, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results


def _call_for(params: UploadAudioDataParams, contact_id: str | None) -> CccCall | None:
    for call in params.call_list:
        if call.call_id == contact_id:
            return call
    return params.call_list[0] if params.call_list else None


def _batches(ready: list[_Ready], size: int) -> list[list[_Ready]]:
    """Recordings that share the request's top-level fields, in batches of ``size``."""
    groups: dict[tuple[Any, ...], list[_Ready]] = {}
    for item in ready:
        groups.setdefault((item.auto_split, item.sample_rate), []).append(item)
    return [group[i : i + size] for group in groups.values() for i in range(0, len(group), size)]


def _parse_remarks(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{env_name('push_remarks')}: not JSON ({exc})") from None
    allowed = {f"remark{i}" for i in range(1, 26)}
    if not isinstance(value, dict) or not set(value) <= allowed:
        raise ConfigError(f"{env_name('push_remarks')}: must be a JSON object with keys remark1..remark25")
    return value


def _take(iterator: Any, n: int) -> list[Any]:
    out = []
    for item in iterator:
        out.append(item)
        if len(out) >= n:
            break
    return out


def _iso(epoch: float | None) -> str:
    return "?" if epoch is None else datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="seconds")


def _fields(result: PushResult, *, event: str) -> dict[str, Any]:
    return {
        "event": event,
        "status": result.status,
        "key": result.key,
        "contact_id": result.contact_id,
        "task_id": result.task_id,
        "code": result.code,
        "request_id": result.request_id,
        "generation": result.generation,
        "attempts": result.attempts,
        "uncertain": result.uncertain,
        "reason": result.message,
    }


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
) -> list[PushResult]:
    """Push a stream of recordings (``qcflow push --prefix``) in chunks, so that no claim waits
    long for its send; recordings left ``retry`` are tried again, up to ``rounds`` times, after a
    pause (the same token: each recognises its own claim and looks in SCA before sending).
    Recordings held by a live claim elsewhere stay ``busy``: that invocation settles them."""
    final: list[PushResult] = []
    far = pusher.monotonic() + 10 * 365 * 86400.0  # claims bound each recording's work, not the run

    def report(result: PushResult) -> None:
        if result.status != "retry" and on_result is not None:
            on_result(result)

    async def run(chunk: list[Recording]) -> None:
        todo = chunk
        for attempt in range(rounds):
            results = await pusher.push(todo, token=token, deadline=far, concurrency=concurrency, on_result=report)
            final.extend(r for r in results if r.status != "retry")
            by_location = {r.location: r for r in todo}
            todo = [by_location[r.location] for r in results if r.status == "retry" and r.location in by_location]
            if not todo:
                return
            if attempt + 1 < rounds:
                await asyncio.sleep(pause_seconds)
        left = [
            PushResult("retry", r.location, r.key, r.contact_id, message="still failing after retries") for r in todo
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


async def push_oss_event(
    raw_event: bytes | str | dict[str, Any],
    pusher_for: Callable[[str], Pusher],
    *,
    token: str,
    deadline: float,
) -> dict[str, Any]:
    """Push every record of an OSS trigger event; a summary of what happened.

    Malformed events, foreign buckets, keys that are not recordings and permanent failures
    end normally (logged, and recorded in the ledger where a recording was involved): FC
    retrying the same bytes cannot help. Retryable faults raise ``PushIncomplete``.
    """
    from qcflow.models.events import InvalidEventError, parse_oss_event
    from qcflow.services import ForeignBucketError

    try:
        event = parse_oss_event(raw_event)
    except InvalidEventError as exc:
        log.error("push: %s", exc, extra={"event": "push_bad_event", "reason": str(exc)})
        return {"records": 0, "error": str(exc)}
    results: list[PushResult] = []
    by_pusher: dict[int, tuple[Pusher, list[Recording]]] = {}
    for record in event.events:
        try:
            pusher = pusher_for(record.bucket)
        except ForeignBucketError as exc:
            log.error("push: %s", exc, extra={"event": "push_bad_event", "bucket": record.bucket, "key": record.key})
            results.append(
                PushResult(
                    "failed", f"oss://{record.bucket}/{record.key}", record.key, code="ForeignBucket", message=str(exc)
                )
            )
            continue
        resolved = await pusher.resolve(record.key)
        if isinstance(resolved, PushResult):
            results.append(resolved)
        else:
            by_pusher.setdefault(id(pusher), (pusher, []))[1].append(resolved)
    for pusher, recordings in by_pusher.values():
        results.extend(await pusher.push(recordings, token=token, deadline=deadline))
    summary: dict[str, Any] = {"records": len(event.events)}
    for result in results:
        summary[result.status] = summary.get(result.status, 0) + 1
    pending = [r for r in results if not r.settled]
    if pending:
        first = pending[0]
        raise PushIncomplete(
            f"{len(pending)} of {len(results)} recordings not settled yet (first: {first.key}: {first.status}, "
            f"{first.message}); FC's retry will come back",
            code=first.code,
        )
    return summary
