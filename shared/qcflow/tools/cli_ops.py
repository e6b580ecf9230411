"""Operator commands: ``qcflow push``, ``replay``, ``harvest``, ``status`` and ``demo`` (extra
``qcflow[cli]``; not in the layer).

They run the same use cases as the functions, with credentials from the ``ALIBABA_CLOUD_*``
variables and settings from ``QCFLOW_*``. stdout carries a command's table, summary or JSON,
once; progress bars (``tools/progress.py``) and logs (``logs.to_stderr``, set up by the ``qcflow``
group) go to stderr. Times follow ``tools/timerange.py``: without an offset, in SCA's zone.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import click
from rich.console import Console
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


#: UploadAudioData's published quota (config.py: 3000 calls per 60 s); the client-side limit
#: (QCFLOW_UPLOAD_RATE_PER_SECOND) keeps a run under it.
UPLOAD_QUOTA_CALLS, UPLOAD_QUOTA_WINDOW_SECONDS = 3000, 60.0


@contextmanager
def upload_bar(description: str, total: int | None, services: Any) -> Iterator[Any]:
    """A bar on stderr for push/replay: recordings settled (of the total, when known), the rate of
    real UploadAudioData calls over a sliding window and their share of the upload quota within its
    window, an ETA from the windowed rate (stdout stays for results)."""
    from qcflow.tools.progress import Quota, run_bar

    limiter = services.sca.upload_limiter
    calls = (lambda: int(limiter.acquired)) if hasattr(limiter, "acquired") else None
    quota = Quota("upload quota", UPLOAD_QUOTA_CALLS, UPLOAD_QUOTA_WINDOW_SECONDS)
    with run_bar(description, total, console=console, calls=calls, quota=quota) as bar:
        yield bar


def outcome_text(counts: dict[str, int]) -> str:
    """``submitted 12 · failed 1``: the outcomes so far, as the summary will count them."""
    return " · ".join(f"{name} {count:,}" for name, count in sorted(counts.items()))


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
            with upload_bar("push", total, services) as bar:

                def on_result(result: PushResult) -> None:
                    run.note(result)
                    counts[result.status] = counts.get(result.status, 0) + 1
                    bar.advance(text=outcome_text(counts))

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
    """The summary table, once, on stdout (with the summary lines); progress and logs are on stderr."""
    Console().print(summary_table(title, counts))


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
            with upload_bar("replay", None, services) as bar:

                def on_result(result: PushResult) -> None:
                    run.note(result)
                    counts[result.status] = counts.get(result.status, 0) + 1
                    bar.advance(text=outcome_text(counts))

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


@click.command("harvest")
@click.option(
    "--since",
    default=None,
    help="Backfill from this upload time: a date or ISO 8601; without an offset in QCFLOW_SCA_TIME_ZONE.",
)
@click.option(
    "--until",
    default=None,
    help="…up to this upload time (a date includes that whole day; default: now minus the settle delay).",
)
@click.option(
    "--reviews",
    is_flag=True,
    help="Backfill the reviews saved between --since and --until instead (own lease; the review checkpoint stays).",
)
@click.option(
    "--max-seconds", default=None, type=click.FloatRange(1), help="Time budget (default QCFLOW_HARVEST_MAX_SECONDS)."
)
@click.option("--json", "as_json", is_flag=True, help="The pass's report as JSON on stdout (the range included).")
def harvest_command(
    since: str | None, until: str | None, reviews: bool, max_seconds: float | None, as_json: bool
) -> None:
    """One harvest pass from the checkpoint (plus remembered unfinished tasks, then the review
    feed), or a backfill of a range (of upload times; with --reviews, of review times).

    A time without an offset, and a date alone (midnight), are in SCA's zone (QCFLOW_SCA_TIME_ZONE),
    as for `qcflow report`; the summary says which range was read."""
    from datetime import datetime, timezone

    from qcflow.config import load_settings
    from qcflow.tools.timerange import TimeRange, describe
    from qcflow.triggers import check_backfill_range

    def bad_range(text: str) -> NoReturn:
        console.print(Text.assemble(("error: ", "red"), text), soft_wrap=True)
        sys.exit(2)

    if reviews and since is None:
        bad_range("--reviews needs --since (each pass reads new reviews already)")

    try:
        zone = load_settings().zone
        wanted = TimeRange.parse(since, until, zone=zone)
    except QcflowError as exc:
        bad_range(str(exc))
    try:
        check_backfill_range(wanted.since, wanted.until, datetime.now(timezone.utc))
    except ValueError as exc:
        bad_range(f"{exc} ({wanted.describe()})")

    async def work() -> Any:
        from qcflow.harvest import HarvestProgress, run_harvest
        from qcflow.ledger import Ledger
        from qcflow.tools.progress import Quota, run_bar

        services = await _services()
        try:
            require_existing_store(services.store)
            budget = max_seconds or services.settings.harvest.max_seconds
            quotas = services.settings.quotas
            seen = {"calls": 0}
            quota = Quota("GetResult quota", quotas.get_result_quota, quotas.get_result_window_seconds)
            with run_bar("harvest", None, console=console, calls=lambda: seen["calls"], quota=quota) as bar:

                def on_progress(p: HarvestProgress) -> None:
                    seen["calls"] = p.calls
                    bar.update(
                        completed=p.pages,
                        total=p.estimated_total_pages,
                        text=f"pages · records {p.records:,} · written {p.written:,}",
                    )

                report = await run_harvest(
                    services.settings,
                    services.sca,
                    services.store,
                    raw_store=services.raw_store,
                    since=wanted.since,
                    until=wanted.until,
                    deadline=time.monotonic() + budget,
                    progress=on_progress,
                    ledger=Ledger(services.store),
                    reviews=reviews,
                )
                seen["calls"] = report.calls
                bar.finish(
                    completed=report.pages,
                    total=report.pages,
                    text=f"pages · records {report.records_seen:,} · written {report.written:,}",
                )
                return report
        finally:
            await services.aclose()

    report = run_async(work)
    used = describe(report.since, report.until, zone)
    if as_json:
        import json

        click.echo(json.dumps({**report.to_json(), "range": used, "files": report.files}, indent=2, default=str))
        return
    if report.lease_busy:
        click.echo(f"harvest {report.mode}: another run holds the lease; nothing done")
        return
    click.echo(
        f"harvest {report.mode}: {report.written:,} written ({report.records_seen:,} seen, "
        f"{report.duplicates_skipped:,} already written) in {len(report.files)} files, {report.calls:,} GetResult "
        f"calls, {report.elapsed:.1f} s; range {used}"
    )
    if report.reviews:
        counts = report.reviews
        click.echo(
            f"reviews: {counts.get('reviews_written', 0):,} written ({counts.get('reviews_seen', 0):,} seen, "
            f"{counts.get('reviews_duplicates_skipped', 0):,} already written) in {len(report.review_files)} files; "
            f"review checkpoint {counts.get('review_checkpoint') or '-'}"
        )
    if note := report.settle_note():
        click.echo(note)
    if report.stopped_by_deadline:
        click.echo("stopped by its time budget, state saved: the next pass continues")


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
    """Pushed, failed (top reasons), in flight, harvested, unfinished, stuck, harvest lag, last run, reviews."""
    from qcflow.config import load_settings
    from qcflow.store import open_store
    from qcflow.tools.status import as_json as dumps
    from qcflow.tools.status import status

    async def work() -> dict[str, Any]:
        settings = load_settings()
        store = require_existing_store(open_store(settings.store.url, settings=settings))
        from qcflow.tools.progress import run_bar

        with run_bar("reading the ledger", None, console=console) as bar:
            closed = settings.harvest.settle_seconds + settings.harvest.lookback_seconds
            return await asyncio.to_thread(
                status,
                store,
                zone=settings.zone,
                days=days,
                progress=lambda n: bar.update(completed=n),
                closed_after_seconds=closed,
            )

    report = run_async(work)
    if as_json:
        click.echo(dumps(report))
        return
    push, harvest, inspections = report["push"], report["harvest"], report["inspections"]
    reviews = report["reviews"]
    table = Table(title=f"qcflow status — {report['store']} at {report['at']}")
    table.add_column("")
    table.add_column("value", justify="right")
    rows = [
        ("recordings in the ledger", push["recordings"]),
        ("pushed (submitted)", push["submitted"]),
        ("push failed (no task)", push["failed"]),
        ("in flight", push["in_flight"]),
        ("stalled claims", push["stalled"]),
        ("submitted, taskId unknown", push["task_id_unknown"]),
        (f"harvested (last {days} days)", harvest[f"harvested_last_{days}_days"]),
        (f"inspections finished (last {days} days)", inspections["finished"]),
        (f"inspections failed (last {days} days)", inspections["failed"]),
        ("unfinished (remembered)", harvest["unfinished"]),
        ("stuck", harvest["stuck"]),
        ("checkpoint", harvest["checkpoint"] or "-"),
        ("harvest lag", f"{harvest['lag_seconds']} s" if harvest["lag_seconds"] is not None else "-"),
        ("last run", (harvest["last_run"] or {}).get("finished_at") or "-"),
        (f"reviews (last {days} days)", reviews[f"reviews_last_{days}_days"]),
        ("review checkpoint", reviews["checkpoint"] or "-"),
        ("review lag", f"{reviews['lag_seconds']} s" if reviews["lag_seconds"] is not None else "-"),
        (
            f"files per closed hour, max (last {days} days)",
            f"{report['files']['max_files_per_closed_hour']} "
            f"({report['files']['closed_hours_over_2_files']} of {report['files']['closed_hours']} hours over 2)",
        ),
    ]
    for name, value in rows:
        table.add_row(name, str(value))
    Console().print(table)
    span = report["days"]
    click.echo(f"days counted: {span['from']} to {span['to']} ({span['zone']}, the partitions' zone)")
    if push["failed_top_reasons"]:
        click.echo(
            "top push failure reasons: " + ", ".join(f"{code} ×{n}" for code, n in push["failed_top_reasons"].items())
        )
    if inspections["failed_top_reasons"]:
        click.echo(
            "top inspection failure reasons: "
            + ", ".join(f"{reason} ×{n}" for reason, n in inspections["failed_top_reasons"].items())
        )


@click.command("demo")
@click.option("--recordings", default=20, show_default=True, type=click.IntRange(1, 5000), help="Synthetic recordings.")
@click.option(
    "--store",
    "store_url",
    default=None,
    help="Store URL to write to (default file:./qcflow-data; an exported QCFLOW_STORE is ignored).",
)
@click.option("--json", "as_json", is_flag=True, help="This run's numbers as JSON on stdout.")
def demo_command(recordings: int, store_url: str | None, as_json: bool) -> None:
    """The whole pipeline on embedded defaults: sandbox, push, callbacks, harvest, JSONL.

    It writes synthetic recordings and results to --store only, else file:./qcflow-data: an
    exported QCFLOW_STORE is ignored (it may be a real pipeline's bucket). The numbers are this
    run's, also when the store holds earlier runs."""
    from qcflow.tools.demo import run_demo

    try:
        summary = run_demo(
            recordings, store_url=store_url, say=lambda text: console.print(f"[dim]·[/dim] {text}", soft_wrap=True)
        )
    except KeyboardInterrupt:
        console.print("interrupted: everything the demo started was stopped")
        sys.exit(130)
    unexpected = (
        not summary.exactly_once or summary.harvested != summary.pushed or summary.reviews != summary.reviews_saved
    )
    if as_json:
        import json

        click.echo(json.dumps(summary.to_json(), indent=2))
    else:
        table = Table(title=f"qcflow demo: {recordings} recordings in {summary.seconds:.1f} s (this run)")
        for column in ("pushed", "push failed", "finished", "failed", "harvested", "files", "callbacks", "reviews"):
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
                    summary.reviews,
                )
            )
        )
        Console().print(table)
        click.echo(f"store: {summary.store}")
        click.echo(f"JSONL results: {summary.results_at}")
        click.echo(f"JSONL reviews: {summary.reviews_at} ({summary.reviews} reviews, one line each)")
    if summary.ignored_store:
        console.print(
            f"note: QCFLOW_STORE={summary.ignored_store} was ignored; the demo writes only where --store says",
            soft_wrap=True,
            markup=False,
        )
    if unexpected:
        console.print(
            f"[red]unexpected:[/red] {summary.harvested} lines for {summary.distinct_tasks} tasks, "
            f"{summary.pushed} pushed; {summary.reviews} review lines for {summary.reviews_saved} reviews saved"
        )
        sys.exit(1)


