"""``qcflow status`` shows the review feed; ``qcflow harvest --reviews`` wants a range."""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner

from qcflow.store import LocalStore
from qcflow.tools.cli_ops import harvest_command
from qcflow.tools.status import status
from tests.harvest.conftest import NOW, sandbox_env
from tests.reviews.test_feed import MONTHS_AGO, harvest, review_backlog

pytestmark = pytest.mark.anyio


async def test_status_shows_the_review_checkpoint_its_lag_and_the_reviews_counted(tmp_path) -> None:
    store = LocalStore(str(tmp_path / "store"))
    with sandbox_env() as env:
        env.preload(40, MONTHS_AGO, MONTHS_AGO + timedelta(hours=1))
        review_backlog(env, 30, NOW - timedelta(hours=2), NOW - timedelta(minutes=10))
        await harvest(env, store)
        report = status(store, zone=ZoneInfo("Asia/Shanghai"), now=env.now())
    reviews = report["reviews"]
    assert reviews["reviews_last_7_days"] == 30
    assert reviews["checkpoint"] is not None and 0 < reviews["lag_seconds"] <= 3600


def test_harvest_reviews_needs_since() -> None:
    result = CliRunner().invoke(harvest_command, ["--reviews"])
    assert result.exit_code == 2 and "--since" in result.output
