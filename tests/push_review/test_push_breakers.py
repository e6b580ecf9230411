"""Review: attempts to break the push path's exactly-once guarantee and its error handling.

Every test here runs the real handler / use case against the real sandbox and the real local
stores (``tests/push/conftest.py``'s ``push_world``); nothing of qcflow is mocked. A ``Pusher``
built with a shifted ``clock`` stands for "the operator runs this an hour later" (the claim
taken meanwhile has expired), instead of sleeping.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import pytest

from qcflow.credentials import credentials_from_env
from qcflow.errors import ConfigError
from qcflow.ledger import Ledger, recording_id
from qcflow.errors import PushIncomplete
from qcflow.push import Pusher, PushResult
from qcflow.tools.sandbox.options import FaultOptions, SandboxOptions
from qcflow.services import build_services
from tests.push.conftest import PushWorld, push_world, world  # noqa: F401 - fixture

T = TypeVar("T")

KEY = "ccc/2026/11/20/job-4668613943.mkv"
CONTACT = "job-4668613943"
AN_HOUR = 3600.0


def _with_pusher(work: Callable[[Pusher], Awaitable[T]], *, clock_offset: float = 0.0) -> T:
    """Run ``work`` with a Pusher built from the environment (as ``qcflow push``/``replay`` do),
    its wall clock shifted by ``clock_offset`` seconds."""

    async def main() -> T:
        services = await build_services(credentials_from_env)
        try:
            base = services.pusher()
            pusher = Pusher(
                services.settings.push, zone=services.settings.zone, ccc=services.ccc, sca=services.sca, store=services.store,
                recordings=base.recordings, clock=lambda: time.time() + clock_offset,
            )
            return await work(pusher)
        finally:
            await services.aclose()

    return asyncio.run(main())


def _replay(*, clock_offset: float = 0.0, seconds: float = 30.0) -> list[PushResult]:
    return _with_pusher(
        lambda p: p.replay(token=f"replay-{time.monotonic_ns()}", deadline=time.monotonic() + seconds),
        clock_offset=clock_offset,
    )


def _faults(world: PushWorld, faults: FaultOptions) -> None:
    world.server.app.options = replace(world.server.app.options, faults=faults)


CCC_DOWN = FaultOptions(server_error_rate=1.0, actions=frozenset({"GetUploadAudioDataParams"}), seed=1)


# --------------------------------------------------------------------------- silent loss


def test_a_replay_that_did_not_settle_is_replayed_again_later(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`qcflow replay` meets an outage (result "retry", claim g1 left without outcome); the next
    `qcflow replay`, an hour later, must push the recording. Today it drops the failure from the
    replay index ("replayed since") and pushes nothing: the recording is neither in SCA nor
    recorded as failed anywhere replay looks."""
    with push_world(tmp_path, monkeypatch, QCFLOW_MAX_ATTEMPTS="2") as world:
        key = "ccc/2026/11/20/rec-a.mkv"
        world.put_recording(key, {"contact-id": "nobody-1"})
        assert world.deliver(world.instance(), key) == {"records": 1, "failed": 1}
        world.put_recording(key, {"contact-id": CONTACT})  # the cause is fixed
        _faults(world, CCC_DOWN)
        assert [r.status for r in _replay(seconds=3)] == ["retry"]
        _faults(world, FaultOptions())
        later = _replay(clock_offset=AN_HOUR)
        assert [r.status for r in later] == ["submitted"], later
        assert len(world.tasks_for(CONTACT)) == 1


