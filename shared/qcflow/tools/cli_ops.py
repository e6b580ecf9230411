"""Operator commands: ``qcflow push`` and ``qcflow replay`` (extra ``qcflow[cli]``; not in the layer).

They run the same use cases as the functions, with credentials from the ``ALIBABA_CLOUD_*``
variables and settings from ``QCFLOW_*``, and show progress (rich) on long runs.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from qcflow.errors import ConfigError, QcflowError

console = Console(stderr=True)


def require_existing_store(store: Any) -> Any:
    """``store``, if its root exists. ``status``, ``report``, ``harvest`` and ``replay`` read a store
    that is there: a mistyped ``QCFLOW_STORE`` (a folder that is not) would otherwise look like an
    empty, healthy pipeline. (Local folders only: a missing bucket fails on its first request.)"""
    from pathlib import Path

    root = getattr(store, "root", None)
    if root is not None and not Path(root).is_dir():
        raise ConfigError(
            f"QCFLOW_STORE={store.url}: no such folder ({root}). A typo? On a first run, create it "
            "(or let `qcflow push` or `qcflow demo` write to it first)"
        )
    return store


@contextmanager
def progress_bar(description: str, total: int | None) -> Iterator[tuple[Progress, Any]]:
    """A progress bar on stderr: done/total, rate, elapsed and ETA (stdout stays for results)."""
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[extra]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    ) as progress:
        task = progress.add_task(description, total=total, extra="")
        yield progress, task


def run_async(work: Callable[[], Any]) -> Any:
    """Run a coroutine factory; a qcflow error ends the command with its message, not a traceback."""
    try:
        return asyncio.run(work())
    except QcflowError as exc:
        # one line, as written: not wrapped at the terminal's width, brackets not taken for markup
        console.print(Text.assemble(("error: ", "red"), str(exc)), soft_wrap=True)
        sys.exit(2)


async def _services() -> Any:
    from qcflow.credentials import credentials_from_env
    from qcflow.services import build_services

    credentials = credentials_from_env()
    return await build_services(lambda: credentials)


def summary_table(title: str, counts: dict[str, int]) -> Table:
    table = Table(title=title)
    table.add_column("outcome")
    table.add_column("recordings", justify="right")
    for name, count in sorted(counts.items()):
        table.add_row(name, str(count))
    return table


@click.command("push")
@click.option("--key", "keys", multiple=True, help="Object key of a recording (repeatable).")
@click.option("--prefix", default=None, help="Backfill every recording under this prefix of QCFLOW_RECORDINGS_URL.")
@click.option(
    "--contact-id", "contact_ids", multiple=True, help="Push by ContactId, with CCC's recording URL (repeatable)."
)
@click.option("--concurrency", default=8, show_default=True, type=click.IntRange(1, 64), help="Recordings in flight.")
def push_command(keys: tuple[str, ...], prefix: str | None, contact_ids: tuple[str, ...], concurrency: int) -> None:
    """Push recordings to SCA: one key, a prefix (backfill) or a ContactId; each exactly once.

    Exit codes: 0 all settled, 1 some failed or unsettled, 2 usage/config, 3 deployment
    (credentials, RAM policy), 130 SIGINT, 143 SIGTERM."""
    from qcflow.tools.push_cli import OperatorRun

    if not (keys or prefix is not None or contact_ids):
        raise click.UsageError("give --key, --prefix or --contact-id")
    run = OperatorRun("push", say=click.echo, error=_say_error, table=_show_counts)

    async def work() -> dict[str, int]:
        from qcflow.push import PushResult, Recording
        from qcflow.push.replay import backfill

        services = await _services()
        try:
            pusher = services.pusher()
            token = run.token

            async def source() -> AsyncIterator[Recording | PushResult]:
                for key in keys:
                    yield await pusher.resolve(key)
                for contact_id in contact_ids:
                    yield pusher.recording_for_contact(contact_id)
                if prefix is not None:
                    async for item in pusher.recordings_under(prefix):
                        yield item

            total = None
            if prefix is not None:
                listed = await asyncio.to_thread(lambda: sum(1 for _ in pusher.recordings.list(prefix)))
                if not listed:  # a typo in the prefix looks like a finished backfill otherwise
                    url = pusher.recordings.url if pusher.recordings is not None else "the recordings store"
                    console.print(f"no object under {prefix!r} in {url}: nothing to push from it", soft_wrap=True)
                total = listed + len(keys) + len(contact_ids)
            elif keys or contact_ids:
                total = len(keys) + len(contact_ids)
            counts: dict[str, int] = {}
            started = time.monotonic()
            quota = services.settings.quotas.upload_rate_per_second * services.settings.push.batch_size
            with progress_bar("push", total) as (bar, task):

                def on_result(result: PushResult) -> None:
                    run.note(result)
                    counts[result.status] = counts.get(result.status, 0) + 1
                    done = sum(counts.values())
                    rate = done / max(1e-6, time.monotonic() - started)
                    extra = f"failed {counts.get('failed', 0)}  {rate:.1f}/s ({rate / quota:.0%} of the upload quota)"
                    bar.update(task, advance=1, extra=extra)

                await backfill(
                    pusher,
                    source(),
                    token=token,
                    concurrency=concurrency,
                    on_result=on_result,
                    release_unsent=True,
                    held=run.held,
                )
            return counts
        finally:
            await services.aclose()

    sys.exit(run.execute(work))


def _show_counts(title: str, counts: dict[str, int]) -> None:
    console.print(summary_table(title, counts))


def _say_error(text: str) -> None:
    """One line on stderr, as written: not wrapped, brackets not taken for markup."""
    console.print(Text(text), soft_wrap=True)


@click.command("replay")
@click.option("--dry-run", is_flag=True, help="List what would be re-pushed, push nothing.")
@click.option("--concurrency", default=8, show_default=True, type=click.IntRange(1, 64))
def replay_command(dry_run: bool, concurrency: int) -> None:
    """Re-push recordings recorded as failed, after their cause was fixed (exit codes as ``push``)."""
    from qcflow.tools.push_cli import OperatorRun

    run = OperatorRun("replay", say=click.echo, error=_say_error, table=_show_counts)
    if dry_run:
        run_async(_replay_dry_run)
        return

    async def work() -> dict[str, int]:
        from qcflow.push import PushResult
        from qcflow.push.replay import replay

        services = await _services()
        try:
            require_existing_store(services.store)
            pusher = services.pusher()
            counts: dict[str, int] = {}
            with progress_bar("replay", None) as (bar, task):

                def on_result(result: PushResult) -> None:
                    run.note(result)
                    counts[result.status] = counts.get(result.status, 0) + 1
                    bar.update(task, advance=1, extra=f"failed {counts.get('failed', 0)}")

                far = time.monotonic() + 10 * 365 * 86400.0
                await replay(
                    pusher,
                    token=run.token,
                    deadline=far,
                    concurrency=concurrency,
                    on_result=on_result,
                    release_unsent=True,
                    held=run.held,
                )
            return counts
        finally:
            await services.aclose()

    code = run.execute(work)
    sys.exit(code)


async def _replay_dry_run() -> None:
    """Each recording ``qcflow replay`` would re-push: key, ContactId, generation and why."""
    from qcflow.push.replay import explained

    services = await _services()
    try:
        require_existing_store(services.store)
        todo = await explained(services.pusher())
        for recording, generation, reason in todo:
            click.echo(
                f"{recording.key or recording.location}\tContactId {recording.contact_id}"
                f"\tgeneration {generation}\t{reason}"
            )
        click.echo(f"would replay {len(todo)}")
    finally:
        await services.aclose()


def _moment(value: str | None) -> Any:
    from qcflow.triggers import parse_iso

    try:
        return parse_iso(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO 8601 time (2026-11-20T08:00:00+08:00)") from None


@click.command("harvest")
@click.option("--since", default=None, help="Backfill from this upload time (ISO 8601; without zone: UTC).")
@click.option("--until", default=None, help="…up to this upload time (default: now minus the settle delay).")
@click.option(
    "--max-seconds", default=None, type=click.FloatRange(1), help="Time budget (default QCFLOW_HARVEST_MAX_SECONDS)."
)
def harvest_command(since: str | None, until: str | None, max_seconds: float | None) -> None:
    """One harvest pass from the checkpoint (plus remembered unfinished tasks), or a backfill of a range."""
    from datetime import datetime, timezone

    from qcflow.triggers import check_backfill_range

    start, end = _moment(since), _moment(until)
    try:
        check_backfill_range(start, end, datetime.now(timezone.utc))
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None

    async def work() -> Any:
        from qcflow.harvest import HarvestProgress, run_harvest
        from qcflow.ledger import Ledger

        services = await _services()
        try:
            require_existing_store(services.store)
            budget = max_seconds or services.settings.harvest.max_seconds
            with progress_bar("harvest", None) as (bar, task):

                def on_progress(p: HarvestProgress) -> None:
                    extra = (
                        f"records {p.records}  written {p.written}  {p.rate:.1f} calls/s "
                        f"({p.rate / p.quota_rate:.0%} of the quota)"
                        if p.quota_rate
                        else f"records {p.records}"
                    )
                    bar.update(task, completed=p.pages, total=p.estimated_total_pages, extra=extra)

                return await run_harvest(
                    services.settings,
                    services.sca,
                    services.store,
                    since=start,
                    until=end,
                    deadline=time.monotonic() + budget,
                    progress=on_progress,
                    ledger=Ledger(services.store),
                )
        finally:
            await services.aclose()

    report = run_async(work)
    click.echo(report.summary())
    if report.stopped_by_deadline:
        console.print("stopped by its time budget, state saved: the next pass continues")


@click.command("status")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON on stdout.")
@click.option(
    "--days",
    default=7,
    show_default=True,
    type=click.IntRange(1, 366),
    help="Count harvested results of the last N days.",
)
def status_command(as_json: bool, days: int) -> None:
    """Pushed, failed (top reasons), in flight, harvested, unfinished, stuck, harvest lag, last run."""
    from qcflow.config import load_settings
    from qcflow.store import open_store
    from qcflow.tools.status import as_json as dumps
    from qcflow.tools.status import status

    async def work() -> dict[str, Any]:
        settings = load_settings()
        store = require_existing_store(open_store(settings.store.url, settings=settings))
        with progress_bar("reading the ledger", None) as (bar, task):
            return await asyncio.to_thread(
                status, store, zone=settings.zone, days=days, progress=lambda n: bar.update(task, completed=n)
            )

    report = run_async(work)
    if as_json:
        click.echo(dumps(report))
        return
    push, harvest = report["push"], report["harvest"]
    table = Table(title=f"qcflow status — {report['store']} at {report['at']}")
    table.add_column("")
    table.add_column("value", justify="right")
    rows = [
        ("recordings in the ledger", push["recordings"]),
        ("pushed (submitted)", push["submitted"]),
        ("failed", push["failed"]),
        ("in flight", push["in_flight"]),
        ("stalled claims", push["stalled"]),
        ("submitted, taskId unknown", push["task_id_unknown"]),
        (f"harvested (last {days} days)", harvest[f"harvested_last_{days}_days"]),
        ("unfinished (remembered)", harvest["unfinished"]),
        ("stuck", harvest["stuck"]),
        ("checkpoint", harvest["checkpoint"] or "-"),
        ("harvest lag", f"{harvest['lag_seconds']} s" if harvest["lag_seconds"] is not None else "-"),
        ("last run", (harvest["last_run"] or {}).get("finished_at") or "-"),
    ]
    for name, value in rows:
        table.add_row(name, str(value))
    Console().print(table)
    if push["failed_top_reasons"]:
        click.echo(
            "top failure reasons: " + ", ".join(f"{code} ×{n}" for code, n in push["failed_top_reasons"].items())
        )


@click.command("demo")
@click.option("--recordings", default=20, show_default=True, type=click.IntRange(1, 5000), help="Synthetic recordings.")
@click.option("--store", "store_url", default=None, help="Store URL (default QCFLOW_STORE, else file:./qcflow-data).")
def demo_command(recordings: int, store_url: str | None) -> None:
    """The whole pipeline on embedded defaults: sandbox, push, callbacks, harvest, JSONL."""
    from qcflow.tools.demo import run_demo

    try:
        summary = run_demo(recordings, store_url=store_url, say=lambda text: console.print(f"[dim]·[/dim] {text}"))
    except KeyboardInterrupt:
        console.print("interrupted: everything the demo started was stopped")
        sys.exit(130)
    table = Table(title=f"qcflow demo: {recordings} recordings in {summary.seconds:.1f} s")
    for column in ("pushed", "push failed", "finished", "failed", "harvested", "files", "callbacks"):
        table.add_column(column, justify="right")
    table.add_row(
        *(
            str(v)
            for v in (
                summary.pushed,
                summary.push_failed,
                summary.finished,
                summary.failed,
                summary.harvested,
                summary.files,
                summary.callbacks,
            )
        )
    )
    Console().print(table)
    click.echo(f"JSONL results: {summary.results_at}")
    if not summary.exactly_once or summary.harvested != summary.pushed:
        console.print(
            f"[red]unexpected:[/red] {summary.harvested} lines for {summary.distinct_tasks} tasks, "
            f"{summary.pushed} pushed"
        )
        sys.exit(1)


def register(main: click.Group) -> None:
    main.add_command(push_command)
    main.add_command(replay_command)
    main.add_command(demo_command)
    main.add_command(harvest_command)
    main.add_command(status_command)
    from qcflow.tools.report import register as register_report

    register_report(main)  # qcflow report, qcflow ddl maxcompute (DuckDB/Plotly imported when they run)