@click.command("compact")
@click.option("--since", default=None, help="First upload day to compact (a date in QCFLOW_SCA_TIME_ZONE).")
@click.option("--until", default=None, help="Last upload day to compact, included (default: the last closed hour).")
@click.option("--json", "as_json", is_flag=True, help="The counts as JSON on stdout.")
def compact_command(since: str | None, until: str | None, as_json: bool) -> None:
    """Fold the small parts of every closed hour of results/ and reviews/ into one or two (all days without a range).

    Safe while harvests and callbacks run, and after a crash: readers never see a result twice, and
    a compaction left halfway is finished first. The harvest pass does this for recent hours."""
    import uuid
    from datetime import datetime, timedelta, timezone

    from qcflow.config import load_settings
    from qcflow.harvest.compact import RESULTS, REVIEWS, CompactStats, compact_range
    from qcflow.store import open_store
    from qcflow.tools.timerange import TimeRange

    settings = load_settings()
    zone = settings.zone
    try:
        wanted = TimeRange.parse(since, until, zone=zone)
    except QcflowError as exc:
        console.print(Text.assemble(("error: ", "red"), str(exc)), soft_wrap=True)
        sys.exit(2)
    harvest = settings.harvest
    now = datetime.now(timezone.utc)
    store = require_existing_store(open_store(settings.store.url, settings=settings))
    last = wanted.until - timedelta(microseconds=1) if wanted.until is not None else None
    stats = CompactStats()
    for room in (RESULTS, REVIEWS):
        compact_range(
            store,
            room,
            stats=stats,
            unfinished_rule=room is RESULTS,
            zone=zone,
            now=now,
            settle_seconds=harvest.settle_seconds,
            lookback_seconds=harvest.lookback_seconds,
            run_id=f"{now:%Y%m%dT%H%M%SZ}-compact-{uuid.uuid4().hex[:8]}",
            gzip=harvest.gzip,
            max_bytes=harvest.compact_max_bytes,
            since=wanted.since.astimezone(zone) if wanted.since is not None else None,
            until=last.astimezone(zone) if last is not None else None,
        )
    if as_json:
        import json

        click.echo(json.dumps(stats.to_json(), indent=2))
        return
    click.echo(
        f"compact: {stats.partitions:,} closed hours, {stats.compactions:,} compacted "
        f"({stats.finished:,} left halfway finished), parts {stats.parts_before:,} -> {stats.parts_after:,}, "
        f"{stats.records:,} results rewritten"
    )


def register(main: click.Group) -> None:
    main.add_command(push_command)
    main.add_command(replay_command)
    main.add_command(demo_command)
    main.add_command(harvest_command)
    main.add_command(status_command)
    main.add_command(compact_command)
    from qcflow.tools.report import register as register_report

    register_report(main)  # qcflow report, qcflow ddl maxcompute (DuckDB/Plotly imported when they run)
