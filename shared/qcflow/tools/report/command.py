"""The click commands ``qcflow report``, ``qcflow ddl maxcompute`` and ``qcflow ddl duckdb`` (``register(main)``).

Importing this module costs click only: DuckDB and Plotly (extra ``qcflow[report]``) are
imported when a command runs, so the rest of the CLI works without the extra, and a missing
extra is a one-line message, not a traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

EXTRA_HINT = "qcflow report needs its extra: pip install 'qcflow[report]'"
DEFAULT_OUT = "qcflow-report.html"
_STAGES = {
    "listing": "listing parts",
    "running": "reading running markers",
    "reading": "reading JSONL",
    "loading": "loading records",
    "records": "records loaded",
}


def _require_extra() -> None:
    try:
        import duckdb  # noqa: F401
        import plotly  # noqa: F401
    except ImportError:
        click.echo(EXTRA_HINT, err=True)
        sys.exit(2)


@contextmanager
def terminal_progress() -> Iterator[Any]:
    """Bars on stderr for long reads: parts listed, bytes read, records loaded (stdout stays
    for the summary line)."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[extra]}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as bars:
        tasks: dict[str, Any] = {}

        def update(stage: str, done: int, total: int | None) -> None:
            task = tasks.get(stage)
            if task is None:
                task = tasks[stage] = bars.add_task(_STAGES.get(stage, stage), total=total, extra="")
            if stage == "reading":
                extra = f"{done / 1e6:,.1f} / {(total or 0) / 1e6:,.1f} MB"
            elif stage == "loading":
                extra = f"{done}%"
            elif stage == "records":
                extra = f"{done:,} records"
            else:
                extra = f"{done:,} found"
            if total == 0:  # nothing to do is done, not 0 %
                done = total = 1
            bars.update(task, completed=done, total=total, extra=extra)

        yield update


@click.command("report")
@click.option("--since", default=None, metavar="DATE", help="First upload day (YYYY-MM-DD, SCA's time zone).")
@click.option("--until", default=None, metavar="DATE", help="Last upload day, included (SCA's time zone).")
@click.option(
    "--out",
    "out",
    default=DEFAULT_OUT,
    show_default=True,
    type=click.Path(dir_okay=False),
    help="The HTML file to write (self-contained: opens offline).",
)
def report_command(since: str | None, until: str | None, out: str) -> None:
    """One HTML page of the harvested results: per day, scores, agents, rules, reviews, failures."""
    _require_extra()
    from qcflow.config import load_settings
    from qcflow.errors import QcflowError
    from qcflow.store import open_store
    from qcflow.tools.cli_ops import require_existing_store
    from qcflow.tools.report import DayRange, make_report

    try:
        days = DayRange.parse(since, until)
        settings = load_settings()
        store = require_existing_store(open_store(settings.store.url, settings=settings))
        with terminal_progress() as progress:
            summary = make_report(store, out, days=days, zone=settings.zone, progress=progress)
    except QcflowError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    from qcflow.tools.timerange import describe

    used = describe(*days.moments(settings.zone), settings.zone) if days.bounded else "all results"
    click.echo(f"{summary.line()}; range {used}")


@click.group("ddl")
def ddl_group() -> None:
    """DDL for the engines analysts already use, over the results prefix."""


@ddl_group.command("maxcompute")
@click.option("--table", default="qcflow_results", show_default=True, help="Table over results/.")
@click.option(
    "--location",
    default=None,
    help="OSS location of results/ (default: from QCFLOW_STORE and the region, internal endpoint).",
)
@click.option("--role-arn", default=None, help="RAM role MaxCompute assumes to read OSS (odps.properties.rolearn).")
@click.option("--reviews-table", default="qcflow_reviews", show_default=True, help="Table over reviews/.")
@click.option(
    "--reviews-location",
    default=None,
    help="OSS location of reviews/ (default: the folder reviews/ beside --location's).",
)
@click.option("--view", default="qcflow_latest", show_default=True, help="View of every task's current row.")
def maxcompute_command(
    table: str,
    location: str | None,
    role_arn: str | None,
    reviews_table: str,
    reviews_location: str | None,
    view: str,
) -> None:
    """External tables over results/ and reviews/ (JSON, partitions dt and hour) matching the JSONL
    schema, and the view of every task's current row (the latest of its rows: final scores)."""
    from qcflow.config import load_settings
    from qcflow.errors import QcflowError
    from qcflow.tools.report.ddl import maxcompute_ddl, oss_location

    try:
        settings = load_settings()
        if location is None:
            location = oss_location(settings.store.url, settings.store.region, settings.store.oss_endpoint)
        text = maxcompute_ddl(
            table=table,
            location=location,
            role_arn=role_arn,
            reviews_table=reviews_table,
            reviews_location=reviews_location,
            view=view,
            zone=settings.zone.key,
        )
        click.echo(text, nl=False)
    except QcflowError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)


@ddl_group.command("duckdb")
@click.option(
    "--folder",
    default=None,
    help="The local store folder holding results/ and reviews/ (default: QCFLOW_STORE's, if local; else qcflow-data).",
)
def duckdb_command(folder: str | None) -> None:
    """The DuckDB query of every task's current row (the latest of its results/ and reviews/ rows)."""
    from qcflow.config import load_settings
    from qcflow.errors import QcflowError
    from qcflow.tools.report.latest import DEFAULT_FOLDER, duckdb_latest

    try:
        settings = load_settings()
        if folder is None:
            folder = _local_folder(settings.store.url) or DEFAULT_FOLDER
        click.echo(duckdb_latest(folder, settings.zone.key), nl=False)
    except QcflowError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)


def _local_folder(url: str) -> str | None:
    from qcflow.store import parse_store_url

    kind, path, _ = parse_store_url(url)
    return path if kind == "file" else None


def register(main: click.Group) -> None:
    main.add_command(report_command)
    main.add_command(ddl_group)
