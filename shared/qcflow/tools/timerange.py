"""The CLI's one rule for times: a time without an offset is in SCA's zone (``QCFLOW_SCA_TIME_ZONE``).

SCA names its times in its own zone and the results are partitioned by days of that zone
(``dt=``), so an operator who writes ``--since 2026-12-04`` means that day *there*, for every
command: ``harvest --since/--until`` (upload times), ``report --since/--until`` (partition days).
A date alone is midnight there; as an end (``--until DATE``) it includes that whole day, i.e.
the range ends at the next midnight. A time with an offset (``Z``, ``+08:00``) is taken as
written. Every summary echoes the range it used (``describe``), in the zone and in UTC.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone, tzinfo

from qcflow.errors import ConfigError

_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class TimeRangeError(ConfigError):
    """A ``--since``/``--until`` that cannot be meant (unreadable, or an empty range): one line."""


def parse_day(text: str | None, option: str) -> date | None:
    """``YYYY-MM-DD`` (a day in SCA's zone), or None for nothing."""
    if text is None or not text.strip():
        return None
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise TimeRangeError(f"{option} {text!r} is not a date (YYYY-MM-DD, a day in SCA's time zone)") from None


def parse_moment(text: str | None, option: str, *, zone: tzinfo, end: bool = False) -> datetime | None:
    """An aware time from ``YYYY-MM-DD`` or ISO 8601; without an offset, in ``zone``.

    ``end``: a date alone is the end of that day (the next midnight in ``zone``), so that
    ``--until 2026-12-04`` includes the whole 4th.
    """
    if text is None or not text.strip():
        return None
    value = text.strip()
    if _DATE_ONLY.match(value):
        day = parse_day(value, option)
        assert day is not None
        if end:
            day += timedelta(days=1)
        return datetime.combine(day, time(0), tzinfo=zone)
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise TimeRangeError(
            f"{option} {text!r} is not a date or an ISO 8601 time (2026-12-04, 2026-12-04T08:00, "
            "2026-12-04T08:00:00+08:00; without an offset: SCA's time zone)"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=zone)


@dataclass(frozen=True)
class TimeRange:
    """``[since, until)`` in aware times; ``None`` leaves an end open."""

    since: datetime | None
    until: datetime | None
    zone: tzinfo

    @classmethod
    def parse(cls, since: str | None, until: str | None, *, zone: tzinfo) -> TimeRange:
        """Both ends by the one rule; ``--since`` at or after ``--until`` is refused, naming both."""
        start = parse_moment(since, "--since", zone=zone)
        end = parse_moment(until, "--until", zone=zone, end=True)
        if start is not None and end is not None and start >= end:
            raise TimeRangeError(
                f"--since {since} is after --until {until}: the range "
                f"{describe(start, end, zone)} is empty (a date alone means the whole day in {zone})"
            )
        return cls(start, end, zone)

    def describe(self) -> str:
        return describe(self.since, self.until, self.zone)


def _show(moment: datetime, zone: tzinfo) -> str:
    local = moment.astimezone(zone)
    text = local.strftime("%Y-%m-%d %H:%M:%S").removesuffix(":00").removesuffix(" 00:00")
    return text


def describe(since: datetime | None, until: datetime | None, zone: tzinfo) -> str:
    """``[2026-12-04, 2026-12-05) Asia/Shanghai (2026-12-03T16:00:00Z to 2026-12-04T16:00:00Z)``:
    the range in SCA's zone, then in UTC, so that nobody has to guess which one was used."""
    if since is None and until is None:
        return "no range"

    def utc(moment: datetime | None) -> str:
        if moment is None:
            return "…"
        return moment.astimezone(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")

    left = _show(since, zone) if since is not None else "…"
    right = _show(until, zone) if until is not None else "…"
    return f"[{left}, {right}) {zone} ({utc(since)} to {utc(until)})"
