"""Review: attacks on the push path that held (kept as guards; these pass today)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qcflow.tools.fc_local import context_for, oss_event
from tests.push.conftest import BUCKET, FC_CREDS, PushWorld, world  # noqa: F401 - fixture


def _files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize(
    "key",
    [
        "ccc/2026/11/20/..%2F..%2F..%2Fstate%2Fpush%2Fjob-1.mkv",  # traversal, URL-encoded
        "ccc/../state/push/records/x/job-2.mkv",  # traversal, plain
        "ccc/2026/11/20/" + "a/" * 600 + "job-3.mkv",  # longer than any OSS key
        "state/push/records/job-4.mkv",  # the store's own prefix
        "ccc/2026/11/20/job-5.mkv\x00.txt",  # NUL
        "/etc/job-6.mkv",  # absolute
    ],
)
def test_hostile_keys_write_nothing_outside_state_and_do_not_raise(world: PushWorld, key: str) -> None:
    before = _files(world.recordings.root)
    summary = world.deliver(world.instance(), key)
    assert summary.get("ignored", 0) + summary.get("failed", 0) == 1 and summary["records"] == 1
    assert _files(world.recordings.root) == before
    state = Path(world.state.root)
    assert all(f.startswith(("state/", ".qcflow")) for f in _files(state)) if state.exists() else True
    assert world.all_tasks() == []


def test_a_lone_surrogate_key_is_a_malformed_event(world: PushWorld) -> None:
    raw = json.dumps({"events": [{"eventName": "ObjectCreated:PutObject", "oss": {
        "bucket": {"name": BUCKET}, "object": {"key": "ccc/2026/11/20/job-9\ud800.mkv"}}}]}).encode()
    summary = world.instance().handler(raw, context_for("push", FC_CREDS))
    assert summary["records"] == 0 and "key" in summary["error"]
    assert not Path(world.state.root, "state").exists()


def test_the_ledger_keeps_no_voice_url_and_no_signature(world: PushWorld) -> None:
    key = "ccc/2026/11/20/job-4668613943.mkv"
    world.put_recording(key)
    world.deliver(world.instance(), key)
    for path in Path(world.state.root, "state").rglob("*"):
        if path.is_file():
            text = path.read_text()
            assert "Signature" not in text and "voiceFileUrl" not in text and "http" not in text


def test_many_records_in_one_event_are_one_task_each(world: PushWorld) -> None:
    keys = [f"ccc/2026/11/20/job-{1000 + i}.mkv" for i in range(12)]
    for key in keys:
        world.put_recording(key)
    instance = world.instance()
    event = oss_event(BUCKET, *keys)
    assert instance.handler(event, context_for("push", FC_CREDS)) == {"records": 12, "submitted": 12}
    assert instance.handler(event, context_for("push", FC_CREDS)) == {"records": 12, "already_submitted": 12}
    assert len(world.all_tasks()) == 12