def test_a_recording_whose_fc_retries_ran_out_is_still_replayable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A retryable fault outlasts the first run and FC's 3 retries: FC gives up (dead-letter
    queue). The claim stays without outcome and is in no index: `qcflow replay` never sees it,
    nor does any later delivery come. The ledger knows; replay should pick it up."""
    with push_world(tmp_path, monkeypatch, QCFLOW_MAX_ATTEMPTS="2") as world:
        world.put_recording(KEY)
        _faults(world, CCC_DOWN)
        instance = world.instance()
        for _ in range(4):  # the first run and FC's 3 retries of the same invocation
            with pytest.raises(PushIncomplete):
                world.deliver(instance, KEY, request_id="req-dlq", timeout=8)
        _faults(world, FaultOptions())
        later = _replay(clock_offset=AN_HOUR)
        assert [r.status for r in later] == ["submitted"], later
        assert len(world.tasks_for(CONTACT)) == 1


def test_a_failure_whose_index_entry_was_not_written_is_still_replayable(world: PushWorld) -> None:
    """``Ledger.record`` writes the failed outcome, then the replay index entry: an invocation
    killed between the two leaves a failure that every later delivery reports as
    "already_failed" and that `qcflow replay` never lists."""
    key = "ccc/2026/11/20/rec-b.mkv"
    world.put_recording(key, {"contact-id": "nobody-2"})
    assert world.deliver(world.instance(), key) == {"records": 1, "failed": 1}
    rid = recording_id(world.location(key))
    index = Path(world.state.root, "state/push/failed", f"{rid}.g000000")
    index.unlink()  # the state a kill between the two writes leaves
    assert world.deliver(world.instance(), key) == {"records": 1, "already_failed": 1}  # FC's retry
    todo = _with_pusher(lambda p: p.replayable())
    assert [r.key for r, _ in todo] == [key]


# --------------------------------------------------------------------------- two tasks


@pytest.mark.parametrize("oss_first", [True, False], ids=["oss-then-contact", "contact-then-oss"])
def test_one_call_pushed_by_key_and_by_contact_id_is_one_task(world: PushWorld, oss_first: bool) -> None:
    """`qcflow push --contact-id X` for a call whose recording the OSS trigger pushed (or the
    reverse) sends it again: the ledger id (``ccc:contact/X`` vs ``file:…/key``) and the callUuid
    both differ, so neither line of defence sees the repeat, even within the 2 hours."""
    world.put_recording(KEY)

    async def by_contact(p: Pusher) -> list[PushResult]:
        return await p.push([p.recording_for_contact(CONTACT)], token="cli-review", deadline=time.monotonic() + 30)

    if oss_first:
        assert world.deliver(world.instance(), KEY) == {"records": 1, "submitted": 1}
        _with_pusher(by_contact)
    else:
        assert [r.status for r in _with_pusher(by_contact)] == ["submitted"]
        world.deliver(world.instance(), KEY)
    assert len(world.tasks_for(CONTACT)) == 1


def test_one_invocation_carrying_a_key_twice_claims_it_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two records of one key in one invocation (an event, or `qcflow push --key K --key K`,
    or ``--key`` plus an overlapping ``--prefix``) share the invocation's token, so the ledger
    lets both proceed: only callUuid keeps the second send from making a task. With the second
    line out of the picture (a service that only compares across 2 h, here 0 s) two tasks."""
    options = replace(SandboxOptions(), task_seconds=0.2, call_uuid_window_seconds=0.0)
    with push_world(tmp_path, monkeypatch, options, QCFLOW_PUSH_BATCH_SIZE="1") as world:
        world.put_recording(KEY)
        world.deliver(world.instance(), KEY, KEY)
        assert len(world.tasks_for(CONTACT)) == 1


