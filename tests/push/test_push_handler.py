"""The push function end to end: real handler, real sandbox, real local stores (no mock of qcflow)."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from qcflow.tools.fc_local import context_for
from qcflow.ledger import Ledger
from qcflow.models.sca import GetResultQuery
from qcflow.errors import PushIncomplete
from qcflow.tools.sandbox.options import FaultOptions, SandboxOptions
from tests.push.conftest import FC_CREDS, PushWorld, push_world
from tests.sandbox.conftest import sca_client

KEY = "ccc/2026/11/20/job-4668613943.mkv"
CONTACT = "job-4668613943"


def log_lines(capsys: pytest.CaptureFixture[str]) -> list[dict]:
    lines = []
    for line in capsys.readouterr().out.splitlines():
        try:
            lines.append(json.loads(line))
        except ValueError:
            continue
    return lines


def test_a_recording_becomes_one_task_with_its_fields(world: PushWorld) -> None:
    world.put_recording(KEY)
    summary = world.deliver(world.instance(), KEY)
    assert summary == {"records": 1, "submitted": 1}
    [task] = world.tasks_for(CONTACT)
    call = task.call
    assert call["callId"] == CONTACT and call["fileName"] == KEY
    assert call["callUuid"] and call["voiceFileUrl"].startswith(world.server.url + "/recordings/")
    assert call["caller"].startswith("138") and call["callee"] == "4008001234" and call["callType"] in (1, 3)
    entry = world.entry(KEY)
    assert entry.submitted is not None and entry.task_id == task.task_id
    assert entry.submitted.contact_id == CONTACT and entry.submitted.key == KEY and entry.submitted.etag

    async def find() -> list[dict]:
        client = sca_client(world.server)
        try:
            page = await client.get_result_page(GetResultQuery(call_id=CONTACT, required_fields="taskId,status,recording"))
        finally:
            await client.aclose()
        return page.items

    import asyncio

    items = asyncio.run(find())
    assert [i["TaskId"] for i in items] == [task.task_id] and items[0]["Recording"]["Name"] == KEY


def test_the_same_event_three_times_makes_one_task(world: PushWorld) -> None:
    world.put_recording(KEY)
    instance = world.instance()
    summaries = [world.deliver(instance, KEY), world.deliver(instance, KEY), world.deliver(world.instance(), KEY)]
    assert summaries[0] == {"records": 1, "submitted": 1}
    assert summaries[1:] == [{"records": 1, "already_submitted": 1}] * 2
    assert len(world.tasks_for(CONTACT)) == 1


def test_five_concurrent_invocations_for_one_key_make_one_task(world: PushWorld) -> None:
    world.put_recording(KEY)
    instances = [world.instance() for _ in range(5)]
    outcomes: list[object] = []
    barrier = threading.Barrier(5)

    def invoke(module: object) -> None:
        barrier.wait()
        try:
            outcomes.append(world.deliver(module, KEY))
        except PushIncomplete as exc:  # another invocation holds the claim: FC retries this one
            outcomes.append(exc)

    threads = [threading.Thread(target=invoke, args=(m,)) for m in instances]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(outcomes) == 5
    assert sum(1 for o in outcomes if o == {"records": 1, "submitted": 1}) == 1
    # FC retries the ones that raised: they find the recording submitted
    for outcome in outcomes:
        if isinstance(outcome, PushIncomplete):
            assert world.deliver(world.instance(), KEY) == {"records": 1, "already_submitted": 1}
    assert len(world.tasks_for(CONTACT)) == 1


def _dead_claim(world: PushWorld, key: str, *, expires_in: float) -> None:
    """What an invocation that crashed right after claiming leaves behind."""
    now = time.time()
    Ledger(world.state).claim(world.location(key), token="fc-crashed", now=now, expires_at=now + expires_in,
                              key=key, contact_id=CONTACT)


def test_crash_after_the_claim_then_redelivery_after_expiry_submits_once(world: PushWorld) -> None:
    world.put_recording(KEY)
    _dead_claim(world, KEY, expires_in=0.6)
    with pytest.raises(PushIncomplete, match="claimed by another invocation"):
        world.deliver(world.instance(), KEY)  # the claim is still live: FC will retry
    assert world.tasks_for(CONTACT) == []
    time.sleep(0.7)
    assert world.deliver(world.instance(), KEY) == {"records": 1, "submitted": 1}
    assert len(world.tasks_for(CONTACT)) == 1
    entry = world.entry(KEY)
    assert sorted(entry.claims) == [0, 1] and 0 not in entry.outcomes
    assert entry.outcomes[1].state == "submitted" and entry.outcomes[1].via == "upload"


def test_crash_after_upload_before_the_record_is_found_by_lookup(world: PushWorld) -> None:
    """The crashed invocation reached SCA; the takeover must find that task, not send again."""
    world.put_recording(KEY)
    world.deliver(world.instance(), KEY)
    [task] = world.tasks_for(CONTACT)
    # rewind the ledger to "claimed, UploadAudioData sent, outcome never written"
    records = Path(world.state.root, "state/push/records")
    [outcome_file] = records.glob("*/g000000.outcome.json")
    outcome_file.unlink()
    claim_file = outcome_file.with_name("g000000.claim.json")
    claim = json.loads(claim_file.read_text())
    claim_file.unlink()
    Ledger(world.state).claim(claim["location"], token="fc-crashed", now=time.time() - 100, expires_at=time.time() - 1,
                              key=KEY, contact_id=CONTACT)
    # beyond the 2-hour callUuid window SCA would accept a second upload: only the lookup prevents it
    world.server.app.sca._call_uuids.clear()
    assert world.deliver(world.instance(), KEY) == {"records": 1, "submitted": 1}
    assert len(world.tasks_for(CONTACT)) == 1
    entry = world.entry(KEY)
    assert entry.outcomes[1].via == "lookup" and entry.outcomes[1].task_id == task.task_id


def test_a_lost_answer_to_upload_is_still_one_task(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    faults = FaultOptions(lost_answer_rate=1.0, actions=frozenset({"UploadAudioData"}), seed=3)
    options = replace(SandboxOptions(), task_seconds=0.2, faults=faults)
    with push_world(tmp_path, monkeypatch, options) as world:
        world.put_recording(KEY)
        assert world.deliver(world.instance(), KEY) == {"records": 1, "submitted": 1}
        assert len(world.tasks_for(CONTACT)) == 1
        submitted = world.entry(KEY).submitted
        assert submitted is not None and submitted.task_id is None and submitted.via == "call_uuid_repeated"
        assert submitted.uncertain
        assert Ledger(world.state).contacts_with_unknown_task() == {CONTACT}


def test_a_lost_refusal_of_the_repeat_then_a_retry_is_still_one_task(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 22 #19: the upload's answer is lost, and so is every refusal of its retries as a
    repeat (``CallUuidRepeated``): the invocation cannot tell, FC retries it, and the retry
    finds the one task by lookup instead of sending again."""
    faults = FaultOptions(lost_answer_rate=1.0, lost_refusal_rate=1.0, actions=frozenset({"UploadAudioData"}), seed=3)
    options = replace(SandboxOptions(), task_seconds=0.2, faults=faults)
    with push_world(tmp_path, monkeypatch, options, QCFLOW_MAX_ATTEMPTS="3") as world:
        world.put_recording(KEY)
        instance = world.instance()
        with pytest.raises(PushIncomplete):
            world.deliver(instance, KEY, request_id="req-1", timeout=8)
        # three attempts, every answer lost: the first created the task, the other two were refused
        assert world.server.app.stats["UploadAudioData dropped"] == 3
        [task] = world.tasks_for(CONTACT)
        entry = world.entry(KEY)
        assert list(entry.claims) == [0] and not entry.outcomes  # claimed, not settled: FC will retry
        world.server.app.options = replace(world.server.app.options, faults=FaultOptions())
        assert world.deliver(instance, KEY, request_id="req-1") == {"records": 1, "submitted": 1}
        assert world.tasks_for(CONTACT) == [task]
        assert len(world.all_tasks()) == 1
        submitted = world.entry(KEY).submitted
        assert submitted is not None and submitted.via == "lookup" and submitted.task_id == task.task_id


