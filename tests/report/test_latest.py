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
from tests.report.conftest import Demo
from tests.report.reviewed import ZONE, Lake, tasks, write_lake

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
    assert day.reviews["summary"]["reviews"] == len(made.reviews)


def test_gzip_parts_give_the_same_latest_rows_and_figures(lake: tuple[LocalStore, Lake], tmp_path: Path) -> None:
    store, made = lake
    gz = LocalStore(tmp_path / "gz")
    write_lake(gz, gz=True)
    assert all(info.key.endswith(".jsonl.gz") for info in gz.list(""))
    assert {r: row["score"] for r, row in run_latest(gz.root).items()} == {t.result_id: t.final for t in made.tasks}
    plain, _ = build_data(store, DayRange(), ZONE)
    packed, _ = build_data(gz, DayRange(), ZONE)
    assert packed.reviews == plain.reviews and packed.lowest == plain.lowest


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
    if changes:
        assert summary["average_change"] == pytest.approx(sum(changes) / len(changes))
        assert summary["average_abs_change"] == pytest.approx(sum(abs(c) for c in changes) / len(changes))
    else:
        assert summary["average_change"] is None
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
    assert lag["max_hours"] == pytest.approx(max(oracle["lags"], default=None))
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
    assert given.exit_code == 0 and "read_json('/srv/lake/*/dt=*/hour=*/**/*.jsonl*'" in given.output
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


REVIEW_CHARTS = ("review_change", "agreement", "appeals", "reviewers", "review_lag")
REVIEW_STATE = """
[...document.querySelectorAll('section.review-chart')].map(section => {
  const marks = [...section.querySelectorAll('g.point path, g.slice path')].filter(p => {
    const b = p.getBBox(); return b.width > 0 && b.height > 0; }).length;
  return {id: section.dataset.chart, empty: section.dataset.empty, drawn: section.dataset.drawn || null, marks: marks};
})
"""


def drawn(page: Any, chart: str) -> dict[str, list[Any]]:
    return page.js(
        f"(() => {{ const t = document.getElementById('plot-{chart}').data[0]; "
        "return {x: Array.from(t.x || []), y: Array.from(t.y || []), labels: Array.from(t.labels || []), "
        "values: Array.from(t.values || [])}; })()"
    )


def test_the_review_block_in_chromium_shows_what_the_jsonl_says(
    lake: tuple[LocalStore, Lake], render: Any, tmp_path: Path
) -> None:
    from qcflow.tools.report import make_report
    from qcflow.tools.report.reviews import CHANGE_BINS, change_bin

    store, made = lake
    out = tmp_path / "reviews.html"
    make_report(store, out, zone=ZONE)
    page = render(out)
    assert page.errors() == [] and page.requests == [page.url]
    assert page.js("document.getElementById('reviews').dataset.empty") == "false"
    charts = {c["id"]: c for c in page.js(REVIEW_STATE)}
    assert set(charts) == set(REVIEW_CHARTS)
    for chart in charts.values():
        assert chart["empty"] == "false" and chart["drawn"] == "true" and chart["marks"] > 0, chart
    data = page.data
    assert_review_figures(data, made)  # the figures embedded in the page…
    oracle = expected.review_figures(made.results, made.reviews, ZONE)  # …and what Plotly drew
    assert drawn(page, "review_change")["y"] == [
        sum(1 for c in oracle["changes"] if change_bin(c) == i) for i in range(len(CHANGE_BINS))
    ]
    agreement = drawn(page, "agreement")
    assert sorted(agreement["values"]) == sorted(oracle["agreement"].values())
    assert sorted(drawn(page, "appeals")["y"]) == sorted(oracle["appeals"].values())
    reviewers = drawn(page, "reviewers")
    assert dict(zip(reviewers["y"], reviewers["x"], strict=True)) == {k: v[0] for k, v in oracle["reviewers"].items()}
    assert sum(drawn(page, "review_lag")["y"]) == len(oracle["lags"])
    counts = page.js(
        "Object.fromEntries([...document.querySelectorAll('[data-review]')].map(e => [e.dataset.review, e.textContent]))"
    )
    assert counts["reviewed"] == f"{oracle['reviewed'] / oracle['finished']:.1%}"
    assert counts["reviews"] == str(len(made.reviews)) and counts["appeals"] == "2"
    finals = sorted(t.final for t in made.tasks if t.state == "finished")
    assert [row["score"] for row in data["lowest"]] == finals, "the lowest table shows final scores"


