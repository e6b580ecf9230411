"""``qcflow report`` and ``qcflow ddl``: the harvested JSONL at a glance, and handed to analysts.

A QA supervisor runs one command and opens one HTML file (charts, counts, the lowest-scoring
calls); an analyst gets an external-table DDL over the same files. Extra ``qcflow[report]``
(DuckDB, Plotly): never part of the Function Compute layer — no handler imports this
package, and the layer build follows the handlers' imports only.

Steps, one module each: ``source`` lists the parts of a day range in the store and makes them
local files (in place for a local store, copied for OSS); ``query`` aggregates them with
DuckDB; ``page`` renders the self-contained page; ``ddl`` writes the MaxCompute DDL;
``command`` holds the click commands (``register(main)``).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from qcflow.tools.report.source import DayRange, Progress, ReportError, _no_progress

if TYPE_CHECKING:
    import click

    from qcflow.store import ObjectStore
    from qcflow.tools.report.query import ReportData

__all__ = ["DayRange", "ReportError", "ReportSummary", "build_data", "make_report", "register"]


@dataclass(frozen=True)
class ReportSummary:
    out: Path
    counts: dict[str, int]
    bytes_read: int

    def line(self) -> str:
        c = self.counts
        return (
            f"report: {c['results']:,} results ({c['finished']:,} finished, {c['failed']:,} failed, "
            f"{c['running']:,} still running) from {c['files']:,} files -> {self.out}"
        )


def build_data(
    store: ObjectStore,
    days: DayRange,
    zone: ZoneInfo,
    *,
    progress: Progress = _no_progress,
    now: datetime | None = None,
    threads: int | None = None,
) -> tuple[ReportData, int]:
    """The page's figures for ``days`` (and how many bytes of JSONL were read)."""
    for attempt in range(READ_ATTEMPTS):
        listed: set[str] = set()
        try:
            return _build_data(store, days, zone, listed, progress=progress, now=now, threads=threads)
        except ReportError:
            # A compaction (qcflow.harvest.compact) may delete a part between the listing and its
            # read: its results are then in the parts that replace it, so read the new listing.
            if attempt == READ_ATTEMPTS - 1 or not _a_part_went_away(store, days, listed):
                raise
    raise AssertionError("unreachable")


#: Reads of the listing when parts go away under the report (a compaction in flight).
READ_ATTEMPTS = 3


def _a_part_went_away(store: ObjectStore, days: DayRange, listed: set[str]) -> bool:
    from qcflow import layout
    from qcflow.tools.report.source import REVIEWS, list_parts

    there = {p.key for prefix in (layout.RESULTS, REVIEWS) for p in list_parts(store, days, prefix=prefix)}
    return bool(listed - there)


def _build_data(
    store: ObjectStore,
    days: DayRange,
    zone: ZoneInfo,
    listed: set[str],
    *,
    progress: Progress,
    now: datetime | None,
    threads: int | None,
) -> tuple[ReportData, int]:
    from qcflow.tools.report.query import aggregate
    from qcflow.tools.report.source import REVIEWS, list_parts, local_paths, markers

    generated_at = (now or datetime.now(timezone.utc)).astimezone(timezone.utc).replace(microsecond=0).isoformat()
    results = list_parts(store, days, progress)

    def more(stage: str, done: int, total: int | None) -> None:
        progress(stage, len(results) + done, None if total is None else len(results) + total)

    parts = results + list_parts(store, days, more, prefix=REVIEWS)
    listed.update(p.key for p in parts)
    found = markers(store, zone, days, progress)
    range_ = {
        "since": days.since.isoformat() if days.since else None,
        "until": days.until.isoformat() if days.until else None,
        "label": days.describe(),
    }
    with tempfile.TemporaryDirectory(prefix="qcflow-report-") as workdir:
        paths = local_paths(store, parts, Path(workdir), progress)
        data = aggregate(
            paths[: len(results)],
            found,
            reviews=paths[len(results) :],
            zone=zone.key,
            range_=range_,
            generated_at=generated_at,
            store=store.url,
            files=len(parts),
            progress=progress,
            threads=threads,
        )
    return data, sum(p.size for p in parts)


def make_report(
    store: ObjectStore,
    out: str | os.PathLike[str],
    *,
    days: DayRange | None = None,
    zone: ZoneInfo | None = None,
    progress: Progress = _no_progress,
    now: datetime | None = None,
    threads: int | None = None,
) -> ReportSummary:
    """Read, aggregate and write the page to ``out`` (atomically: a reader never sees half a page)."""
    from qcflow.tools.report.page import render

    days = days or DayRange()
    zone = zone or ZoneInfo("Asia/Shanghai")
    data, read = build_data(store, days, zone, progress=progress, now=now, threads=threads)
    target = Path(out).expanduser().absolute()
    target.parent.mkdir(parents=True, exist_ok=True)
    html = render(data)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(html)
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would keep a page meant to be shared from others
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return ReportSummary(target, dict(data.counts), read)


def register(main: click.Group) -> None:
    """Add ``qcflow report`` and ``qcflow ddl`` to the CLI group (imports click only)."""
    from qcflow.tools.report.command import register as _register

    _register(main)
