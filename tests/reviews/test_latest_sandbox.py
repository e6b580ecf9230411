"""Issue 21's must-show, end to end: for every task, the documented latest view (DuckDB over what
the harvest wrote) gives the score the sandbox's console shows now — the machine score of a task
never reviewed, the last review's score of one reviewed once, twice, or appealed and reviewed again.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from qcflow.store import LocalStore
from qcflow.tools.report.latest import duckdb_latest

from tests.harvest.conftest import NOW, sandbox_env
from tests.reviews.test_feed import harvest, review_backlog

pytestmark = pytest.mark.anyio


async def test_the_latest_view_gives_every_task_the_consoles_score(tmp_path: Path) -> None:
    duckdb = pytest.importorskip("duckdb")
    store = LocalStore(tmp_path / "lake")
    with sandbox_env() as env:
        env.preload(300, NOW - timedelta(hours=3), NOW - timedelta(minutes=30))
        first = await harvest(env, store)  # the finished rows, before anyone reviews
        review_backlog(env, 150, NOW - timedelta(minutes=20), NOW - timedelta(minutes=10))
        env.clock.advance(300)
        second = await harvest(env, store)
        # 40 of them reviewed again (a later review wins), 10 of those after an appeal
        state = env.state
        for task in state._tasks[100:140]:  # noqa: SLF001 - the sandbox's own task list
            state.review(task.task_id, at=(env.now() - timedelta(seconds=30)).timestamp(), appeal=task in state._tasks[130:140])  # noqa: SLF001
        env.clock.advance(300)
        third = await harvest(env, store)
        console = {}
        for task in state._tasks:  # noqa: SLF001
            reviewed = state.reviews.state(task)
            console[task.task_id] = reviewed.score if reviewed is not None else state._machine_score(task)  # noqa: SLF001
    assert first.written == 300 and second.reviews["reviews_written"] == 150
    assert third.reviews["reviews_written"] == 40
    relation = duckdb.connect().sql(duckdb_latest(str(store.root), "Asia/Shanghai"))
    rows = [dict(zip(relation.columns, row, strict=True)) for row in relation.fetchall()]
    assert len(rows) == 300, "one current row per task"
    # DuckDB infers task_id as a UUID (docs/harvest.md says so): SCA writes it upper-case
    assert {str(row["task_id"]).upper(): row["score"] for row in rows} == console
    assert sum(row["source"] == "reviews" for row in rows) == 150
