"""Aggregate the JSONL with DuckDB: one typed table of the fields the page needs, then SQL.

Why DuckDB: it reads newline-delimited JSON and gzip natively, in parallel, with hive
partitions (``dt``/``hour`` come from the path), so 100,000 results of ~5 KB each are read
and aggregated in seconds without a hand-written loop over records — and the same engine
is what an analyst points at the same files (``ddl.DUCKDB_EXAMPLE``).

Why every field is read as text or JSON and cast in SQL (``TRY_CAST``, ``json_type``): the
report must survive odd records — a missing key, a number sent as a string, an agent that is
not an object — with a count of what was missing, not a crash. Declaring ``columns`` also
keeps the reader from inferring (and choking on) a schema from the first lines, and lets it
skip the heavy fields (transcripts) without building them.

Semantics (the page and the test both rely on them):

- a result's *state* is its ``state`` field if ``finished``/``failed``, else derived from
  ``status`` (1 finished, other non-zero failed); anything else is ``unknown``;
- agent, skill group, score, review status and rules are figures over **finished** results;
  an agent is known by its id (else its name); a rule by its ``rid`` (else its name), and
  counts once per call however often it is listed;
- *running* and *stuck* come from the harvest's markers, by upload day, minus any result
  already in the JSONL (a marker left behind by a crash).

Just over 400 lines: the figures' SQL lives here as named constants, one per figure, beside the
functions that run them; split from them it would be harder to check a figure against its query.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from qcflow.tools.report.latest import DEFAULT_ZONE, IDENTITY, instant_sql, order_sql
from qcflow.tools.report.reviews import review_figures
from qcflow.tools.report.source import Marker, Progress, ReportError, _no_progress

#: The fields read from each line (everything else — transcripts, hit details — is skipped).
COLUMNS = {
    "task_id": "VARCHAR",
    "status": "VARCHAR",
    "state": "VARCHAR",
    "call_id": "VARCHAR",
    "contact_id": "VARCHAR",
    "vid": "VARCHAR",
    "upload_time": "VARCHAR",
    "score": "VARCHAR",
    "error_message": "VARCHAR",
    "review_status": "VARCHAR",
    "review_result": "VARCHAR",
    "reviewer": "VARCHAR",
    "resolver": "VARCHAR",
    "review_time": "VARCHAR",
    "harvested_at": "VARCHAR",
    "agent": "JSON",
    "hit_result": "JSON",
    "review_history": "JSON",
}
LOWEST = 20
TOP_RULES = 15
TOP_FAILURES = 10
NO_AGENT = "(no agent)"
NO_SKILL_GROUP = "(no skill group)"
NO_MESSAGE = "(no message)"
#: ``ReviewStatus`` as SCA's GetResult documents it (0 not reviewed, 1 reviewed; its query's
#: ``reviewStatus`` adds 3 in appeal, 4 appeal upheld, 5 appeal rejected).
REVIEW_LABELS = {0: "not reviewed", 1: "reviewed", 3: "in appeal", 4: "appeal upheld", 5: "appeal rejected"}
_MAX_OBJECT_BYTES = 16 * 1024 * 1024


@dataclass
class ReportData:
    """Everything the page shows, as plain values (also embedded in the page as JSON)."""

    range: dict[str, str | None]
    generated_at: str
    store: str
    counts: dict[str, int]
    per_day: list[dict[str, Any]] = field(default_factory=list)
    score_bins: list[dict[str, Any]] = field(default_factory=list)
    score_summary: dict[str, float | int | None] = field(default_factory=dict)
    agents: list[dict[str, Any]] = field(default_factory=list)
    skill_groups: list[dict[str, Any]] = field(default_factory=list)
    rules: list[dict[str, Any]] = field(default_factory=list)
    review_status: list[dict[str, Any]] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    lowest: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: ``qcflow.tools.report.reviews.review_figures`` (empty until computed).
    reviews: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def empty(self) -> bool:
        return self.counts["results"] == 0 and self.counts["running"] == 0 and self.counts["stuck"] == 0


def _read_sql(source: str, files: bool) -> str:
    """The lines of one tree (``results``/``reviews``), typed, each with its file and tree."""
    columns = ", ".join(f"'{name}': '{kind}'" for name, kind in COLUMNS.items())
    if not files:
        typed = ", ".join(f"NULL::{kind} AS {name}" for name, kind in COLUMNS.items())
        return f"SELECT NULL::VARCHAR AS dt, NULL::VARCHAR AS filename, '{source}' AS source, {typed} WHERE false"
    return (
        f"SELECT *, '{source}' AS source FROM read_json(${source}, format = 'newline_delimited', "
        f"columns = {{{columns}}}, filename = true, "
        f"hive_partitioning = true, hive_types = {{'dt': 'VARCHAR', 'hour': 'VARCHAR'}}, "
        f"compression = 'auto_detect', maximum_object_size = {_MAX_OBJECT_BYTES})"
    )


#: Every line of both trees, typed, with ``in_range`` on the rows of tasks uploaded in the range.
#: ``latest`` numbers each task's current row (the definition the docs' DuckDB query and the
#: MaxCompute view share) and ``results`` is the current rows in range: every figure of the page
#: is over final scores.
_ROWS = """
CREATE TEMP TABLE rows AS
WITH raw AS (
  {read_results}
  UNION ALL BY NAME
  {read_reviews}
), typed AS (
  SELECT *, TRY_CAST(status AS BIGINT) AS status_n, TRY_CAST(score AS DOUBLE) AS score_d,
         CASE WHEN json_type(agent) = 'OBJECT' THEN agent END AS agent_o,
         CASE WHEN source = 'results' THEN coalesce(dt, 'unknown')
              ELSE coalesce(nullif(regexp_extract(upload_time, '^([0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}})', 1), ''),
                            'unknown') END AS day_
  FROM raw
)
SELECT
  source,
  call_id, vid, review_time, harvested_at, filename,
  day_ AS day,
  day_ <> 'unknown' AND day_ >= $since AND day_ <= $until OR NOT $bounded AS in_range,
  {instant} AS review_at,
  TRY_CAST(upload_time AS TIMESTAMPTZ) AS upload_at,
  review_time IS NOT NULL AS has_review_time,
  TRY_CAST(review_result AS BIGINT) AS review_result,
  coalesce(nullif(resolver, ''), nullif(reviewer, '')) AS review_by,
  CASE WHEN json_type(review_history) = 'ARRAY' THEN review_history END AS review_history,
  CASE WHEN state IN ('finished', 'failed') THEN state
       WHEN status_n = 1 THEN 'finished'
       WHEN status_n IS NOT NULL AND status_n <> 0 THEN 'failed'
       ELSE 'unknown' END AS state,
  nullif(task_id, '') AS task_id,
  coalesce(nullif(contact_id, ''), nullif(call_id, '')) AS contact_id,
  coalesce(task_id, '') || '|' || coalesce(nullif(call_id, ''), nullif(vid, ''), '') AS result_id,
  upload_time,
  CASE WHEN isfinite(score_d) THEN score_d END AS score,
  nullif(error_message, '') AS error_message,
  TRY_CAST(review_status AS BIGINT) AS review_status,
  review_status IS NOT NULL AND TRY_CAST(review_status AS BIGINT) IS NULL AS review_status_odd,
  nullif(json_extract_string(agent_o, '$.id'), '') AS agent_id,
  nullif(json_extract_string(agent_o, '$.name'), '') AS agent_name,
  nullif(json_extract_string(agent_o, '$.skill_group'), '') AS skill_group,
  -- only the three fields of each hit the page needs: the hits' details never stay in memory
  CASE WHEN json_type(hit_result) = 'ARRAY' THEN list_transform(
    list_filter(json_extract(hit_result, '$[*]'), lambda h: json_type(h) = 'OBJECT'),
    lambda h: {{'rule_id': nullif(json_extract_string(h, '$.rid'), ''),
                'rule_name': nullif(json_extract_string(h, '$.name'), ''),
          'rule_type': nullif(json_extract_string(h, '$.type'), '')}}) END AS hits,
  hit_result IS NULL AS no_hit_result