def test_a_page_without_reviews_says_so(lake: tuple[LocalStore, Lake], render: Any, tmp_path: Path) -> None:
    from qcflow.tools.report import make_report

    store = LocalStore(tmp_path / "plain")
    made = write_lake(store, [t for t in tasks() if not t.reviews])
    out = tmp_path / "plain.html"
    make_report(store, out, zone=ZONE)
    page = render(out)
    assert page.errors() == []
    text = page.js("document.getElementById('reviews').textContent")
    finished = sum(1 for t in made.tasks if t.state == "finished")
    assert f"No review yet: none of the {finished} finished inspections in this range has been reviewed" in text
    assert page.js("document.querySelectorAll('section.review-chart').length") == 0


def test_the_demo_review_block_matches_its_jsonl_in_chromium(demo: Demo, render: Any, tmp_path: Path) -> None:
    """The pipeline's own output (``make demo``: the sandbox reviews a few tasks once the feed
    lands): the page's review figures equal the plain computation over its JSONL."""
    from qcflow.tools.report import make_report

    out = tmp_path / "demo.html"
    make_report(demo.store, out, zone=ZONE)
    page = render(out)
    assert page.errors() == [] and page.requests == [page.url]
    assert_review_figures(page.data, Lake([], demo.results, demo.reviews))
    block = page.js("document.getElementById('reviews').dataset.empty")
    if not demo.reviews:
        assert block == "true" and "No review yet" in page.js("document.getElementById('reviews').textContent")
        return
    assert block == "false"
    for chart in page.js(REVIEW_STATE):
        if chart["empty"] == "false":
            assert chart["drawn"] == "true" and chart["marks"] > 0, chart


@pytest.mark.parametrize("window", ["staged", "inputs hidden"])
def test_a_compaction_in_flight_changes_no_figure_and_no_latest_row(lake: tuple[LocalStore, Lake], window: str) -> None:
    """While a compaction is in flight (``qcflow.harvest.compact``) a result is in a visible part,
    in the hidden ``_compact/`` copy, or both: the report and the docs' query see it once."""
    store, made = lake
    before, _ = build_data(store, DayRange(), ZONE)
    latest_before = run_latest(store.root)
    for info in list(store.list("results/")):
        folder, name = info.key.rsplit("/", 1)
        store.put(f"{folder}/_compact/{name}", store.get(info.key).body)
        if window == "inputs hidden":
            store.delete(info.key)
    during, _ = build_data(store, DayRange(), ZONE)
    assert during.counts == {**before.counts, "files": during.counts.get("files", before.counts.get("files"))}
    assert during.lowest == before.lowest and during.score_summary == before.score_summary
    latest_during = run_latest(store.root)
    assert {r: (row["score"], row["source"]) for r, row in latest_during.items()} == {
        r: (row["score"], row["source"]) for r, row in latest_before.items()
    }


def test_a_part_compacted_away_between_listing_and_read_is_read_from_its_replacement(
    lake: tuple[LocalStore, Lake],
) -> None:
    """The report lists, then reads: a compaction may replace a part in between. The report
    lists again (its results are in the replacement), rather than failing or missing them."""
    store, made = lake
    before, _ = build_data(store, DayRange(), ZONE)

    class Compacting:  # the store as an OSS store would be read (copied through get), with a compaction racing
        url = store.url
        moved = False

        def list(self, prefix: str = "", **kw: Any) -> Any:
            return store.list(prefix, **kw)

        def get(self, key: str) -> Any:
            if not Compacting.moved and key.startswith("results/"):
                Compacting.moved = True
                folder, name = key.rsplit("/", 1)
                store.put(f"{folder}/part-9999999999-c0.jsonl", store.get(key).body)
                store.delete(key)
            return store.get(key)

    during, _ = build_data(Compacting(), DayRange(), ZONE)  # type: ignore[arg-type]
    assert Compacting.moved and during.counts == before.counts and during.lowest == before.lowest
