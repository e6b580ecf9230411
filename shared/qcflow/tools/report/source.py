"""Which result parts a report reads, and how they reach DuckDB as local files.

Why local files: DuckDB reads JSONL and gzip with hive partitions from paths, and cannot
speak our ``ObjectStore`` (an OSS store may sit behind STS credentials, a custom endpoint or
the test shim). So a local store is read in place (its parts are complete whenever they are
visible: the store publishes them atomically), and any other store is copied part by part
through ``ObjectStore.get`` into a temporary directory that keeps the
``results/dt=…/hour=…/`` layout, a few parts at a time (each part is held in memory once,
bounded by ``harvest_part_max_bytes``).

The range is a pair of days in SCA's zone — the ``dt`` partition of a result is its upload
day there — so a range prunes by listing: only keys between ``results/dt=<since>`` and
``results/dt=<until>/`` are listed. ``dt=unknown`` (results without an upload time) belongs to
no day: it is read only when no range is given.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo

from qcflow import journal, layout
from qcflow.errors import QcflowError, ReportError
from qcflow.store import LocalStore, ObjectStore

SUFFIXES = (".jsonl", ".jsonl.gz")
#: The review feed's output: one line per review, partitioned by review time (``qcflow.layout``).
REVIEWS = layout.REVIEWS
#: ``results/dt=<day>/hour=<hh>/<name>``: anything else under ``results/`` is not a part.
#: ``_compact/<name>`` is a compaction's hidden copy (``qcflow.harvest.compact``): while one is
#: in flight its results are there, in the visible parts, or both; the report keeps one row
#: per result, so it reads both and sees each result exactly once at every instant.
_PART = re.compile(
    rf"^({re.escape(layout.RESULTS)}|{re.escape(REVIEWS)})dt=([^/]+)/hour=([^/]+)/((?:_compact/)?[^/]+)$"
)
_DOWNLOAD_THREADS = 8


#: ``progress(stage, done, total)``: stages ``listing`` (files found), ``running`` (markers
#: read), ``reading`` (bytes), ``loading`` (percent, DuckDB's own estimate), ``records`` (loaded).
Progress = Callable[[str, int, "int | None"], None]


def _no_progress(stage: str, done: int, total: int | None) -> None:
    pass


@dataclass(frozen=True)
class DayRange:
    """Inclusive days in SCA's zone; ``None`` leaves that end open."""

    since: date | None = None
    until: date | None = None

    def __post_init__(self) -> None:
        if self.since and self.until and self.since > self.until:
            raise ReportError(f"--since {self.since} is after --until {self.until}")

    @classmethod
    def parse(cls, since: str | None, until: str | None) -> DayRange:
        return cls(_day(since, "--since"), _day(until, "--until"))

    @property
    def bounded(self) -> bool:
        return self.since is not None or self.until is not None

    def holds(self, day: str) -> bool:
        """Whether a ``dt`` value (``YYYY-MM-DD`` or ``unknown``) is in range."""
        if not self.bounded:
            return True
        try:
            value = date.fromisoformat(day)
        except ValueError:
            return False  # dt=unknown: no upload time, so in no bounded range
        return (self.since is None or value >= self.since) and (self.until is None or value <= self.until)

    def moments(self, zone: tzinfo) -> tuple[datetime | None, datetime | None]:
        """The range as upload times: ``[since 00:00, the day after until 00:00)`` in ``zone``."""
        start = datetime.combine(self.since, time(0), tzinfo=zone) if self.since else None
        end = datetime.combine(self.until + timedelta(days=1), time(0), tzinfo=zone) if self.until else None
        return start, end

    def describe(self) -> str:
        if not self.bounded:
            return "all results"
        if self.since == self.until:
            return f"{self.since}"
        return f"{self.since or 'the first result'} to {self.until or 'the last result'}"


def _day(text: str | None, option: str) -> date | None:
    """A day in SCA's zone, by the CLI's one time rule (``tools/timerange.py``)."""
    from qcflow.tools.timerange import TimeRangeError, parse_day

    try:
        return parse_day(text, option)
    except TimeRangeError as exc:
        raise ReportError(str(exc)) from None


