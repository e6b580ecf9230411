"""Operator commands: ``qcflow push`` and ``qcflow replay`` (extra ``qcflow[cli]``; not in the layer).

They run the same use cases as the functions, with credentials from the ``ALIBABA_CLOUD_*``
variables and settings from ``QCFLOW_*``, and show progress (rich) on long runs.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import contextmanager
from typing import Any, Iterator

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from qcflow.errors import QcflowError

console = Console(stderr=True)


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
        console.print(f"[red]error:[/red] {exc}")
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
@click.option("--contact-id", "contact_ids", multiple=True, help="Push by ContactId, with CCC's recording URL (repeatable).")
@click.option("--concurrency", default=8, show_default=True, type=click.IntRange(1, 64), help="Recordings in flight.")
def push_command(keys: tuple[str, ...], prefix: str | None, contact_ids: tuple[str, ...], concurrency: int) -> None:
    """Push recordings to SCA: one key, a prefix (backfill) or a ContactId; each exactly once."""
    if not (keys or prefix is not None or contact_ids):
        raise click.UsageError("give --key, --prefix or --contact-id")

    async def work() -> dict[str, int]:
        from qcflow.push import PushResult, Recording, backfill

        services = await _services()
        try:
            pusher = services.pusher()
            token = f"cli-{uuid.uuid4().hex}"

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
                total = await asyncio.to_thread(lambda: sum(1 for _ in pusher.recordings.list(prefix)))  # type: ignore[union-attr]
                total += len(keys) + len(contact_ids)
            elif keys or contact_ids:
                total = len(keys) + len(contact_ids)
            counts: dict[str, int] = {}
            started = time.monotonic()
            quota = services.settings.upload_rate_per_second * services.settings.push_batch_size
            with progress_bar("push", total) as (bar, task):

                def on_result(result: PushResult) -> None:
                    counts[result.status] = counts.get(result.status, 0) + 1
                    done = sum(counts.values())
                    rate = done / max(1e-6, time.monotonic() - started)
                    extra = f"failed {counts.get('failed', 0)}  {rate:.1f}/s ({rate / quota:.0%} of the upload quota)"
                    bar.update(task, advance=1, extra=extra)

                await backfill(pusher, source(), token=token, concurrency=concurrency, on_result=on_result)
            return counts
        finally:
            await services.aclose()

    counts = run_async(work)
    console.print(summary_table("push", counts))
    if counts.get("retry") or counts.get("busy"):
        console.print("some recordings were not settled (a fault that persisted, or a live claim elsewhere): run again later")
        sys.exit(1)


@click.command("replay")
@click.option("--dry-run", is_flag=True, help="List what would be re-pushed, push nothing.")
@click.option("--concurrency", default=8, show_default=True, type=click.IntRange(1, 64))
def replay_command(dry_run: bool, concurrency: int) -> None:
    """Re-push recordings recorded as failed, after their cause was fixed."""

    async def work() -> dict[str, int]:
        from qcflow.push import PushResult

        services = await _services()
        try:
            pusher = services.pusher()
            if dry_run:
                todo = await pusher.replayable()
                for recording, generation in todo:
                    click.echo(f"{recording.key or recording.location}\tContactId {recording.contact_id}\tgeneration {generation}")
                return {"would replay": len(todo)}
            counts: dict[str, int] = {}
            with progress_bar("replay", None) as (bar, task):

                def on_result(result: PushResult) -> None:
                    counts[result.status] = counts.get(result.status, 0) + 1
                    bar.update(task, advance=1, extra=f"failed {counts.get('failed', 0)}")

                far = time.monotonic() + 10 * 365 * 86400.0
                await pusher.replay(token=f"replay-{uuid.uuid4().hex}", deadline=far, concurrency=concurrency,
                                    on_result=on_result)
            return counts
        finally:
            await services.aclose()

    counts = run_async(work)
    console.print(summary_table("replay", counts))


def register(main: click.Group) -> None:
    main.add_command(push_command)
    main.add_command(replay_command)
