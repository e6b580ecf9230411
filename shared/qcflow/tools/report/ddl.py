"""The analytics hand-off: MaxCompute external tables over ``results/`` and ``reviews/``, the
``qcflow_latest`` view over both (``qcflow.tools.report.latest``), and DuckDB queries.

The columns are the JSONL schema of ``qcflow.harvest.records`` (``schema_version`` 1), in
its order. Nested columns are typed from the models the API client parses the same answers
with (``qcflow.models.sca``: ``Agent``, ``Recording``, ``HitRule``…), so the DDL and the
models cannot drift apart silently; a test checks the columns against ``to_record``.

What is left out, on purpose: open-ended objects (``hit_result[].conditions``,
``review_history[].review_right_rule``, ``recording.remark*`` and any field the service adds,
see the records docstring). MaxCompute's JSON SerDe skips keys a table does not declare, so
they cost nothing; DuckDB reads them from the same files.

Facts taken from MaxCompute's "JSON external tables" page: ``ROW FORMAT SERDE
'org.apache.hive.hcatalog.data.JsonSerDe' STORED AS TEXTFILE``, missing keys read as NULL,
extra keys discarded, ``LOCATION 'oss://<endpoint>/<bucket>/<path>/'`` with an internal
endpoint in the project's region, ``odps.properties.rolearn`` for the role MaxCompute
assumes, ``MSCK REPAIR TABLE … ADD PARTITIONS`` to register ``dt=…/hour=…`` directories.
UNCONFIRMED: whether ``.jsonl.gz`` parts (``QCFLOW_HARVEST_GZIP``) are decompressed by suffix.
"""

from __future__ import annotations

import re
import types
import typing
from typing import Any, Union

from pydantic import BaseModel

from qcflow.errors import ConfigError
from qcflow.models.sca_result import Agent, AsrSentence, HitRule, HitScore, Recording, ReviewHistory

#: The JSONL's top-level keys (``to_record``'s order) with their MaxCompute type and meaning.
COLUMNS: tuple[tuple[str, Any, str], ...] = (
    ("schema_version", "BIGINT", "1 for this layout"),
    ("task_id", "STRING", "SCA taskId (one upload of several recordings shares it)"),
    ("status", "BIGINT", "SCA status: 1 finished, other non-zero failed"),
    ("state", "STRING", "finished | failed"),
    ("call_id", "STRING", "Recording.Id: the callId sent at upload (the CCC ContactId)"),
    ("contact_id", "STRING", "the CCC ContactId (same as call_id): join key to CCC and the push ledger"),
    ("object_key", "STRING", "Recording.Name: the object key of the recording"),
    ("upload_time", "STRING", "upload time, ISO 8601 with the offset of the SCA time zone"),
    ("score", "DOUBLE", "inspection score"),
    ("error_message", "STRING", "why a failed task failed"),
    ("review_status", "BIGINT", "0 not reviewed, 1 reviewed"),
    ("review_result", "BIGINT", "review result"),
    ("reviewer", "STRING", "reviewer"),
    ("review_time", "STRING", "review time, ISO 8601 (or as SCA sent it)"),
    ("review_type", "BIGINT", "ReviewType: 1 automatic review, 2 by a person"),
    ("comments", "STRING", "review comments"),
    ("resolver", "STRING", "resolver"),
    ("agent", Agent, "the agent: id, name, skill_group"),
    ("recording", Recording, "the recording (URL without its query string; caller, callee per QCFLOW_PII)"),
    ("hit_result", list[HitRule], "rules hit, with their hits"),
    ("hit_score", list[HitScore], "score items per rule"),
    ("asr_result", list[AsrSentence], "the transcript, sentence by sentence (personal numbers per QCFLOW_PII)"),
    ("review_history", list[ReviewHistory], "review history"),
    ("scheme_ids", list[int], "inspection scheme ids"),
    ("scheme_names", list[str], "inspection scheme names"),
    ("harvested_at", "STRING", "when qcflow wrote the line (UTC, ISO 8601)"),
)
#: Fields the service sends that the latest view needs (``vid`` identifies a result without a
#: Recording): declared after the schema's own. (``review_type`` is in the schema itself: every
#: row, of results/ and reviews/, carries it.)
EXTRA_COLUMNS: tuple[tuple[str, Any, str], ...] = (
    ("vid", "STRING", "Vid: identifies a result that has no Recording.Id"),
)
PARTITIONS = (("dt", "upload day in the SCA time zone, YYYY-MM-DD (or unknown)"), ("hour", "upload hour there, HH"))
REVIEW_PARTITIONS = (("dt", "review day in the SCA time zone, YYYY-MM-DD"), ("hour", "review hour there, HH"))

