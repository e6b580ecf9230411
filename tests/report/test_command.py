"""``qcflow report``: one command, one page, progress on stderr and a summary line with the path."""

from __future__ import annotations

from pathlib import Path
from zoneinfo import ZoneInfo

import click
import pytest
from click.testing import CliRunner

from qcflow.tools.report import make_report, register

from tests.report.conftest import Demo, part_keys


def cli() -> click.Group:
    @click.group()
    def main() -> None:
        pass

    register(main)  # what cli_ops' register will do
    return main


def test_qcflow_report_writes_the_page_and_says_where(demo: Demo, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("QCFLOW_STORE", f"file:{demo.store.root}")
    out = tmp_path / "out" / "qc.html"
    done = CliRunner().invoke(cli(), ["report", "--out", str(out)])
    assert done.exit_code == 0, done.output
    files = len(part_keys(demo.store))
    assert done.output.strip().splitlines()[-1].startswith("report: 30 results (")
    assert f"from {files} files -> {out}" in done.output
    assert "listing parts" in done.output and "reading JSONL" in done.output and "loading records" in done.output
    html = out.read_text(encoding="utf-8")
    assert 'data-results="30"' in html and oct(out.stat().st_mode & 0o777) == "0o644"


def test_qcflow_report_refuses_a_bad_range_in_one_line(demo: Demo, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("QCFLOW_STORE", f"file:{demo.store.root}")
    done = CliRunner().invoke(cli(), ["report", "--since", "2026-11-20", "--until", "yesterday", "--out", str(tmp_path / "r.html")])
    assert done.exit_code == 2
    assert "error: --until 'yesterday' is not a date (YYYY-MM-DD" in done.output and "Traceback" not in done.output
    assert not (tmp_path / "r.html").exists()


def test_progress_reports_files_bytes_and_records(demo: Demo, tmp_path: Path) -> None:
    seen: list[tuple[str, int, int | None]] = []
    summary = make_report(demo.store, tmp_path / "r.html", zone=ZoneInfo("Asia/Shanghai"),
                          progress=lambda stage, done, total: seen.append((stage, done, total)))
    files = summary.counts["files"]
    assert ("listing", files, files) in seen
    assert ("reading", summary.bytes_read, summary.bytes_read) in seen and summary.bytes_read > 0
    assert ("loading", 100, 100) in seen
    lines = len(demo.results) + len(demo.reviews)  # every line is loaded; the page counts tasks
    assert seen[-1] == ("records", lines, lines)
    assert summary.line().endswith(f"-> {tmp_path / 'r.html'}")