def test_the_lookup_does_not_hinge_on_the_unconfirmed_time_zone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Crash after the upload, takeover after the 2-hour callUuid window: only the lookup stands
    between the recording and a second task. Its window is ±10 min around the claims, in
    QCFLOW_SCA_TIME_ZONE, a fact docs/api-clients.md lists as UNCONFIRMED: if SCA reads the times in
    another zone, the lookup misses and the recording is sent again. The callId filter makes a
    wide window free; it should cover any zone offset."""
    options = replace(SandboxOptions(), task_seconds=0.2, time_zone="UTC")
    with push_world(tmp_path, monkeypatch, options, QCFLOW_SCA_TIME_ZONE="Asia/Shanghai") as world:
        world.put_recording(KEY)
        assert world.deliver(world.instance(), KEY) == {"records": 1, "submitted": 1}
        records = Path(world.state.root, "state/push/records")
        [outcome_file] = records.glob("*/g000000.outcome.json")
        outcome_file.unlink()  # killed after UploadAudioData, before the outcome was written
        claim_file = outcome_file.with_name("g000000.claim.json")
        claim_file.unlink()
        now = time.time()
        Ledger(world.state).claim(world.location(KEY), token="fc-crashed", now=now - 100, expires_at=now - 1,
                                  key=KEY, contact_id=CONTACT)
        world.server.app.sca._call_uuids.clear()  # beyond the 2-hour window
        world.deliver(world.instance(), KEY)
        assert len(world.tasks_for(CONTACT)) == 1


# --------------------------------------------------------------------------- error handling


def test_bad_push_remarks_are_a_config_error_before_anything_is_claimed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """QCFLOW_PUSH_REMARKS is checked for its keys only; a value UploadCall refuses makes every
    push raise pydantic's ValidationError after the claim (no failure recorded, FC retries a
    permanent fault, claims left behind)."""
    with push_world(tmp_path, monkeypatch, QCFLOW_PUSH_REMARKS='{"remark1": {"team": "a"}}') as world:
        world.put_recording(KEY)
        with pytest.raises(ConfigError, match="QCFLOW_PUSH_REMARKS"):
            world.deliver(world.instance(), KEY)
        assert world.entry(KEY).claims == {}


def test_a_claim_ttl_below_the_margin_is_refused_not_retried_forever(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """QCFLOW_PUSH_CLAIM_TTL_SECONDS accepts any value > 0, but the holder's work must end 30 s
    (CLAIM_MARGIN_SECONDS) before its claim does: with a TTL of 20 s every call's deadline is
    already past, every push ends "retry", FC retries a configuration fault until the DLQ."""
    with push_world(tmp_path, monkeypatch, QCFLOW_PUSH_CLAIM_TTL_SECONDS="20") as world:
        world.put_recording(KEY)
        try:
            outcome: Any = world.deliver(world.instance(), KEY)
        except PushIncomplete as exc:
            outcome = exc
        except ConfigError:
            return  # refused up front, naming the setting: fine
        assert outcome == {"records": 1, "submitted": 1}


def test_a_key_too_long_for_the_local_folder_does_not_raise_out_of_the_handler(world: PushWorld) -> None:
    """A 300-byte segment is a valid OSS key but not a local file name: ``head`` raises
    RequestError (permanent), which ``resolve`` does not catch, so the handler raises and FC
    retries a permanent fault. It should end as ignored (or failed), like an invalid key."""
    key = "ccc/2026/11/20/" + "x" * 300 + "-job-5.mkv"
    summary = world.deliver(world.instance(), key)
    assert summary["records"] == 1 and (summary.get("ignored") or summary.get("failed")) == 1


def test_a_bad_setting_is_not_swallowed_as_a_foreign_bucket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Building the Pusher can raise ConfigError for a bad setting (here QCFLOW_PUSH_REMARKS that
    is not JSON); ``push_oss_event`` catches every ConfigError of ``pusher_for`` as "ForeignBucket"
    and returns normally: FC neither retries nor dead-letters, the ledger records nothing, and
    every recording uploaded while the setting is wrong is lost (one ERROR line each)."""
    with push_world(tmp_path, monkeypatch, QCFLOW_PUSH_REMARKS="not json") as world:
        world.put_recording(KEY)
        with pytest.raises(ConfigError, match="QCFLOW_PUSH_REMARKS"):
            world.deliver(world.instance(), KEY)