_TABLE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,127}$")
_SCALARS: dict[Any, str] = {str: "STRING", int: "BIGINT", float: "DOUBLE", bool: "BOOLEAN"}

DUCKDB_EXAMPLE = """\
-- Average score and volume per agent, worst first, over the local results folder
SELECT agent.name AS agent, agent.skill_group AS skill_group,
       count(*) AS calls, round(avg(score), 1) AS avg_score
FROM read_json('qcflow-data/results/*/*/*.jsonl*',
               hive_partitioning = true, hive_types = {'dt': 'VARCHAR', 'hour': 'VARCHAR'})
WHERE state = 'finished' AND dt BETWEEN '2026-11-01' AND '2026-11-30'
GROUP BY ALL
ORDER BY avg_score;
"""


def quote(name: str) -> str:
    """Every name back-quoted: ``from``, ``to``, ``end`` and ``type`` are reserved words."""
    return f"`{name}`"


def type_of(annotation: Any) -> str | None:
    """The MaxCompute type of a model annotation; ``None`` for an open-ended one (``dict``, ``Any``)."""
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        inner = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(inner) != 1:
            return "STRING"  # int | str ids: text holds both
        return type_of(inner[0])
    if origin is list:
        (item,) = typing.get_args(annotation) or (Any,)
        inner_type = type_of(item)
        return f"ARRAY<{inner_type}>" if inner_type else None
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        fields = [(name, type_of(info.annotation)) for name, info in annotation.model_fields.items()]
        declared = [f"{quote(key_of(name))}:{kind}" for name, kind in fields if kind]
        return f"STRUCT<{', '.join(declared)}>" if declared else None
    if isinstance(annotation, str):
        return annotation
    return _SCALARS.get(annotation)


def key_of(field_name: str) -> str:
    """The JSONL key of a model field (``from_`` → ``from``: the records are snake_case)."""
    return field_name.rstrip("_")


def column_types() -> list[tuple[str, str, str]]:
    """(column, MaxCompute type, comment) of every top-level key, then the extra ones."""
    out = []
    known = {name for name, _, _ in COLUMNS}
    for name, annotation, comment in (*COLUMNS, *(c for c in EXTRA_COLUMNS if c[0] not in known)):
        kind = type_of(annotation)
        if kind is None:  # pragma: no cover - every top-level column has a type
            raise AssertionError(f"no MaxCompute type for {name}")
        out.append((name, kind, comment))
    return out


