"""Issue 24 on the review feed: reviews/ rows are redacted like results/ rows (the pass's
QCFLOW_PII), and QCFLOW_PII_RAW_STORE's reviews/ gets them unredacted, once each."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from qcflow.store import LocalStore
from qcflow.tools.sandbox.content import PERSONAL_CANARIES
from tests.harvest.conftest import NOW, far_deadline, harvest_settings, sandbox_env
from tests.reviews.test_feed import MONTHS_AGO, SETTINGS, read_reviews, review_backlog

pytestmark = pytest.mark.anyio


async def test_review_rows_are_redacted_and_the_raw_store_gets_them_whole(tmp_path: Path) -> None:
    from qcflow.harvest import run_harvest

    store, raw = LocalStore(tmp_path / "store"), LocalStore(tmp_path / "raw")
    settings = harvest_settings(**SETTINGS, pii_raw_store=f"file:{tmp_path / 'raw'}")
    with sandbox_env() as env:
        env.preload(120, MONTHS_AGO, MONTHS_AGO + timedelta(hours=1))
        review_backlog(env, 80, NOW - timedelta(hours=3), NOW - timedelta(minutes=10))
        report = await run_harvest(settings, env.sca, store, deadline=far_deadline(), now=env.now, raw_store=raw)
        again = await run_harvest(settings, env.sca, store, deadline=far_deadline(), now=env.now, raw_store=raw)
    assert report.reviews["reviews_written"] == 80 and again.reviews["reviews_written"] == 0
    redacted, whole = read_reviews(store), read_reviews(raw)
    assert len(redacted) == len(whole) == 80
    assert len({(r["task_id"], r["review_time"]) for r in whole}) == 80
    stored = json.dumps(redacted, ensure_ascii=False)
    raw_text = json.dumps(whole, ensure_ascii=False)
    assert not any(canary in stored for canary in PERSONAL_CANARIES)
    assert any(canary in raw_text for canary in PERSONAL_CANARIES)
    assert all(set(r["recording"]["caller"]) == {"*"} for r in redacted)
