"""A task's current row: the one definition the report, the docs and the MaxCompute view share.

Why a definition at all: a task has one ``results/`` row (written when it finished) and one
``reviews/`` row per review qcflow saw (the whole result as it stood after that review). Its
*current* row — what the SCA console shows now, with the final score — is the latest of them:

1. **Identity**: ``task_id`` with ``call_id`` (``Recording.Id``), else ``vid``, else nothing —
   ``qcflow.harvest.records.result_id``: one upload of several recordings shares a taskId.
2. **Order**: ``review_time`` as an instant, latest first. Text with a numeric offset (what
   qcflow writes from ``ReviewTimeLong``: ``2026-11-21T09:00:00+08:00``) is read with it; any
   other text (SCA's ``ReviewTime`` as sent, ``2019-07-24T19:31Z`` or ``2019-10-28 15:21:00``)
   is a wall time in SCA's zone (``QCFLOW_SCA_TIME_ZONE``), as the harvest reads
   ``CreateTime``. No review time, or an unreadable one, is the oldest.
3. **Ties**: the ``reviews/`` row wins over the ``results/`` row (a results row written after
   a review carries that review's time and content), then the later ``harvested_at``, then
   the later file name (so that the answer never depends on reading order).

``DUCKDB_LATEST`` is that definition as one DuckDB query over a local copy of the store (the
docs quote it; a test runs it and checks it against the report); ``qcflow ddl duckdb`` prints
it for another folder or zone. The report builds its own ``latest`` table from the same
fragments (``IDENTITY``, ``order_sql``), and ``maxcompute_view`` writes the same order in
MaxCompute SQL.
"""

from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo

from qcflow.errors import ConfigError

DEFAULT_FOLDER = "qcflow-data"
DEFAULT_ZONE = "Asia/Shanghai"
SOURCES = ("results", "reviews")

#: The columns that say which task a row belongs to (``result_id``'s parts).
IDENTITY = "task_id, coalesce(nullif(CAST(call_id AS VARCHAR), ''), nullif(CAST(vid AS VARCHAR), ''), '')"
#: An offset at the end of a time of day: the text names its own instant.
_OFFSET = r":\d\d(\.\d+)?[+-]\d\d(:?\d\d)?$"


def instant_sql(column: str, zone: str) -> str:
    """DuckDB: ``column`` (text, or a timestamp DuckDB detected) as a ``TIMESTAMPTZ`` or NULL."""
    text = f"CAST({column} AS VARCHAR)"
    return (
        f"CASE WHEN regexp_matches({text}, '{_OFFSET}') THEN TRY_CAST({text} AS TIMESTAMPTZ)\n"
        f"         ELSE timezone('{_zone(zone)}', TRY_CAST(rtrim({text}, 'Z') AS TIMESTAMP)) END"
    )


def order_sql(zone: str) -> str:
    """DuckDB ``ORDER BY`` of a task's rows, its current row first."""
    return (
        f"{instant_sql('review_time', zone)} DESC NULLS LAST,\n"
        "    source = 'reviews' DESC, CAST(harvested_at AS VARCHAR) DESC NULLS LAST, filename DESC"
    )


def _zone(zone: str) -> str:
    try:
        ZoneInfo(zone)
    except (ValueError, KeyError, OSError) as exc:
        raise ConfigError(f"{zone!r} is not an IANA time zone") from exc
    return zone


def _folder(folder: str) -> str:
    folder = folder.rstrip("/") or "."
    if "'" in folder:
        raise ConfigError(f"--folder {folder!r}: a quote cannot be part of the folder")
    return folder


def duckdb_latest(folder: str = DEFAULT_FOLDER, zone: str = DEFAULT_ZONE) -> str:
    """The current row of every task under ``folder`` (a local store: ``results/``, ``reviews/``)."""
    return f"""\
-- qcflow latest: every task's current row, the latest of its results/ row and its reviews/ rows
-- (source says which). Order: review_time as an instant (none = oldest), then the reviews/ row,
-- then the later harvested_at. Text review times without an offset are read in {zone}.
WITH rows AS (
  SELECT *, regexp_extract(filename, '([^/]+)/dt=[^/]*/hour=[^/]*/(_compact/)?[^/]*$', 1) AS source
  FROM read_json('{_folder(folder)}/*/dt=*/hour=*/**/*.jsonl*', filename = true, union_by_name = true,
                 hive_partitioning = true, hive_types = {{'dt': 'VARCHAR', 'hour': 'VARCHAR'}})
  UNION ALL BY NAME SELECT NULL::VARCHAR AS vid, NULL::BIGINT AS review_type WHERE false
)
SELECT * EXCLUDE (filename) FROM rows
WHERE source IN ('results', 'reviews')
QUALIFY row_number() OVER (
  PARTITION BY {IDENTITY}
  ORDER BY {order_sql(_zone(zone))}) = 1;
"""


