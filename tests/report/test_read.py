"""Reading the results: day ranges, gzip, markers, odd files, an OSS store — without a browser."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from qcflow.harvest.state import mark_stuck, read_unfinished, remember_unfinished
from qcflow.tools.report import DayRange, ReportError, build_data, make_report
from qcflow.store import LocalStore

from tests.report import expected
from tests.report.conftest import Demo, PartWriter, part_keys, record
from tests.store.conftest import MotoOss, make_oss_store, moto_oss  # noqa: F401 - the session fixture

ZONE = ZoneInfo("Asia/Shanghai")


def _days(parts: PartWriter) -> None:
    parts.part("2026-11-19", "23", [record("a19", upload="2026-11-19T23:10:00+08:00")])
    parts.part("2026-11-20", "00", [record("a20", score=40), record("b20", state="failed", error="boom")])
    parts.part("2026-11-20", "13", [record("c20", score=60)], gz=True)
    parts.part("2026-11-21", "08", [record("a21", score=70)])
    parts.part("unknown", "unknown", [record("u", upload=None)])


@pytest.mark.parametrize(("since", "until", "tasks"), [
    (None, None, {"a19", "a20", "b20", "c20", "a21", "u"}),
    ("2026-11-20", "2026-11-20", {"a20", "b20", "c20"}),
    ("2026-11-20", None, {"a20", "b20", "c20", "a21"}),
    (None, "2026-11-19", {"a19"}),
    ("2026-11-22", None, set()),
])
def test_a_day_range_reads_exactly_its_partitions(parts: PartWriter, since: str | None, until: str | None,
                                                  tasks: set[str]) -> None:
    _days(parts)
    data, _ = build_data(parts.store, DayRange.parse(since, until), ZONE)
    assert data.counts["results"] == len(tasks)
    assert {row["day"] for row in data.per_day} <= {"2026-11-19", "2026-11-20", "2026-11-21", "unknown"}
    lowest = {row["task_id"] for row in data.lowest}
    assert lowest == {t for t in tasks if t != "b20"}, "gzip and plain parts alike"
    if since is None and until is None:
        assert data.per_day[-1]["day"] == "unknown", "results without an upload time come last"


def test_bad_ranges_are_refused_with_the_option_named() -> None:
    with pytest.raises(ReportError, match="--since '2026-13-01' is not a date"):
        DayRange.parse("2026-13-01", None)
    with pytest.raises(ReportError, match="--since 2026-11-21 is after --until 2026-11-20"):
        DayRange.parse("2026-11-21", "2026-11-20")


def test_files_that_are_not_parts_are_ignored(parts: PartWriter) -> None:
    _days(parts)
    parts.store.put("results/README.txt", b"not json")
    parts.store.put("results/dt=2026-11-20/hour=00/notes.csv", b"a,b\n")
    parts.store.put("results/dt=2026-11-20/stray.jsonl", b"{}\n")
    data, _ = build_data(parts.store, DayRange(), ZONE)
    assert data.counts["results"] == 6 and data.counts["files"] == 5


def test_a_malformed_line_is_a_clear_error_naming_the_problem(parts: PartWriter, tmp_path: Path) -> None:
    parts.part("2026-11-20", "00", [record("a"), b'{"task_id": "b", "score": '])
    with pytest.raises(ReportError, match="could not read the results as JSONL"):
        make_report(parts.store, tmp_path / "r.html", zone=ZONE)
    assert not (tmp_path / "r.html").exists(), "no half page"


def test_running_and_stuck_come_from_the_markers_by_upload_day(parts: PartWriter) -> None:
    parts.part("2026-11-20", "00", [record("done")])
    day20 = _epoch("2026-11-20T01:00:00+08:00")
    day21 = _epoch("2026-11-21T09:00:00+08:00")
    for name, upload in (("r1|job-1", day20), ("r2|job-2", day20), ("r3|job-3", day21), ("done|job-done", day20)):
        remember_unfinished(parts.store, name, first_seen=upload, upload_time=upload, owner="t")
    remember_unfinished(parts.store, "s1|job-s", first_seen=day21, upload_time=day21, owner="t")
    stuck = read_unfinished(parts.store, "s1|job-s")
    assert stuck is not None
    mark_stuck(parts.store, stuck, now=day21 + 86400 * 3, owner="t")
    remember_unfinished(parts.store, "n1|job-n", first_seen=day21, upload_time=None, owner="t")

    data, _ = build_data(parts.store, DayRange(), ZONE)
    per_day = {row["day"]: (row["running"], row["stuck"]) for row in data.per_day}
    assert per_day == {"2026-11-20": (2, 0), "2026-11-21": (1, 1), "unknown": (1, 0)}, \
        "a marker whose result is already in the JSONL (a crash left it) is not running"
    assert (data.counts["running"], data.counts["stuck"]) == (4, 1)
    ranged, _ = build_data(parts.store, DayRange.parse("2026-11-21", "2026-11-21"), ZONE)
    assert (ranged.counts["running"], ranged.counts["stuck"], ranged.counts["results"]) == (1, 1, 0)
    assert not ranged.empty, "something still running is something to show"


def _epoch(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text).timestamp()


def test_an_oss_store_reads_through_the_store_api_with_the_same_figures(demo: Demo, moto_oss: MotoOss) -> None:
    moto_oss.injector.reset()
    oss = make_oss_store(moto_oss)
    keys = part_keys(demo.store)
    for key in keys:
        oss.put(key, demo.store.get(key).body)
    oss.put("results/dt=2001-01-01/hour=00/part-0000000001-old.jsonl",
            json.dumps(record("old")).encode() + b"\n")
    local, _ = build_data(demo.store, DayRange(), ZONE)
    moto_oss.injector.reset()
    remote, read = build_data(oss, DayRange.parse("2002-01-01", None), ZONE)
    assert read == sum(demo.store.head(k).size for k in keys)
    fetched = [seen["path"] for seen in moto_oss.injector.seen if seen["method"] == "GET" and "part-" in seen["path"]]
    assert len(fetched) == len(keys) and not any("2001-01-01" in path for path in fetched), \
        "only the range's parts are downloaded"

    def comparable(data: Any) -> dict[str, Any]:
        out = data.to_dict()
        for volatile in ("generated_at", "store", "range"):
            out.pop(volatile)
        return out

    assert comparable(remote) == comparable(local)
    assert remote.store == oss.url


def test_the_figures_match_the_jsonl_per_agent_and_per_rule(demo: Demo) -> None:
    data, _ = build_data(demo.store, DayRange(), ZONE)
    agents = expected.agents(demo.records)
    assert {row["agent_key"]: (row["calls"], row["scored"], pytest.approx(row["average_score"])) for row in data.agents} == \
        {key: (v["calls"], v["scored"], v["average_score"]) for key, v in agents.items()}
    rules = expected.rules(demo.records)
    assert {row["rule_key"]: (row["calls"], pytest.approx(row["share"])) for row in data.rules} == \
        {key: (v["calls"], v["share"]) for key, v in rules.items()}
    assert data.counts["results"] == len(demo.records)


def test_a_local_store_is_read_in_place(demo: Demo, tmp_path: Path) -> None:
    """A local store's parts are complete when visible: nothing is copied (memory, disk, time)."""
    from qcflow.tools.report.source import DayRange as Range, list_parts, local_paths

    parts = list_parts(demo.store, Range())
    paths = local_paths(demo.store, parts, tmp_path / "work")
    assert all(path.is_relative_to(demo.store.root) for path in paths)
    assert not (tmp_path / "work").exists()


def test_a_missing_store_folder_is_an_empty_report(tmp_path: Path) -> None:
    data, read = build_data(LocalStore(tmp_path / "nothing-here"), DayRange(), ZONE)
    assert data.empty and read == 0 and data.per_day == [] and data.notes == []
