"""The analytics hand-off: the MaxCompute DDL matches the documented JSONL schema; the DuckDB query
of docs/harvest.md runs over the same files."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import click
import pytest
from click.testing import CliRunner

import qcflow.harvest.records as records_module
from qcflow.errors import ConfigError
from qcflow.harvest.records import to_record, utc_now_text
from qcflow.tools.report import register
from qcflow.tools.report.ddl import DUCKDB_EXAMPLE, EXTRA_COLUMNS, maxcompute_ddl, oss_location

from tests.conftest import load_fixture
from tests.report import expected
from tests.report.conftest import Demo

ZONE = ZoneInfo("Asia/Shanghai")
LOCATION = "oss://oss-cn-shanghai-internal.aliyuncs.com/qc-bucket/prod/results/"
#: Open-ended objects the DDL leaves to the SerDe to skip (documented in the DDL's header).
UNMAPPED = re.compile(r"^(hit_result\.conditions|review_history\.review_right_rule|recording\.remark\d+)(\.|$)")


def cli() -> click.Group:
    @click.group()
    def main() -> None:
        pass

    register(main)
    return main


def split_top(text: str) -> list[str]:
    """``a T, b STRUCT<x:T, y:T>`` → items, splitting on commas outside ``<>``."""
    items, depth, current = [], 0, ""
    for char in text:
        if char == "<":
            depth += 1
        elif char == ">":
            depth -= 1
        if char == "," and depth == 0:
            items.append(current.strip())
            current = ""
        else:
            current += char
    if current.strip():
        items.append(current.strip())
    return items


def paths_of(kind: str, prefix: str) -> set[str]:
    """Every key path a MaxCompute type declares (``agent.name``, ``hit_result.hits.key_words.from``)."""
    kind = kind.strip()
    if kind.startswith("ARRAY<"):
        return paths_of(kind[len("ARRAY<"):-1], prefix)
    if kind.startswith("STRUCT<"):
        found = {prefix}
        for item in split_top(kind[len("STRUCT<"):-1]):
            name, _, sub = item.partition(":")
            found |= paths_of(sub, f"{prefix}.{name.strip('`')}")
        return found
    return {prefix}


def ddl_columns(ddl: str) -> tuple[list[tuple[str, str]], list[str]]:
    body = ddl[ddl.index("(\n") + 2: ddl.index("\n)\n")]
    columns = []
    for line in body.splitlines():
        match = re.match(r"^\s+`([a-z_0-9]+)`\s+(.+?) COMMENT '", line)
        assert match, line
        columns.append((match.group(1), match.group(2)))
    partitions = re.findall(r"`(\w+)` STRING", ddl[ddl.index("PARTITIONED BY"):ddl.index("ROW FORMAT")])
    return columns, partitions


def record_paths(value: Any, prefix: str) -> set[str]:
    if isinstance(value, dict):
        found = {prefix} if prefix else set()
        for key, item in value.items():
            found |= record_paths(item, f"{prefix}.{key}" if prefix else key)
        return found
    if isinstance(value, list):
        return set().union({prefix}, *(record_paths(item, prefix) for item in value))
    return {prefix}


def test_the_ddl_columns_are_the_documented_schema_in_order() -> None:
    columns, partitions = ddl_columns(maxcompute_ddl(location=LOCATION))
    schema = list(to_record({}, ZONE, utc_now_text()).keys())  # every key is always present, in this order
    extra = [name for name, _, _ in EXTRA_COLUMNS if name not in schema]
    assert [name for name, _ in columns] == schema + extra, "the schema, then what the latest view needs"
    assert {"vid", "review_type"} <= {name for name, _ in columns}
    documented = records_module.__doc__ or ""
    assert all(f"``{name}``" in documented for name in schema), "each column is in the records docstring"
    assert partitions == ["dt", "hour"]
    types = dict(columns)
    assert types["score"] == "DOUBLE" and types["status"] == "BIGINT" and types["scheme_names"] == "ARRAY<STRING>"
    assert types["agent"] == "STRUCT<`id`:STRING, `name`:STRING, `skill_group`:STRING>"


def test_every_key_of_real_records_is_declared_or_deliberately_left_out(demo: Demo) -> None:
    columns, _ = ddl_columns(maxcompute_ddl(location=LOCATION))
    declared = set().union(*(paths_of(kind, name) for name, kind in columns))
    seed = load_fixture("sca_get_result_seed.json")["Data"]["ResultInfo"][0]
    samples = [to_record(seed, ZONE, utc_now_text()), *demo.records]
    found = set().union(*(record_paths(sample, "") for sample in samples))
    top = {name for name, _ in columns}
    missing = sorted(p for p in found if p.split(".")[0] in top and p not in declared and not UNMAPPED.match(p))
    assert missing == []
    assert {"hit_result.hits.key_words.from", "asr_result.end", "recording.duration"} <= declared


def test_the_location_comes_from_the_store_and_region() -> None:
    assert oss_location("oss://qc-bucket/prod", "cn-shanghai") == LOCATION
    assert oss_location("oss://qc-bucket", "cn-hangzhou", "https://oss-cn-hangzhou.aliyuncs.com") == \
        "oss://oss-cn-hangzhou.aliyuncs.com/qc-bucket/results/"
    with pytest.raises(ConfigError, match="not an oss:// store: pass --location"):
        oss_location("file:./qcflow-data", "cn-shanghai")
    with pytest.raises(ConfigError, match="--table"):
        maxcompute_ddl(table="x`; DROP TABLE y", location=LOCATION)
    with pytest.raises(ConfigError, match="--location"):
        maxcompute_ddl(location="/tmp/results")


def test_qcflow_ddl_maxcompute_prints_the_ddl(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QCFLOW_STORE", "oss://qc-bucket/prod")
    monkeypatch.setenv("QCFLOW_REGION", "cn-shanghai")
    monkeypatch.delenv("QCFLOW_OSS_ENDPOINT", raising=False)
    done = CliRunner().invoke(cli(), ["ddl", "maxcompute", "--table", "qc_results", "--role-arn",
                                      "acs:ram::1688000000000001:role/aliyunodpsdefaultrole"])
    assert done.exit_code == 0, done.output
    assert "CREATE EXTERNAL TABLE IF NOT EXISTS `qc_results` (" in done.output
    assert f"LOCATION '{LOCATION}';" in done.output
    assert "WITH SERDEPROPERTIES ('odps.properties.rolearn' = 'acs:ram::1688000000000001:role/aliyunodpsdefaultrole')" \
        in done.output
    assert "MSCK REPAIR TABLE `qc_results` ADD PARTITIONS;" in done.output
    monkeypatch.setenv("QCFLOW_STORE", "file:./qcflow-data")
    refused = CliRunner().invoke(cli(), ["ddl", "maxcompute"])
    assert refused.exit_code == 2 and "pass --location" in refused.output
    given = CliRunner().invoke(cli(), ["ddl", "maxcompute", "--location", "oss://oss-cn-shanghai-internal.aliyuncs.com/b/r"])
    assert given.exit_code == 0 and "LOCATION 'oss://oss-cn-shanghai-internal.aliyuncs.com/b/r/';" in given.output


def test_the_readme_duckdb_query_runs_over_the_results(demo: Demo, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The query docs/harvest.md shows, run as written (its folder and its dates pointed at the demo)."""
    import duckdb

    (tmp_path / "qcflow-data").symlink_to(demo.store.root, target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    days = sorted({info.key.split("/")[1].removeprefix("dt=") for info in demo.store.list("results/")})
    query = DUCKDB_EXAMPLE.replace("'2026-11-01'", f"'{days[0]}'").replace("'2026-11-30'", f"'{days[-1]}'")
    rows = duckdb.sql(query).fetchall()
    scores: dict[str, list[float]] = {}
    for line in expected.finished(demo.results):  # the query reads results/ alone
        scores.setdefault(line["agent"]["name"], []).append(line["score"])
    assert {name: (calls, avg) for name, _, calls, avg in rows} == \
        {name: (len(s), pytest.approx(sum(s) / len(s), abs=0.05)) for name, s in scores.items()}  # round(…, 1)
    assert [avg for *_, avg in rows] == sorted(avg for *_, avg in rows), "worst first"


def test_the_report_modules_stay_out_of_the_layer_and_the_cli_stays_light() -> None:
    import importlib.util
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    spec = importlib.util.spec_from_file_location("build_layer_for_test", root / "scripts" / "build_layer.py")
    assert spec and spec.loader
    build_layer = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = build_layer  # dataclasses look their module up while the script runs
    try:
        spec.loader.exec_module(build_layer)
    finally:
        sys.modules.pop(spec.name, None)
    assert not [p for p in build_layer.package_files() if p.parts[0] == build_layer.TOOLING_PACKAGE]
    code = ("import sys, qcflow.tools.report, qcflow.tools.report.command; "
            "print(sorted(m for m in ('duckdb', 'plotly', 'playwright') if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            env={**os.environ, "PYTHONPATH": str(root)}).stdout.strip()
    assert loaded == "[]", "DuckDB and Plotly are imported when a report is made, not with the CLI"


def test_the_ddl_has_a_reviews_table_and_the_latest_view_over_both() -> None:
    ddl = maxcompute_ddl(location=LOCATION, zone="Asia/Shanghai")
    results_columns, _ = ddl_columns(ddl)
    reviews_part = ddl[ddl.index("CREATE EXTERNAL TABLE IF NOT EXISTS `qcflow_reviews` ("):]
    reviews_columns, partitions = ddl_columns(reviews_part)
    assert reviews_columns == results_columns, "a review row is a result row"
    assert partitions == ["dt", "hour"] and "review day in the SCA time zone" in reviews_part
    assert "LOCATION 'oss://oss-cn-shanghai-internal.aliyuncs.com/qc-bucket/prod/reviews/';" in reviews_part
    assert "MSCK REPAIR TABLE `qcflow_reviews` ADD PARTITIONS;" in reviews_part
    view = ddl[ddl.index("CREATE OR REPLACE VIEW `qcflow_latest` AS"):]
    names = [name for name, _ in results_columns]
    assert view.splitlines()[1] == "SELECT " + ", ".join(f"`{n}`" for n in [*names, "dt", "hour"]) + ", `source`"
    assert "FROM `qcflow_results`\n    UNION ALL\n" in view and view.count("FROM `qcflow_reviews`") == 1
    assert "PARTITION BY u.`task_id`, COALESCE(u.`call_id`, u.`vid`, '')" in view
    order = view[view.index("ORDER BY"):view.index(") AS `rn`")]
    assert order.index("u.`instant` DESC") < order.index("u.`source_rank` DESC") < order.index("u.`harvested_at` DESC")
    assert "'reviews' AS `source`, 1 AS `source_rank`" in view and "'results' AS `source`, 0 AS `source_rank`" in view
    assert "ELSE 480 END" in view, "a review time without an offset is read in SCA's zone (UTC+8)"
    assert "ELSE 0 END" in maxcompute_ddl(location=LOCATION, zone="UTC")
    assert view.rstrip().endswith("WHERE `rn` = 1;")
    with pytest.raises(ConfigError, match="must differ"):
        maxcompute_ddl(location=LOCATION, view="qcflow_results")
    with pytest.raises(ConfigError, match="--view"):
        maxcompute_ddl(location=LOCATION, view="latest view")


def test_qcflow_ddl_maxcompute_names_the_reviews_table_and_the_view(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QCFLOW_STORE", "oss://qc-bucket/prod")
    monkeypatch.setenv("QCFLOW_REGION", "cn-shanghai")
    monkeypatch.delenv("QCFLOW_OSS_ENDPOINT", raising=False)
    done = CliRunner().invoke(cli(), ["ddl", "maxcompute", "--reviews-table", "qc_reviews", "--view", "qc_now",
                                      "--reviews-location", "oss://oss-cn-shanghai-internal.aliyuncs.com/other/rv"])
    assert done.exit_code == 0, done.output
    assert "CREATE EXTERNAL TABLE IF NOT EXISTS `qc_reviews` (" in done.output
    assert "LOCATION 'oss://oss-cn-shanghai-internal.aliyuncs.com/other/rv/';" in done.output
    assert "CREATE OR REPLACE VIEW `qc_now` AS" in done.output and "FROM `qc_reviews`" in done.output
    assert "LOCATION 'oss://oss-cn-shanghai-internal.aliyuncs.com/qc-bucket/prod/results/';" in done.output


def test_the_maxcompute_view_picks_the_final_score_when_run_in_duckdb(tmp_path: Path) -> None:
    """The view's SQL run as written, in DuckDB with the four MaxCompute functions it uses emulated
    as MaxCompute documents them (TO_DATE with a format, DATEADD in minutes, RLIKE, SUBSTR from the
    end), over the two tables made from a lake with reviews: every task gets its final score."""
    import duckdb

    from qcflow.store import LocalStore
    from qcflow.tools.report.ddl import column_types

    from tests.report.reviewed import write_lake

    store = LocalStore(tmp_path / "lake")
    made = write_lake(store)
    ddl = maxcompute_ddl(location=LOCATION, zone="Asia/Shanghai")
    view = ddl[ddl.index("CREATE OR REPLACE VIEW"):].replace("`", '"')
    view = re.sub(r'("review_time") RLIKE (\'[^\']*\')', r"regexp_matches(\1, \2)", view)
    con = duckdb.connect()
    con.execute("CREATE MACRO to_date(s, f) AS try_strptime(s, '%Y-%m-%d %H:%M:%S')")
    con.execute("CREATE MACRO dateadd(d, n, unit) AS d + to_minutes(CAST(n AS BIGINT))")
    columns = ", ".join(f"'{name}': 'VARCHAR'" for name, _, _ in column_types())
    for table, tree in (("qcflow_results", "results"), ("qcflow_reviews", "reviews")):
        con.execute(
            f"CREATE TABLE {table} AS SELECT * FROM read_json('{store.root}/{tree}/*/*/*.jsonl', columns = {{{columns}}}, "
            "hive_partitioning = true, hive_types = {'dt': 'VARCHAR', 'hour': 'VARCHAR'})"
        )
    con.execute(view)
    rows = con.execute("SELECT task_id, call_id, vid, score, source FROM qcflow_latest").fetchall()
    got = {f"{task}|{call or vid}": (float(score) if score is not None else None) for task, call, vid, score, _ in rows}
    assert got == {t.result_id: t.final for t in made.tasks}
    assert len(rows) == len(made.tasks)
    sources = {f"{task}|{call or vid}": source for task, call, vid, _, source in rows}
    assert sources["T-early|c-early"] == "reviews", "a tie on review time goes to the reviews/ row"
    assert sources["T-plain|c-plain"] == "results"