def _sql_text(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def oss_location(store_url: str, region: str, endpoint: str | None = None) -> str:
    """``oss://<endpoint>/<bucket>/<prefix>/results/`` of an ``oss://`` store (the region's
    internal endpoint by default: MaxCompute reads OSS from inside Alibaba Cloud)."""
    from qcflow.store import parse_store_url

    kind, bucket, prefix = parse_store_url(store_url)
    if kind != "oss":
        raise ConfigError(
            f"QCFLOW_STORE={store_url!r} is not an oss:// store: pass --location oss://<endpoint>/<bucket>/<prefix>/results/"
        )
    host = (endpoint or f"oss-{region}-internal.aliyuncs.com").split("://", 1)[-1].rstrip("/")
    path = "/".join(part for part in (bucket, prefix, "results") if part)
    return f"oss://{host}/{path}/"


def _name(option: str, name: str) -> str:
    if not _TABLE_NAME.match(name):
        raise ConfigError(f"{option} {name!r}: letters, digits and _ only, starting with a letter (at most 128)")
    return name


def _location(option: str, location: str) -> str:
    if not location.startswith("oss://"):
        raise ConfigError(f"{option} {location!r}: MaxCompute reads oss://<endpoint>/<bucket>/<path>/")
    return location if location.endswith("/") else location + "/"


def reviews_location_of(location: str) -> str:
    """``…/results/`` → ``…/reviews/``: the sibling folder (the harvest writes both trees side
    by side under one store prefix)."""
    base = location.rstrip("/")
    parent = base.rsplit("/", 1)[0]
    return f"{parent}/reviews/"


def _external_table(table: str, location: str, role_arn: str | None, *, comment: str, partitions: Any) -> str:
    columns = column_types()
    width = max(len(quote(name)) for name, _, _ in columns)
    lines = [f"  {quote(name).ljust(width)} {kind} COMMENT {_sql_text(text)}" for name, kind, text in columns]
    parts = ", ".join(f"{quote(name)} STRING COMMENT {_sql_text(text)}" for name, text in partitions)
    serde = f"WITH SERDEPROPERTIES ('odps.properties.rolearn' = {_sql_text(role_arn)})\n" if role_arn else ""
    return (
        f"CREATE EXTERNAL TABLE IF NOT EXISTS {quote(table)} (\n"
        + ",\n".join(lines)
        + f"\n)\nCOMMENT {_sql_text(comment)}\n"
        f"PARTITIONED BY ({parts})\n"
        "ROW FORMAT SERDE 'org.apache.hive.hcatalog.data.JsonSerDe'\n"
        f"{serde}"
        "STORED AS TEXTFILE\n"
        f"LOCATION {_sql_text(location)};\n"
    )


def maxcompute_ddl(
    *,
    table: str = "qcflow_results",
    location: str,
    role_arn: str | None = None,
    reviews_table: str = "qcflow_reviews",
    reviews_location: str | None = None,
    view: str = "qcflow_latest",
    zone: str = "Asia/Shanghai",
) -> str:
    """``CREATE EXTERNAL TABLE`` over ``results/`` and ``reviews/``, the statements that find
    their partitions, and the view of every task's current row over both."""
    from qcflow.tools.report.latest import maxcompute_view

    _name("--table", table)
    _name("--reviews-table", reviews_table)
    _name("--view", view)
    if len({table, reviews_table, view}) < 3:
        raise ConfigError(f"--table, --reviews-table and --view must differ: {table}, {reviews_table}, {view}")
    location = _location("--location", location)
    reviews_location = _location("--reviews-location", reviews_location or reviews_location_of(location))
    results_ddl = _external_table(
        table,
        location,
        role_arn,
        comment="qcflow: Smart Conversation Analysis results harvested as JSONL",
        partitions=PARTITIONS,
    )
    reviews_ddl = _external_table(
        reviews_table,
        reviews_location,
        role_arn,
        comment="qcflow: one row per review, the whole result as it stood after it",
        partitions=REVIEW_PARTITIONS,
    )
    names = [name for name, _, _ in column_types()]
    return (
        "-- qcflow results (JSONL schema_version 1) as a MaxCompute external table.\n"
        "-- Objects: results/dt=YYYY-MM-DD/hour=HH/part-*.jsonl, one JSON object per line "
        "(upload time, SCA time zone).\n"
        "-- Not declared, so skipped by the SerDe: hit_result[].conditions, review_history[].review_right_rule,\n"
        "-- recording.remark* and fields the service adds (DuckDB reads them from the same files).\n"
        "-- Personal numbers in every string are masked with * (length kept), caller/callee masked or\n"
        "-- HMAC-SHA256 hex per QCFLOW_PII when harvested (docs/harvest.md: Personal data).\n"
        + (
            ""
            if role_arn
            else "-- Reading OSS with a RAM role: add WITH SERDEPROPERTIES ('odps.properties.rolearn' = "
            "'acs:ram::<uid>:role/<role>') (qcflow ddl maxcompute --role-arn …).\n"
        )
        + results_ddl
        + "\n-- Register the dt=/hour= directories present now (run again as new hours land):\n"
        f"MSCK REPAIR TABLE {quote(table)} ADD PARTITIONS;\n"
        "\n-- qcflow reviews: the same columns, one row per review (reviews/dt=YYYY-MM-DD/hour=HH: review time).\n"
        + reviews_ddl
        + f"MSCK REPAIR TABLE {quote(reviews_table)} ADD PARTITIONS;\n\n"
        + maxcompute_view(view=view, results=table, reviews=reviews_table, columns=names, zone=zone)
    )