FROM typed
"""
#: Each task's current row, by its number: the window sorts a few narrow columns, not the rows.
_LATEST = (
    "CREATE TEMP TABLE latest AS SELECT rowid AS n FROM rows "
    "QUALIFY row_number() OVER (PARTITION BY {identity} ORDER BY {order}) = 1"
)
_RESULTS = (
    "CREATE TEMP VIEW results AS SELECT rowid AS n, * FROM rows WHERE in_range AND rowid IN (SELECT n FROM latest)"
)

_HITS = """
CREATE TEMP TABLE hits AS
SELECT n, i, h.rule_id, h.rule_name, h.rule_type
FROM (SELECT n, unnest(hits) AS h, generate_subscripts(hits, 1) AS i
      FROM results WHERE state = 'finished' AND hits IS NOT NULL)
WHERE coalesce(h.rule_id, h.rule_name) IS NOT NULL
"""


def _rows(con: Any, sql: str, params: Sequence[Any] | dict[str, Any] | None = None) -> list[dict[str, Any]]:
    cursor = con.execute(sql, params) if params is not None else con.execute(sql)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=False)) for row in cursor.fetchall()]


def _load(
    con: Any, paths: list[Path], reviews: list[Path], range_: dict[str, str | None], zone: str, progress: Progress
) -> None:
    """Read the parts into ``rows`` on a worker thread while this one reports DuckDB's own
    progress (``query_progress`` is meant to be polled from another thread)."""
    sql = _ROWS.format(
        read_results=_read_sql("results", bool(paths)),
        read_reviews=_read_sql("reviews", bool(reviews)),
        instant=instant_sql("review_time", zone),
    )
    since, until = range_.get("since"), range_.get("until")
    params: dict[str, Any] = {"since": since or "", "until": until or "\uffff", "bounded": bool(since or until)}
    if paths:
        params["results"] = [str(p) for p in paths]
    if reviews:
        params["reviews"] = [str(p) for p in reviews]
    failure: list[BaseException] = []

    def work() -> None:
        try:
            con.execute(sql, params)
            con.execute(_LATEST.format(identity=IDENTITY, order=order_sql(zone)))
            con.execute(_RESULTS)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            failure.append(exc)

    worker = threading.Thread(target=work, name="qcflow-report-load", daemon=True)
    worker.start()
    try:
        while worker.is_alive():
            worker.join(0.2)
            try:
                done = con.query_progress()
            except Exception:  # noqa: BLE001 - progress is a nicety
                done = -1
            if done is not None and done >= 0:
                progress("loading", int(done), 100)
    except BaseException:  # Ctrl-C: stop the query before the connection is closed under it
        con.interrupt()
        worker.join(10)
        raise
    if failure:
        import duckdb

        exc = failure[0]
        if isinstance(exc, (duckdb.IOException, duckdb.InvalidInputException, duckdb.ConversionException)):
            raise ReportError(f"could not read the results as JSONL: {str(exc).splitlines()[0]}") from exc
        raise exc
    progress("loading", 100, 100)


def aggregate(
    paths: list[Path],
    markers: list[Marker],
    *,
    reviews: Sequence[Path] = (),
    zone: str = DEFAULT_ZONE,
    range_: dict[str, str | None],
    generated_at: str,
    store: str,
    files: int,
    progress: Progress = _no_progress,
    threads: int | None = None,
) -> ReportData:
    """Every figure of the page, computed by DuckDB from the parts at ``paths`` (``results/``)
    and ``reviews`` (``reviews/``), over each task's current row."""
    import duckdb

    con = duckdb.connect(":memory:")
    try:
        con.execute("SET enable_progress_bar = true")
        con.execute("SET enable_progress_bar_print = false")
        con.execute("SET preserve_insertion_order = false")  # measured: a fifth less peak memory on 100,000 results
        if threads:
            con.execute(f"SET threads = {int(threads)}")
        _load(con, paths, list(reviews), range_, zone, progress)
        row = con.execute("SELECT count(*) FROM rows").fetchone()
        loaded = row[0] if row else 0
        progress("records", loaded, loaded)
        con.execute(_HITS)
        con.execute("CREATE TEMP TABLE markers (result_id VARCHAR, day VARCHAR, stuck BOOLEAN)")
        if markers:
            con.executemany("INSERT INTO markers VALUES (?, ?, ?)", [(m.result, m.day, m.stuck) for m in markers])
        con.execute(
            "CREATE TEMP TABLE live AS SELECT * FROM markers WHERE result_id NOT IN (SELECT result_id FROM rows)"
        )
        return _figures(con, range_=range_, generated_at=generated_at, store=store, files=files)
    finally:
        con.close()