@dataclass(frozen=True)
class Part:
    key: str
    size: int
    day: str
    hour: str


def list_parts(
    store: ObjectStore, days: DayRange, progress: Progress = _no_progress, *, prefix: str = layout.RESULTS
) -> list[Part]:
    """The JSONL parts of the range under ``prefix``, in key order (one listing, pruned by the range).

    ``reviews/`` is partitioned by review time, and a task uploaded in the range may be reviewed
    any day after it: its listing starts at ``since`` and has no end (``unknown`` included: a
    review's upload day is read from its line, not from its path)."""
    reviews = prefix == REVIEWS
    start_after = f"{prefix}dt={days.since.isoformat()}" if days.since else None
    stop_after = f"{prefix}dt={days.until.isoformat()}/\U0010ffff" if days.until and not reviews else None
    parts: list[Part] = []
    for info in store.list(prefix, start_after=start_after):
        if stop_after is not None and info.key > stop_after:
            break
        match = _PART.match(info.key)
        if match is None or not info.key.endswith(SUFFIXES) or match.group(1) != prefix:
            continue
        _, day, hour, _ = match.groups()
        if not reviews and not days.holds(day):
            continue
        parts.append(Part(info.key, info.size, day, hour))
        if len(parts) % 100 == 0:
            progress("listing", len(parts), None)
    progress("listing", len(parts), len(parts))
    return parts


def local_paths(store: ObjectStore, parts: list[Part], workdir: Path, progress: Progress = _no_progress) -> list[Path]:
    """A local file per part: in place for a local store, else copied into ``workdir``."""
    total = sum(p.size for p in parts)
    if isinstance(store, LocalStore):
        progress("reading", total, total)
        return [store.root.joinpath(*p.key.split("/")) for p in parts]
    done = 0
    progress("reading", 0, total)

    def fetch(part: Part) -> Path:
        target = workdir.joinpath(*part.key.split("/"))
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            body = store.get(part.key).body
        except QcflowError as exc:
            raise ReportError(f"could not read {part.key} from {store.url}: {exc}") from exc
        target.write_bytes(body)
        return target

    paths: list[Path] = []
    with ThreadPoolExecutor(max_workers=_DOWNLOAD_THREADS, thread_name_prefix="qcflow-report-get") as pool:
        for part, path in zip(
            parts, pool.map(fetch, parts), strict=False
        ):  # map keeps order; at most a few bodies in flight
            paths.append(path)
            done += part.size
            progress("reading", done, total)
    return paths


@dataclass(frozen=True)
class Marker:
    """A result the harvest saw running: still polled (``state/harvest/unfinished/``) or
    reported stuck (``state/harvest/stuck/``: running past the maximum age)."""

    result: str
    day: str  # upload day in SCA's zone, or ``unknown``
    stuck: bool


def markers(store: ObjectStore, zone: ZoneInfo, days: DayRange, progress: Progress = _no_progress) -> list[Marker]:
    """The running and stuck results of the range, by upload day. One read per marker: they
    are few (the tasks in flight), and the harvest forgets a marker once its result is written."""
    from qcflow.harvest.state import stuck_key, stuck_results, unfinished_key, unfinished_results

    found: list[Marker] = []
    seen = 0
    for key_of, results, stuck in ((unfinished_key, unfinished_results, False), (stuck_key, stuck_results, True)):
        for result in results(store):
            try:
                record = journal.read(store, key_of(result))
            except QcflowError as exc:
                raise ReportError(f"could not read the marker of {result!r} in {store.url}: {exc}") from exc
            seen += 1
            if seen % 20 == 0:
                progress("running", seen, None)
            if record is None:
                continue  # finished and forgotten between the listing and the read
            upload = record.get("upload_time")
            day = "unknown"
            if isinstance(upload, (int, float)) and not isinstance(upload, bool) and upload > 0:
                day = datetime.fromtimestamp(upload, zone).date().isoformat()
            if days.holds(day):
                found.append(Marker(result, day, stuck))
    progress("running", seen, seen)
    return found
