"""Review of issue 22 #1, #2 (released claims, deployment errors): attacks that broke something,
each kept as the test of its fix."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import replace
from typing import Any

import httpx
import pytest

from qcflow.acs.client import AcsClient
from qcflow.credentials import Credentials, credentials_from_env
from qcflow.errors import (
    _CLOCK_PREFIXES,
    _CREDENTIAL_PREFIXES,
    DeploymentError,
    DuplicateCallUuidError,
    QcflowError,
    RequestError,
    ServiceUnavailableError,
    error_class_for_code,
)
from qcflow.ledger import Ledger
from qcflow.push.held import HeldClaims
from qcflow.services import build_services
from qcflow.tools.sandbox.options import FaultOptions
from tests.push.conftest import PushWorld, world  # noqa: F401, F811 - fixture

CREDS = Credentials("LTAI-review", "review-secret")


def _scripted_upload(sca: Any, batch_error: QcflowError, single_error: QcflowError) -> list[int]:
    """``sca.upload_audio_data``: a batch really lands in the sandbox but its answer is lost and the
    retry is refused (``batch_error``, uncertain); every request after it fails with ``single_error``."""
    real = sca.upload_audio_data
    sizes: list[int] = []

    async def upload(request: Any, *, deadline: float | None = None) -> Any:
        sizes.append(len(request.call_list))
        if len(sizes) == 1:
            await real(request, deadline=deadline)  # attempt 1 reached SCA; its answer was lost
            batch_error.prior_attempt_uncertain = True
            batch_error.attempts = 2
            raise batch_error
        raise single_error

    sca.upload_audio_data = upload
    return sizes


@pytest.mark.parametrize(
    "batch_error",
    [
        DuplicateCallUuidError("callUuid repeated", code="CallUuidRepeated", action="UploadAudioData"),
        ServiceUnavailableError("busy", code="ServiceUnavailable", action="UploadAudioData"),
    ],
    ids=["duplicate-after-lost-answer", "unavailable-after-lost-answer"],
)
def test_a_split_after_an_uncertain_batch_keeps_its_claims(world: PushWorld, batch_error: QcflowError) -> None:
    """A batch whose request may have reached SCA is split (or retried) and each recording then meets a
    certain refusal: the batch's request may still be in SCA, so no claim may be released (a rerun
    would send again without looking) — the release must not forget the batch it rode in."""
    keys = [f"ccc/2026/12/04/job-{900 + i}.mkv" for i in range(2)]
    for key in keys:
        world.put_recording(key)
    held = HeldClaims()

    async def run() -> list[Any]:
        creds = credentials_from_env()
        services = await build_services(lambda: creds)
        try:
            pusher = services.pusher()
            single = ServiceUnavailableError("busy", code="ServiceUnavailable", action="UploadAudioData")
            sizes = _scripted_upload(pusher.sca, batch_error, single)
            recordings = [r async for r in pusher.recordings_under("ccc/")]
            results = await pusher.push(
                recordings,
                token="cli-review",
                deadline=time.monotonic() + 60,
                release_unsent=True,
                held=held,
            )
            assert sizes[0] == 2, sizes  # one batch of both
            return results
        finally:
            await services.aclose()

    results = asyncio.run(run())
    assert sorted(r.status for r in results) == ["retry", "retry"], results
    assert len(world.all_tasks()) == 2, "the batch reached SCA"
    for key in keys:
        entry = world.entry(key)
        assert not entry.released, f"{key}: released although its batch may be in SCA"
        assert entry.latest_generation == 0
    assert held.count_released() == 0 and len(held.still_held()) == 2
    # and a rerun by another run (after the claims expired) looks in SCA first: no second task
    ledger = Ledger(world.state)
    later = time.time() + 7200
    for key in keys:
        decision = ledger.claim(world.location(key), token="cli-rerun", now=later, expires_at=later + 60)
        assert decision.action == "proceed" and decision.uncertain, decision


def test_a_failure_after_a_split_of_an_uncertain_batch_is_recorded_uncertain(world: PushWorld) -> None:
    """The batch may be in SCA; its recordings then refused alone are recorded failed *uncertain*, so
    that ``qcflow replay`` looks in SCA before sending them again (a second task after 2 h otherwise)."""
    keys = [f"ccc/2026/12/04/job-{910 + i}.mkv" for i in range(2)]
    for key in keys:
        world.put_recording(key)

    async def run() -> list[Any]:
        creds = credentials_from_env()
        services = await build_services(lambda: creds)
        try:
            pusher = services.pusher()
            batch = DuplicateCallUuidError("callUuid repeated", code="CallUuidRepeated", action="UploadAudioData")
            single = RequestError("bad parameter", code="InvalidParameter", action="UploadAudioData")
            _scripted_upload(pusher.sca, batch, single)
            recordings = [r async for r in pusher.recordings_under("ccc/")]
            return await pusher.push(
                recordings, token="cli-review", deadline=time.monotonic() + 60, release_unsent=True
            )
        finally:
            await services.aclose()

    results = asyncio.run(run())
    assert sorted(r.status for r in results) == ["failed", "failed"], results
    ledger = Ledger(world.state)
    later = time.time() + 7200
    for key in keys:
        entry = world.entry(key)
        assert entry.outcomes[0].uncertain, entry.outcomes
        decision = ledger.claim(world.location(key), token="replay-x", now=later, expires_at=later + 60, replay=True)
        assert decision.action == "proceed" and decision.uncertain, decision


@pytest.mark.parametrize("code", [*_CREDENTIAL_PREFIXES, *_CLOCK_PREFIXES])
def test_every_code_with_a_credential_or_clock_remedy_is_a_deployment_error(code: str) -> None:
    """``deployment_remedy`` knows these codes as the credentials' or the clock's: classified as
    anything but a ``DeploymentError``, the push would record the recording failed for them."""
    assert issubclass(error_class_for_code(code, 400), DeploymentError), code
    assert issubclass(error_class_for_code(f"{code}.Something", 403), DeploymentError), code


@pytest.mark.parametrize("code", ["SecurityTokenExpired", "RequestTimeTooSkewed"])
def test_the_acs_client_stops_at_once_on_them_naming_a_remedy(code: str) -> None:
    calls: list[int] = []

    def answer(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(400, json={"Code": code, "Message": "no", "RequestId": "R"})

    async def call() -> None:
        async with AcsClient(
            "qualitycheck.cn-hangzhou.aliyuncs.com", "2019-01-15", lambda: CREDS, transport=httpx.MockTransport(answer)
        ) as acs:
            await acs.call("UploadAudioData", {"JsonStr": "{}"})

    with pytest.raises(DeploymentError) as caught:
        asyncio.run(call())
    assert calls == [1] and caught.value.code == code and caught.value.remedy


def test_an_outcome_still_being_written_when_the_run_is_cancelled_is_not_released(world: PushWorld) -> None:
    """Ctrl-C while a worker thread writes a recording's outcome: the coroutine is cancelled, the
    thread goes on. The release must wait for it and leave the settled generation alone — not write
    a release record beside an outcome (a failure then hidden from the ledger's rules: a plain push
    would claim the failed recording again as if never tried)."""
    key = "ccc/2026/12/04/job-920.mkv"
    world.put_recording(key)
    entered, go_on = threading.Event(), threading.Event()
    held = HeldClaims()

    async def run() -> None:
        creds = credentials_from_env()
        services = await build_services(lambda: creds)
        try:
            pusher = services.pusher()
            real_record = pusher.ledger.record

            def slow_record(outcome: Any) -> Any:
                entered.set()
                go_on.wait(10)
                return real_record(outcome)

            pusher.ledger.record = slow_record  # type: ignore[method-assign]
            # CCC refuses the ContactId: the recording's failure is being recorded when Ctrl-C comes
            recording = replace(await pusher.resolve(key), contact_id="job-unknown-920")
            task = asyncio.ensure_future(
                pusher.push(
                    [recording], token="cli-review", deadline=time.monotonic() + 60, release_unsent=True, held=held
                )
            )
            while not entered.is_set():
                await asyncio.sleep(0.01)
            task.cancel()
            threading.Timer(0.5, go_on.set).start()  # the write ends a little after the cancellation
            with pytest.raises(asyncio.CancelledError):
                await task
            go_on.set()
            await asyncio.sleep(0.6)
        finally:
            await services.aclose()

    asyncio.run(run())
    entry = world.entry(key)
    assert 0 in entry.outcomes and entry.outcomes[0].state == "failed", entry
    assert not entry.released, f"a settled generation was released: {entry}"
    assert held.count_released() == 0 and not held.still_held()
    now = time.time()
    again = Ledger(world.state).claim(world.location(key), token="cli-rerun", now=now, expires_at=now + 60)
    assert again.action == "failed", again  # `qcflow replay`'s, not a plain push's


@pytest.mark.parametrize("code", ["InternalError", "ServiceUnavailable", "UnknownError"])
def test_a_server_side_failure_of_the_upload_keeps_its_claim(world: PushWorld, code: str) -> None:
    """A 5xx or ``Success: false`` with ``InternalError`` says the service failed, not that it did
    nothing: the task may have been created before the failure. Such an UploadAudioData may have
    reached SCA, so an operator's run does not release its claim (the rerun looks first); only a
    refusal that precedes the work (throttling, a connection never made, the deadline) releases."""
    key = "ccc/2026/12/04/job-930.mkv"
    world.put_recording(key)
    held = HeldClaims()

    async def run() -> list[Any]:
        creds = credentials_from_env()
        services = await build_services(lambda: creds)
        try:
            pusher = services.pusher()
            real = pusher.sca.upload_audio_data

            async def upload(request: Any, *, deadline: float | None = None) -> Any:
                await real(request, deadline=deadline)  # the task is created, then the service fails
                raise ServiceUnavailableError("failed", code=code, http_status=500, action="UploadAudioData")

            pusher.sca.upload_audio_data = upload  # type: ignore[method-assign]
            recording = await pusher.resolve(key)
            return await pusher.push(
                [recording], token="cli-review", deadline=time.monotonic() + 60, release_unsent=True, held=held
            )
        finally:
            await services.aclose()

    [result] = asyncio.run(run())
    assert result.status == "retry" and len(world.all_tasks()) == 1
    entry = world.entry(key)
    assert not entry.released, entry
    assert held.count_released() == 0 and len(held.still_held()) == 1


def test_ctrl_c_during_the_end_of_round_release_still_releases_every_unsent_claim(world: PushWorld) -> None:
    """A round ends with recordings ``retry`` (CCC down): their claims are being released when
    Ctrl-C comes. The release goes on to the last of them (and counts the one whose thread was
    writing), or the rerun is ``busy`` for them until the claims expire."""
    keys = [f"ccc/2026/12/04/job-{940 + i}.mkv" for i in range(3)]
    for key in keys:
        world.put_recording(key)
    world.server.app.options = replace(
        world.server.app.options,
        faults=FaultOptions(server_error_rate=1.0, actions=frozenset({"GetUploadAudioDataParams"}), seed=1),
    )
    entered, go_on = threading.Event(), threading.Event()
    held = HeldClaims()

    async def run() -> None:
        creds = credentials_from_env()
        services = await build_services(lambda: creds)
        try:
            pusher = services.pusher()
            real_release = pusher.ledger.release

            def slow_release(*args: Any, **kwargs: Any) -> bool:
                entered.set()
                go_on.wait(10)
                return real_release(*args, **kwargs)

            pusher.ledger.release = slow_release  # type: ignore[method-assign]
            recordings = [r async for r in pusher.recordings_under("ccc/")]
            task = asyncio.ensure_future(
                pusher.push(
                    recordings, token="cli-review", deadline=time.monotonic() + 60, release_unsent=True, held=held
                )
            )
            while not entered.is_set():
                await asyncio.sleep(0.01)
            task.cancel()
            threading.Timer(0.3, go_on.set).start()
            with pytest.raises(asyncio.CancelledError):
                await task
        finally:
            go_on.set()
            await services.aclose()

    asyncio.run(run())
    for key in keys:
        assert world.entry(key).released == {0}, f"{key} still blocks the rerun: {world.entry(key)}"
    assert held.count_released() == 3 and not held.still_held()
