"""Issue 24: infra/'s raw-store policy (policy/pii-raw-store.json) covers every key the raw
store's writer makes, on the harvest and callback roles only, and nothing outside its bucket."""

from __future__ import annotations

import fnmatch
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from qcflow.store import LocalStore
from tests.harvest.conftest import NOW, far_deadline, harvest_settings, sandbox_env
from tests.test_infra import ACCOUNT, POLICY, as_list, named, render, resource, resources

pytestmark = pytest.mark.anyio
RAW_BUCKET = "qcflow-raw-rows"
VALUES = {"account_id": ACCOUNT, "raw_bucket": RAW_BUCKET, "raw_root": "qcflow-raw/"}


def _granted(action: str) -> list[str]:
    document = render(POLICY / "pii-raw-store.json", VALUES)
    return [
        resource_
        for statement in document["Statement"]
        if action in as_list(statement["Action"])
        for resource_ in as_list(statement["Resource"])
    ]


def _allowed(action: str, key: str) -> bool:
    arn = f"acs:oss:*:{ACCOUNT}:{RAW_BUCKET}/qcflow-raw/{key}"
    return any(fnmatch.fnmatchcase(arn, pattern) for pattern in _granted(action))


def test_off_by_default_and_attached_to_the_harvest_and_callback_only() -> None:
    assert named("variable")["pii_raw_bucket"]["default"] == ""
    assert resource("alicloud_oss_bucket", "pii_raw")["count"] == "${local.pii_raw ? 1 : 0}"
    attachment = resource("alicloud_ram_role_policy_attachment", "pii_raw")
    assert attachment["for_each"] == "${local.pii_raw_roles}"
    locals_: dict[str, Any] = {}
    from tests.test_infra import terraform

    for block in terraform()["locals"]:
        locals_.update(block)
    assert locals_["pii_raw_roles"] == '${local.pii_raw ? toset(["harvest", "callback"]) : toset([])}'
    assert "pii_raw" in resources("alicloud_ram_policy")
    for statement in render(POLICY / "pii-raw-store.json", VALUES)["Statement"]:
        for arn in as_list(statement["Resource"]):
            assert arn.startswith(f"acs:oss:*:{ACCOUNT}:{RAW_BUCKET}"), arn
            assert "*" not in arn.removeprefix("acs:oss:*:")[:-1], f"no wildcard but the last: {arn}"


async def test_every_key_the_raw_writer_makes_is_granted(tmp_path: Path) -> None:
    from qcflow.harvest import run_harvest

    raw = LocalStore(tmp_path / "raw")
    settings = harvest_settings(harvest_start_seconds=4 * 3600, pii_raw_store=f"file:{tmp_path / 'raw'}")
    with sandbox_env() as env:
        env.preload(50, NOW - timedelta(hours=3), NOW - timedelta(minutes=10))
        await run_harvest(
            settings, env.sca, LocalStore(tmp_path / "store"), deadline=far_deadline(), now=env.now, raw_store=raw
        )
    keys = [info.key for info in raw.list("")]
    assert any(key.startswith("results/") for key in keys) and any(key.startswith("state/") for key in keys)
    for key in keys:
        assert _allowed("oss:PutObject", key) and _allowed("oss:GetObject", key), key
    assert _allowed("oss:DeleteObject", "state/harvest/pending/dt=x/hour=y/1-r.json")
    assert not _allowed("oss:DeleteObject", "state/harvest/commits/dt=x/hour=y/1.json")
    assert not _allowed("oss:DeleteObject", "results/dt=x/hour=y/part-1-r.jsonl")