def _figures(con: Any, *, range_: dict[str, str | None], generated_at: str, store: str, files: int) -> ReportData:
    """Every figure of the page, one query (or one small function) each."""
    counts = _counts(con, files)
    data = ReportData(range=range_, generated_at=generated_at, store=store, counts=counts)
    data.per_day = _rows(con, _PER_DAY)
    data.score_bins = _score_bins(con)
    data.score_summary = _rows(con, _SCORE_SUMMARY)[0]
    data.agents = _rows(con, _AGENTS)
    data.skill_groups = _rows(con, _SKILL_GROUPS)
    data.rules = _rules(con, finished=counts["finished"])
    data.review_status = _review_status(con)
    data.failures = _rows(con, _FAILURES)
    data.lowest = _lowest(con)
    data.notes = _notes(con, counts)
    data.reviews = review_figures(con)
    _finite(data)
    return data


_TOTALS = """
    SELECT count(*) AS results,
           count(*) FILTER (WHERE state = 'finished') AS finished,
           count(*) FILTER (WHERE state = 'failed') AS failed,
           count(*) FILTER (WHERE state = 'unknown') AS unknown
    FROM results"""
_LIVE = "SELECT count(*) FILTER (WHERE NOT stuck) AS running, count(*) FILTER (WHERE stuck) AS stuck FROM live"
_PER_DAY = """
    WITH r AS (SELECT day, count(*) FILTER (WHERE state = 'finished') AS finished,
                      count(*) FILTER (WHERE state = 'failed') AS failed,
                      count(*) FILTER (WHERE state = 'unknown') AS unknown
               FROM results GROUP BY day),
         m AS (SELECT day, count(*) FILTER (WHERE NOT stuck) AS running, count(*) FILTER (WHERE stuck) AS stuck
               FROM live GROUP BY day)
    SELECT coalesce(r.day, m.day) AS day, coalesce(finished, 0) AS finished, coalesce(failed, 0) AS failed,
           coalesce(running, 0) AS running, coalesce(stuck, 0) AS stuck, coalesce(unknown, 0) AS unknown
    FROM r FULL OUTER JOIN m ON r.day = m.day
    ORDER BY coalesce(r.day, m.day) = 'unknown', coalesce(r.day, m.day)"""
