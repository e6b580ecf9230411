"""Issue 24: a harvest through the real FC handler with redaction on (the default, and hash)
against the sandbox, whose customers say personal numbers: none is anywhere under the store
(results, state, manifests, markers) nor in any captured log line."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from qcflow.pii.detect import DIGITS
from qcflow.tools.fc_local import context_for, load_handler_module, timer_event
from qcflow.tools.sandbox.content import PERSONAL_CANARIES
from qcflow.tools.sandbox.options import PreloadOptions, SandboxOptions
from tests.push.conftest import FC_CREDS, push_world

NOW = datetime.now(timezone.utc)


def _digits(text: str) -> str:
    return "".join(DIGITS.get(char, "") for char in text)


@pytest.mark.parametrize("mode", ["mask", "hash"])
def test_no_personal_number_under_the_store_nor_in_the_logs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, mode: str
) -> None:
    preload = PreloadOptions(count=120, start=NOW - timedelta(hours=2), end=NOW - timedelta(minutes=10))
    options = SandboxOptions(preload=preload)
    extra = {"QCFLOW_PII": mode, "QCFLOW_HARVEST_START_SECONDS": "10800", "QCFLOW_HARVEST_SETTLE_SECONDS": "0"}
    if mode == "hash":
        extra["QCFLOW_PII_KEY"] = "a-harvest-test-key-0123456789"
    caplog.set_level(logging.DEBUG)
    with push_world(tmp_path, monkeypatch, options, **extra) as world:
        harvest = load_handler_module("harvest")
        world.modules.append(harvest)
        report = harvest.handler(timer_event(), context_for("harvest", FC_CREDS, timeout=120))
        assert report["written"] == 120, json.dumps(report)
        files = [path for path in (tmp_path / "store").rglob("*") if path.is_file()]
        text = "\n".join(path.read_bytes().decode("utf-8", "replace") for path in files)
    manifests = [json.loads(p.read_text()) for p in files if "/manifests/" in str(p)]
    assert manifests and all(m["pii"] == mode and m["pii_raw_copy"] is False for m in manifests)
    rows = [json.loads(line) for line in text.splitlines() if line.startswith('{"schema_version"')]
    assert len(rows) == 120
    said = [row for row in rows if any("*" in s["words"] for s in row["asr_result"] if s["role"] == "客户")]
    assert said, "the sandbox's customers said personal numbers"
    for canary in PERSONAL_CANARIES:
        assert canary not in text and canary not in caplog.text
        if len(_digits(canary)) >= 11:
            assert _digits(canary) not in _digits(text)
    callers = {row["recording"]["caller"] for row in rows}
    assert (
        all(caller and set(caller) == {"*"} for caller in callers)
        if mode == "mask"
        else all(caller and len(caller) == 64 for caller in callers)
    )
    assert "1380000" not in text and "1380000" not in caplog.text


def test_the_raw_store_gets_the_unredacted_rows_exactly_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """QCFLOW_PII_RAW_STORE: the same results, once each, unredacted, through the same writer;
    a second pass writes neither store again."""
    preload = PreloadOptions(count=60, start=NOW - timedelta(hours=2), end=NOW - timedelta(minutes=10))
    raw = tmp_path / "raw"
    extra = {
        "QCFLOW_PII_RAW_STORE": f"file:{raw}",
        "QCFLOW_HARVEST_START_SECONDS": "10800",
        "QCFLOW_HARVEST_SETTLE_SECONDS": "0",
    }
    with push_world(tmp_path, monkeypatch, SandboxOptions(preload=preload), **extra) as world:
        harvest = load_handler_module("harvest")
        world.modules.append(harvest)
        first = harvest.handler(timer_event(), context_for("harvest", FC_CREDS, timeout=120))
        again = harvest.handler(timer_event(), context_for("harvest", FC_CREDS, timeout=120))
    assert first["written"] == 60 and again["written"] == 0, json.dumps(again)

    def rows(root: Path) -> list[dict[str, object]]:
        return [
            json.loads(line)
            for part in sorted((root / "results").rglob("*.jsonl"))
            for line in part.read_text(encoding="utf-8").splitlines()
        ]

    redacted, unredacted = rows(tmp_path / "store"), rows(raw)
    assert len(redacted) == len(unredacted) == 60
    assert len({r["task_id"] for r in unredacted}) == 60
    raw_text = json.dumps(unredacted, ensure_ascii=False)
    stored = json.dumps(redacted, ensure_ascii=False)
    assert "1380000" in raw_text and "1380000" not in stored
    assert any(canary in raw_text for canary in PERSONAL_CANARIES)
    assert not any(canary in stored for canary in PERSONAL_CANARIES)
