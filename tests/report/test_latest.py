"""A task's current row (issue 21): the latest of its results/ row and its reviews/ rows.

One definition, three shapes: the docs' DuckDB query (``DUCKDB_LATEST``, printed by ``qcflow ddl
duckdb``), the report's own ``latest`` table, and the MaxCompute view. Each is checked here
against the final score every task of a hand-made lake must end with (``reviewed.py``), and the
report's review figures against a plain-Python computation over the same JSONL.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from qcflow.store import LocalStore
from qcflow.tools.report import DayRange, build_data, register
from qcflow.tools.report.latest import DEFAULT_FOLDER, DUCKDB_LATEST, duckdb_latest

from tests.report import expected
from tests.report.reviewed import ZONE, Lake, write_lake

ROOT = Path(__file__).resolve().parents[2]


def cli() -> click.Group:
    @click.group()
    def main() -> None:
        pass

    register(main)
    return main


@pytest.fixture
def lake(tmp_path: Path) -> tuple[LocalStore, Lake]:
    store = LocalStore(tmp_path / "qcflow-data")
    return store, write_lake(store)


def run_latest(folder: Path, zone: str = "Asia/Shanghai") -> dict[str, dict[str, Any]]:
    import duckdb

    relation = duckdb.connect().sql(duckdb_latest(str(folder), zone))
    rows = [dict(zip(relation.columns, row, strict=True)) for row in relation.fetchall()]
    return {expected.identity(row): row for row in rows}


def test_the_docs_query_gives_every_task_its_final_score(lake: tuple[LocalStore, Lake]) -> None:
    store, made = lake
    current = run_latest(store.root)
    assert {result: row["score"] for result, row in current.items()} == {t.result_id: t.final for t in made.tasks}
    assert current["T-plain|c-plain"]["source"] == "results" and current["T-once|c-once"]["source"] == "reviews"
    assert current["T-early|c-early"]["source"] == "reviews", "a tie on review time goes to the reviews/ row"
    oracle = expected.latest(made.results, made.reviews, ZONE)
    assert {r: row["score"] for r, row in oracle.items()} == {r: row["score"] for r, row in current.items()}


def test_the_report_uses_the_same_latest_rows(lake: tuple[LocalStore, Lake]) -> None:
    store, made = lake
    data, _ = build_data(store, DayRange(), ZONE)
    finals = {t.result_id: t.final for t in made.tasks if t.state == "finished"}
    assert data.counts["results"] == len(made.tasks) and data.counts["finished"] == len(finals)
    lowest = {f"{row['task_id']}|{row['contact_id'] or row['task_id'] + '-vid'}": row["score"] for row in data.lowest}
    assert lowest == finals, "every finished task, at its final score"
    assert data.score_summary["average"] == pytest.approx(sum(finals.values()) / len(finals))


def test_a_day_range_keeps_the_reviews_of_its_tasks_only(lake: tuple[LocalStore, Lake]) -> None:
    store, made = lake
    before, _ = build_data(store, DayRange.parse("2026-11-19", "2026-11-19"), ZONE)
    assert before.counts["results"] == 0 and before.reviews["summary"]["reviews"] == 0
    day, _ = build_data(store, DayRange.parse("2026-11-20", "2026-11-20"), ZONE)
    assert day.counts["results"] == len(made.tasks), "reviews saved days later still count for their upload day"
    assert day.reviews["summary"]["reviews"] == len(made.reviews) - 0


def test_the_review_figures_equal_a_plain_computation(lake: tuple[LocalStore, Lake]) -> None:
    store, made = lake
    data, _ = build_data(store, DayRange(), ZONE)
    assert_review_figures(data.to_dict(), made)


def assert_review_figures(data: dict[str, Any], made: Lake) -> None:
    from qcflow.tools.report.reviews import CHANGE_BINS, change_bin, quantile

    oracle = expected.review_figures(made.results, made.reviews, ZONE)
    got = data["reviews"]
    summary = got["summary"]
    assert (summary["finished"], summary["reviewed"], summary["reviews"]) == (
        oracle["finished"],
        oracle["reviewed"],
        oracle["reviews"],
    )
    assert summary["share"] == pytest.approx(oracle["reviewed"] / oracle["finished"])
    changes = oracle["changes"]
    assert summary["compared"] == len(changes)
    assert summary["average_change"] == pytest.approx(sum(changes) / len(changes))
    assert summary["average_abs_change"] == pytest.approx(sum(abs(c) for c in changes) / len(changes))
    assert (summary["raised"], summary["lowered"], summary["unchanged"]) == (
        sum(c > 0 for c in changes),
        sum(c < 0 for c in changes),
        sum(c == 0 for c in changes),
    )
    assert [row["count"] for row in got["changes"]] == [
        sum(1 for c in changes if change_bin(c) == i) for i in range(len(CHANGE_BINS))
    ]
    assert {row["review_result"]: row["tasks"] for row in got["agreement"]} == oracle["agreement"]
    assert {row["complain_result"]: row["appeals"] for row in got["appeals"]} == oracle["appeals"]
    assert (summary["appealed_tasks"], summary["appeals"], summary["in_appeal"]) == (
        oracle["appealed_tasks"],
        sum(oracle["appeals"].values()),
        oracle["in_appeal"],
    )
    assert {row["reviewer"]: (row["reviews"], row["tasks"]) for row in got["reviewers"]} == oracle["reviewers"]
    lag = got["lag"]
    assert lag["tasks"] == len(oracle["lags"])
    assert lag["median_hours"] == pytest.approx(quantile(oracle["lags"], 0.5))
    assert lag["max_hours"] == pytest.approx(max(oracle["lags"]))
    assert sum(row["count"] for row in lag["bins"]) == len(oracle["lags"])


def test_the_constant_is_the_default_query_and_the_cli_prints_it(
    lake: tuple[LocalStore, Lake], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, _ = lake
    assert DUCKDB_LATEST == duckdb_latest(DEFAULT_FOLDER, "Asia/Shanghai")
    monkeypatch.setenv("QCFLOW_STORE", f"file:{store.root}")
    done = CliRunner().invoke(cli(), ["ddl", "duckdb"])
    assert done.exit_code == 0, done.output
    assert done.output == duckdb_latest(str(store.root), "Asia/Shanghai")
    given = CliRunner().invoke(cli(), ["ddl", "duckdb", "--folder", "/srv/lake/"])
    assert given.exit_code == 0 and "read_json('/srv/lake/*/dt=*/hour=*/*.jsonl*'" in given.output
    bad = CliRunner().invoke(cli(), ["ddl", "duckdb", "--folder", "it's"])
    assert bad.exit_code == 2 and "a quote cannot be part of the folder" in bad.output


def test_the_docs_quote_the_query_as_the_code_has_it() -> None:
    """Every ``-- qcflow latest`` SQL block in README.md and docs/*.md is ``DUCKDB_LATEST``."""
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    blocks = []
    for page in pages:
        text = page.read_text(encoding="utf-8")
        for block in text.split("```sql\n")[1:]:
            body = block.split("```", 1)[0]
            if body.startswith("-- qcflow latest"):
                blocks.append((page.name, body))
    if not blocks:
        pytest.skip("no docs page quotes the latest query yet (docs/harvest.md, once the README split lands)")
    for name, body in blocks:
        assert body == DUCKDB_LATEST, name