_SCORE_BINS = """
    SELECT CASE WHEN score < 0 THEN -1 WHEN score > 100 THEN 10 WHEN score = 100 THEN 9
                ELSE CAST(floor(score / 10) AS INTEGER) END AS b, count(*) AS calls
    FROM results WHERE state = 'finished' AND score IS NOT NULL GROUP BY b"""
_SCORE_SUMMARY = """
    SELECT count(score) AS scored, avg(score) AS average, median(score) AS median, min(score) AS lowest,
           max(score) AS highest
    FROM results WHERE state = 'finished'"""
_AGENTS = f"""
    SELECT coalesce(agent_id, agent_name) AS agent_key,
           coalesce(mode(agent_name), any_value(agent_id), '{NO_AGENT}') AS agent,
           mode(skill_group) AS skill_group, count(*) AS calls, count(score) AS scored, avg(score) AS average_score
    FROM results WHERE state = 'finished'
    GROUP BY agent_key ORDER BY average_score ASC NULLS LAST, calls DESC, agent_key NULLS LAST"""
_SKILL_GROUPS = f"""
    SELECT coalesce(skill_group, '{NO_SKILL_GROUP}') AS skill_group, count(*) AS calls, count(score) AS scored,
           avg(score) AS average_score, count(DISTINCT coalesce(agent_id, agent_name)) AS agents
    FROM results WHERE state = 'finished'
    GROUP BY 1 ORDER BY average_score ASC NULLS LAST, calls DESC, skill_group"""
_RULES = """
    SELECT coalesce(rule_id, rule_name) AS rule_key, any_value(rule_id) AS rule_id,
           coalesce(mode(rule_name), any_value(rule_id)) AS rule, mode(rule_type) AS type,
           count(DISTINCT n) AS calls
    FROM hits GROUP BY rule_key ORDER BY calls DESC, rule_key"""
_REVIEW_STATUS = """
    SELECT review_status, bool_or(review_status_odd) AS odd, count(*) AS calls FROM results
    WHERE state = 'finished' GROUP BY review_status, review_status_odd ORDER BY calls DESC, review_status"""
_FAILURES = f"""
    SELECT coalesce(error_message, '{NO_MESSAGE}') AS reason, count(*) AS calls
    FROM results WHERE state = 'failed' GROUP BY 1 ORDER BY calls DESC, reason"""
_LOWEST = f"""
    SELECT r.n, r.contact_id, r.task_id,
           coalesce(r.agent_name, r.agent_id, '{NO_AGENT}') AS agent, r.skill_group,
           r.score, r.upload_time, r.day
    FROM results r WHERE r.state = 'finished' AND r.score IS NOT NULL
    ORDER BY r.score, r.upload_time NULLS LAST, r.contact_id NULLS LAST, r.task_id NULLS LAST, r.n
    LIMIT {LOWEST}"""
_RULES_OF_CALLS = """
    SELECT n, list(coalesce(rule_name, rule_id) ORDER BY i) AS rules FROM hits
    WHERE n IN (SELECT unnest($n)) GROUP BY n"""