DUCKDB_LATEST = duckdb_latest()


# ------------------------------------------------------------------------------ MaxCompute


def _offset_minutes(zone: str, at: datetime | None = None) -> int:
    """The zone's UTC offset now (minutes): how the view reads a review time sent without one."""
    moment = (at or datetime.now(timezone.utc)).astimezone(ZoneInfo(_zone(zone)))
    offset = moment.utcoffset()
    return int(offset.total_seconds() // 60) if offset is not None else 0


def maxcompute_instant(column: str, zone: str) -> str:
    """MaxCompute: ``column`` (ISO 8601 text) as a DATETIME in UTC wall time, or NULL.

    ``TO_DATE`` reads the wall time (``yyyy-mm-dd hh:mi[:ss]``, ``T`` or a space between);
    a trailing ``±hh:mm`` is subtracted, any other text is read in ``zone`` (its offset today:
    a zone with summer time is an hour off for times on the other side of a switch)."""
    wall = (
        f"TO_DATE(CONCAT(SUBSTR({column}, 1, 10), ' ', SUBSTR({column}, 12, 5), ':', "
        f"CASE WHEN SUBSTR({column}, 17, 1) = ':' THEN SUBSTR({column}, 18, 2) ELSE '00' END), "
        "'yyyy-mm-dd hh:mi:ss')"
    )
    offset = (
        f"CASE WHEN {column} RLIKE '[+-][0-9]{{2}}:[0-9]{{2}}$' THEN "
        f"(CASE WHEN SUBSTR({column}, -6, 1) = '-' THEN -1 ELSE 1 END) * "
        f"(CAST(SUBSTR({column}, -5, 2) AS BIGINT) * 60 + CAST(SUBSTR({column}, -2, 2) AS BIGINT)) "
        f"ELSE {_offset_minutes(zone)} END"
    )
    return f"DATEADD({wall}, -({offset}), 'mi')"


def maxcompute_view(*, view: str, results: str, reviews: str, columns: list[str], zone: str) -> str:
    """``CREATE OR REPLACE VIEW`` of every task's current row over the two external tables."""
    quoted = [f"`{name}`" for name in columns]
    listed = ", ".join(quoted)
    every = [*quoted, "`dt`", "`hour`"]
    instant = maxcompute_instant("`review_time`", zone)
    return (
        f"-- {view}: every task's current row (the latest of its results/ row and its reviews/ rows;\n"
        "-- source says which). Same order as the docs' DuckDB query: review_time as an instant (none = oldest),\n"
        "-- then the reviews/ row, then the later harvested_at.\n"
        f"CREATE OR REPLACE VIEW `{view}` AS\n"
        f"SELECT {', '.join(every)}, `source`\n"
        "FROM (\n"
        f"  SELECT {', '.join(f'u.{c}' for c in every)}, u.`source`,\n"
        "         ROW_NUMBER() OVER (\n"
        "           PARTITION BY u.`task_id`, COALESCE(u.`call_id`, u.`vid`, '')\n"
        "           ORDER BY CASE WHEN u.`instant` IS NULL THEN 0 ELSE 1 END DESC, u.`instant` DESC,\n"
        "                    u.`source_rank` DESC, u.`harvested_at` DESC) AS `rn`\n"
        "  FROM (\n"
        f"    SELECT {listed}, `dt`, `hour`, 'results' AS `source`, 0 AS `source_rank`, {instant} AS `instant`\n"
        f"    FROM `{results}`\n"
        "    UNION ALL\n"
        f"    SELECT {listed}, `dt`, `hour`, 'reviews' AS `source`, 1 AS `source_rank`, {instant} AS `instant`\n"
        f"    FROM `{reviews}`\n"
        "  ) u\n"
        ") t\n"
        "WHERE `rn` = 1;\n"
    )