def test_a_retry_whose_lookup_misses_is_refused_as_a_repeat(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 22 #14: the callUuid is the recording's, not the invocation's. The first
    invocation's upload created the task but its answer was lost; FC's retry looks in SCA,
    which has not indexed the task yet (``index_lag_seconds``), and sends again: SCA refuses
    the same callUuid as a repeat, so there is still one task (a fresh callUuid per
    invocation would make a second one)."""
    faults = FaultOptions(lost_answer_rate=1.0, actions=frozenset({"UploadAudioData"}), seed=3)
    options = replace(SandboxOptions(), task_seconds=0.2, faults=faults, index_lag_seconds=3600.0)
    with push_world(tmp_path, monkeypatch, options, QCFLOW_MAX_ATTEMPTS="1") as world:
        world.put_recording(KEY)
        instance = world.instance()
        with pytest.raises(PushIncomplete):
            world.deliver(instance, KEY, request_id="req-1", timeout=8)
        assert len(world.tasks_for(CONTACT)) == 1
        assert not world.entry(KEY).outcomes  # claimed, not settled: FC will retry
        world.server.app.options = replace(world.server.app.options, faults=FaultOptions())
        assert world.deliver(instance, KEY, request_id="req-1") == {"records": 1, "submitted": 1}
        assert len(world.all_tasks()) == 1
        stats = world.server.app.stats
        assert stats["GetResult 200"] >= 1  # the retry looked first, and found nothing
        assert stats["UploadAudioData CallUuidRepeated"] == 1
        submitted = world.entry(KEY).submitted
        assert submitted is not None and submitted.via == "call_uuid_repeated" and submitted.task_id is None


def test_a_retryable_fault_that_outlasts_the_invocation_raises_then_the_retry_submits_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    faults = FaultOptions(server_error_rate=1.0, actions=frozenset({"UploadAudioData"}), seed=1)
    options = replace(SandboxOptions(), task_seconds=0.2, faults=faults)
    with push_world(tmp_path, monkeypatch, options, QCFLOW_MAX_ATTEMPTS="3") as world:
        world.put_recording(KEY)
        instance = world.instance()
        with pytest.raises(PushIncomplete):
            world.deliver(instance, KEY, request_id="req-1", timeout=8)
        entry = world.entry(KEY)
        assert list(entry.claims) == [0] and not entry.outcomes  # claimed, not settled: FC will retry
        assert not entry.released, "the function keeps its claims (replay finds them if FC gives up)"
        world.server.app.options = replace(world.server.app.options, faults=FaultOptions())
        assert world.deliver(instance, KEY, request_id="req-1") == {"records": 1, "submitted": 1}
        assert len(world.tasks_for(CONTACT)) == 1
        entry = world.entry(KEY)  # settled by the retry (its own claim, or renewed if near its expiry)
        assert entry.submitted is not None and entry.submitted.via in ("upload", "lookup")


@pytest.mark.parametrize(
    ("key", "metadata", "code"),
    [
        ("ccc/2026/11/20/unknown.mkv", {"contact-id": "nobody-1"}, "NotExists.ContactId"),
        ("ccc/2026/11/20/no-contact-here.mkv", None, "NoContactId"),
    ],
)
def test_permanent_failures_are_recorded_logged_and_return(
    world: PushWorld, capsys: pytest.CaptureFixture[str], key: str, metadata: dict[str, str] | None, code: str
) -> None:
    world.put_recording(key, metadata)
    assert world.deliver(world.instance(), key) == {"records": 1, "failed": 1}
    outcome = world.entry(key).outcome
    assert outcome is not None and outcome.state == "failed" and outcome.code == code
    assert world.all_tasks() == []
    lines = [l for l in log_lines(capsys) if l.get("event") == "push_outcome"]
    assert any(l["status"] == "failed" and l["code"] == code and l["key"] == key for l in lines)
    # a second delivery does not loop: it sees the recorded failure
    assert world.deliver(world.instance(), key) == {"records": 1, "already_failed": 1}


def test_a_voice_url_expiring_in_1_h_is_refused_and_recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    options = replace(SandboxOptions(), task_seconds=0.2, recording_url_seconds=3600)  # CCC hands out 1-h URLs
    with push_world(tmp_path, monkeypatch, options) as world:
        world.put_recording(KEY)
        assert world.deliver(world.instance(), KEY) == {"records": 1, "failed": 1}
        outcome = world.entry(KEY).outcome
        assert outcome is not None and outcome.code == "VoiceFileUrlTooShortLived" and "1.0 h" in (outcome.message or "")
        assert world.all_tasks() == []
        assert any(l.get("event") == "push_outcome" and l.get("code") == "VoiceFileUrlTooShortLived" for l in log_lines(capsys))


def test_keys_that_are_not_recordings_are_ignored_with_a_log_line(world: PushWorld, capsys: pytest.CaptureFixture[str]) -> None:
    world.put_recording("ccc/2026/11/20/job-1.txt")
    world.put_recording("other/job-2.mkv")
    summary = world.deliver(world.instance(), "ccc/2026/11/20/job-1.txt", "other/job-2.mkv")
    assert summary == {"records": 2, "ignored": 2}
    ignored = [l for l in log_lines(capsys) if l.get("event") == "push_ignored"]
    assert {l["key"] for l in ignored} == {"ccc/2026/11/20/job-1.txt", "other/job-2.mkv"}
    assert not Path(world.state.root, "state").exists()


def test_objects_under_the_stores_own_prefixes_never_trigger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = tmp_path / "store"
    with push_world(tmp_path, monkeypatch, QCFLOW_RECORDINGS_URL=f"file:{store}", QCFLOW_RECORDING_PREFIX="",
                    QCFLOW_RECORDING_SUFFIXES="") as world:
        keys = ["state/push/records/x/g000000.claim.json", "results/dt=2026-11-20/hour=08/part-1.jsonl"]
        for key in keys:
            world.state.put(key, b"{}")
        assert world.deliver(world.instance(), *keys) == {"records": 2, "ignored": 2}
        assert world.all_tasks() == []


@pytest.mark.parametrize("raw", [b"not json", b"[]", b'{"events": []}', b'{"events": [{"eventName": 1}]}', b"\xff\xfe"])
def test_malformed_events_return_with_a_clear_log_line(world: PushWorld, capsys: pytest.CaptureFixture[str], raw: bytes) -> None:
    module = world.instance()
    summary = module.handler(raw, context_for("push", FC_CREDS))
    assert summary["records"] == 0 and summary["error"]
    assert any(l.get("event") == "push_bad_event" for l in log_lines(capsys))


def test_an_url_encoded_key_falls_back_to_the_decoded_object(world: PushWorld) -> None:
    key = "ccc/2026/11/20/call job-77.mkv"
    world.put_recording(key)
    assert world.deliver(world.instance(), "ccc/2026/11/20/call+job-77.mkv") == {"records": 1, "submitted": 1}
    assert world.entry(key).submitted is not None
    [task] = world.tasks_for("job-77")
    assert task.call["fileName"] == key


def test_a_raw_key_holding_plus_is_used_as_given(world: PushWorld) -> None:
    key = "ccc/2026/11/20/a+b-job-78.mkv"  # exists under the raw key: never decoded
    world.put_recording(key)
    assert world.deliver(world.instance(), key) == {"records": 1, "submitted": 1}
    [task] = world.tasks_for("job-78")
    assert task.call["fileName"] == key