def _counts(con: Any, files: int) -> dict[str, int]:
    counts = {k: int(v or 0) for k, v in {**_rows(con, _TOTALS)[0], **_rows(con, _LIVE)[0]}.items()}
    counts["files"] = files
    return counts


def _score_bins(con: Any) -> list[dict[str, Any]]:
    """Ten bins of ten points; the odd bins (below 0, above 100) only when they hold calls."""
    bins = {row["b"]: row["calls"] for row in _rows(con, _SCORE_BINS)}
    return [
        {"bin": label, "low": low, "high": high, "calls": int(bins.get(b, 0))}
        for b, label, low, high in _bin_labels()
        if b in range(0, 10) or bins.get(b)
    ]


def _rules(con: Any, *, finished: int) -> list[dict[str, Any]]:
    rules = _rows(con, _RULES)
    for row in rules:
        row["share"] = row["calls"] / finished if finished else 0.0
    return rules


def _review_status(con: Any) -> list[dict[str, Any]]:
    return [
        {
            "review_status": row["review_status"],
            "label": _review_label(row["review_status"], row["odd"]),
            "calls": row["calls"],
        }
        for row in _rows(con, _REVIEW_STATUS)
    ]


def _lowest(con: Any) -> list[dict[str, Any]]:
    """The lowest-scored calls, each with the names of the rules it hit (in hit order, once each)."""
    lowest = _rows(con, _LOWEST)
    names: dict[int, list[str]] = {}
    if lowest:
        for row in _rows(con, _RULES_OF_CALLS, {"n": [r["n"] for r in lowest]}):
            names[row["n"]] = list(dict.fromkeys(row["rules"]))
    for row in lowest:
        row["rules"] = names.get(row.pop("n"), [])
    return lowest


def _bin_labels() -> list[tuple[int, str, float | None, float | None]]:
    labels: list[tuple[int, str, float | None, float | None]] = [(-1, "below 0", None, 0.0)]
    labels += [(b, f"{b * 10}–{b * 10 + 10}", float(b * 10), float(b * 10 + 10)) for b in range(10)]
    labels.append((10, "above 100", 100.0, None))
    return labels


def _review_label(value: int | None, odd: bool) -> str:
    if value is None:
        return "not a number" if odd else "(none)"
    return f"{value} · {REVIEW_LABELS.get(value, 'other')}"


def _notes(con: Any, counts: dict[str, int]) -> list[str]:
    """What was missing or odd, said plainly (the page shows it; nothing is hidden)."""
    row = _rows(
        con,
        """
        SELECT count(*) FILTER (WHERE state = 'finished' AND score IS NULL) AS no_score,
               count(*) FILTER (WHERE state = 'finished' AND agent_id IS NULL AND agent_name IS NULL) AS no_agent,
               count(*) FILTER (WHERE state = 'finished' AND skill_group IS NULL) AS no_skill_group,
               count(*) FILTER (WHERE state = 'finished' AND no_hit_result) AS no_hit_result,
               count(*) FILTER (WHERE state = 'finished' AND review_status IS NULL) AS no_review_status,
               count(*) FILTER (WHERE contact_id IS NULL) AS no_contact_id,
               count(*) FILTER (WHERE day = 'unknown') AS no_day
        FROM results""",
    )[0]
    said = {
        "no_score": "finished result(s) without a score: left out of averages and the score chart",
        "no_agent": f"finished result(s) without an agent: counted as {NO_AGENT}",
        "no_skill_group": f"finished result(s) without a skill group: counted as {NO_SKILL_GROUP}",
        "no_hit_result": "finished result(s) without hit_result: they hit no rule here",
        "no_review_status": "finished result(s) without a review status: shown as (none)",
        "no_contact_id": "result(s) without a ContactId",
        "no_day": "result(s) without an upload time (partition dt=unknown)",
    }
    notes = [f"{row[k]:,} {text}" for k, text in said.items() if row[k]]
    if counts["unknown"]:
        notes.append(f"{counts['unknown']:,} line(s) with neither a known state nor a status: counted as unknown")
    return notes


def _finite(data: ReportData) -> None:
    """JSON has no NaN: an aggregate over nothing is ``None``."""
    for rows in (data.agents, data.skill_groups):
        for row in rows:
            value = row.get("average_score")
            if isinstance(value, float) and not math.isfinite(value):
                row["average_score"] = None
    for key, value in list(data.score_summary.items()):
        if isinstance(value, float) and not math.isfinite(value):
            data.score_summary[key] = None
