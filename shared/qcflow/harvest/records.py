"""One GetResult item → one JSONL line: the output schema (``schema_version`` 1).

Why a hand-written converter and not a pydantic model: it runs once per harvested result
(~1,650 a second at the quota ceiling), and a single recursive pass that unwraps Tea
wrappers *and* renames keys costs a fraction of validating and dumping a model. Items from
``ScaClient.get_result_page`` arrive unwrapped already; the wrapper check is kept (it costs
one dict lookup per key) so that a raw service body (the seed fixture) converts the same.

The schema, one object per finished (``status`` 1) or failed (any status but 0/1) task:

- ``schema_version`` (1), ``task_id``, ``status`` (int), ``state`` (``"finished"`` |
  ``"failed"``);
- ``call_id`` = ``Recording.Id`` — the ``callId`` sent at upload, which qcflow's push sets to
  the CCC ContactId; ``contact_id`` is the same value (the join key to the push ledger and
  to CCC), ``object_key`` = ``Recording.Name`` (push sends the recording's object key as
  ``fileName``);
- ``upload_time``: the task's upload time, ISO 8601 with the offset of
  ``QCFLOW_SCA_TIME_ZONE``, from ``CreateTimeLong`` (seconds or milliseconds: the unit is
  UNCONFIRMED, so it is told by magnitude) or else ``CreateTime`` (read in the same zone);
- ``score``, ``error_message``, ``review_status``, ``review_result``, ``reviewer``,
  ``review_time`` (from ``ReviewTimeLong`` like ``upload_time``, else ``ReviewTime`` as
  sent), ``review_type`` (``ReviewType``: 1 automatic, 2 manual), ``comments``, ``resolver``;
- ``agent`` {id, name, skill_group}, ``recording`` {id, call_id, name, url, duration, …,
  remark1…} with the URL's query string removed (a pre-signed URL's signature is a secret);
- ``hit_result`` [{type, name, rid, review_result, score, scheme_id, scheme_version,
  hits: [{key_words: [{from, to, val, cid}], cid: [...], phrase: {...}}], conditions}],
  ``hit_score``, ``asr_result`` [{role, identity, words, begin, end, emotion_value,
  speech_rate}], ``review_history`` (``ReviewHistoryList``: each review's ``old_score``,
  ``score``, ``review_result``, ``complain_result`` for an appeal's, ``time`` (ms)…), ``scheme_ids``,
  ``scheme_names``;
- ``harvested_at`` (UTC, ISO 8601);
- then every other field the service sent, under its snake_case name (never dropped
  silently), e.g. ``task_name``, ``vid``, ``assignment_time``.

A line under ``reviews/`` (the review feed, ``qcflow.harvest.reviews``) is the very same
record, written once per review saved: its ``review_time`` is always set.

Every key above is always present (``null`` when the service did not send it), so columns
are stable. Nested keys are snake_case too (``KeyWords`` → ``key_words``, ``Check_range`` →
``check_range``). Only ``LastDataId`` (a paging cursor), ``CreateTime``/``CreateTimeLong``
(→ ``upload_time``) and ``ReviewTimeLong`` (→ ``review_time``) are not carried over.
"""

from __future__ import annotations

import json
import math
import re
from datetime import datetime, timezone
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo

from qcflow.models.tea import TEA_LIST_WRAPPERS

SCHEMA_VERSION = 1

State = Literal["finished", "failed", "running", "unknown"]

#: Where a result without any upload time goes: deterministic (the partition decides which
#: commit sequence guards the task, so it must never depend on the run), and visible.
UNKNOWN_PARTITION = "dt=unknown/hour=unknown"

#: Top-level fields with their own place (or none) in the record; everything else is "other".
_CONSUMED = frozenset(
    {
        "TaskId",
        "Status",
        "CreateTime",
        "CreateTimeLong",
        "LastDataId",
        "Score",
        "ErrorMessage",
        "ReviewStatus",
        "ReviewResult",
        "Reviewer",
        "ReviewTime",
        "ReviewTimeLong",
        "ReviewType",
        "Comments",
        "Resolver",
        "Agent",
        "Recording",
        "HitResult",
        "HitScore",
        "AsrResult",
        "ReviewHistoryList",
        "SchemeIdList",
        "SchemeNameList",
    }
)
_SIMPLE = (
    ("score", "Score"),
    ("error_message", "ErrorMessage"),
    ("review_status", "ReviewStatus"),
    ("review_result", "ReviewResult"),
    ("reviewer", "Reviewer"),
)
_NESTED = (
    ("agent", "Agent"),
    ("recording", "Recording"),
    ("hit_result", "HitResult"),
    ("hit_score", "HitScore"),
    ("asr_result", "AsrResult"),
    ("review_history", "ReviewHistoryList"),
    ("scheme_ids", "SchemeIdList"),
    ("scheme_names", "SchemeNameList"),
)

_BOUNDARY_1 = re.compile(r"(.)([A-Z][a-z]+)")
_BOUNDARY_2 = re.compile(r"([a-z0-9])([A-Z])")
_UNDERSCORES = re.compile(r"_+")
_SNAKE: dict[str, str] = {}
_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode
_encode_ascii = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"), allow_nan=False).encode
#: datetime's last second (9999-12-31T23:59:59Z): later epoch values cannot be a date.
_MAX_EPOCH_SECONDS = 253_402_300_799


def snake(name: str) -> str:
    """``ReviewTimeLong`` → ``review_time_long``, ``Check_range`` → ``check_range``,
    ``ruleName`` → ``rule_name``, ``Remark13`` → ``remark13`` (cached: names repeat)."""
    known = _SNAKE.get(name)
    if known is None:
        known = _UNDERSCORES.sub("_", _BOUNDARY_2.sub(r"\1_\2", _BOUNDARY_1.sub(r"\1_\2", name))).lower()
        if len(_SNAKE) < 10_000:  # field names are few; a hostile answer must not grow this forever
            _SNAKE[name] = known
    return known


def unwrapped(field: str, value: Any) -> Any:
    """``value`` of ``field`` without its Tea wrapper (only when it has exactly that shape)."""
    inner = TEA_LIST_WRAPPERS.get(field)
    if inner is not None and type(value) is dict and len(value) == 1:
        wrapped = value.get(inner)
        if type(wrapped) is list:
            return wrapped
    return value


def convert(value: Any) -> Any:
    """``value`` with Tea wrappers removed and every dict key in snake_case, in one pass
    (the hot path: it runs for every key of every harvested result)."""
    kind = type(value)
    if kind is dict:
        out: dict[str, Any] = {}
        names = _SNAKE
        for key, item in value.items():
            if key in TEA_LIST_WRAPPERS:
                item = unwrapped(key, item)
            name = names.get(key) or snake(key)
            sub = type(item)
            out[name] = convert(item) if sub is dict or sub is list else item
        return out
    if kind is list:
        return [convert(item) if type(item) is dict or type(item) is list else item for item in value]
    return value


def task_id_of(item: dict[str, Any]) -> str | None:
    task_id = item.get("TaskId")
    return str(task_id) if task_id not in (None, "") else None


def call_id_of(item: dict[str, Any]) -> str | None:
    """``Recording.Id`` (the ``callId`` sent at upload: the ContactId for qcflow's push)."""
    recording = item.get("Recording")
    call_id = recording.get("Id") if isinstance(recording, dict) else None
    return str(call_id) if call_id not in (None, "") else None


def result_id(item: dict[str, Any]) -> str | None:
    """The identity of one result: ``<TaskId>|<Recording.Id>``.

    Why not the taskId alone: one ``UploadAudioData`` call with several recordings in its
    ``callList`` yields *one* taskId for all of them, and GetResult then lists one result per
    recording under that id (push batches its backfills). ``Recording.Id`` tells them apart;
    without a Recording, ``Vid`` does; without either the result is known by its task alone.
    """
    task_id = task_id_of(item)
    if task_id is None:
        return None
    other = call_id_of(item) or (str(item["Vid"]) if item.get("Vid") not in (None, "") else "")
    return f"{task_id}|{other}"


def task_of(result: str) -> str:
    """The taskId part of a ``result_id`` (task ids never hold ``|``)."""
    return result.split("|", 1)[0]


def status_of(item: dict[str, Any]) -> int | None:
    """``Status`` as an int; ``None`` when absent or unreadable — unknown, never "failed"."""
    status = item.get("Status")
    if isinstance(status, bool):
        return None
    if isinstance(status, int):
        return status
    if isinstance(status, str) and status.strip().lstrip("-").isdigit():
        return int(status)
    return None


def state_of(item: dict[str, Any]) -> State:
    """``finished`` (1), ``running`` (0), ``failed`` (anything else), ``unknown`` (no status)."""
    status = status_of(item)
    if status is None:
        return "unknown"
    if status == 1:
        return "finished"
    if status == 0:
        return "running"
    return "failed"


def epoch_seconds(value: Any) -> float | None:
    """A ``*TimeLong`` value in seconds; milliseconds are told by magnitude (the unit of
    ``CreateTimeLong`` is UNCONFIRMED: the sandbox sends seconds)."""
    if value in (None, "") or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(number) or number <= 0:
        return None
    seconds = number / 1000.0 if number >= 100_000_000_000 else number  # 1e11 s is the year 5138
    return seconds if seconds <= _MAX_EPOCH_SECONDS else None  # garbage: fall back to CreateTime


_TEXT_FORMATS = ("%Y-%m-%dT%H:%MZ", "%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S")


def _text_seconds(text: Any, zone: ZoneInfo) -> float | None:
    """``CreateTime``-style text (``2019-07-24T19:31Z``) read in SCA's zone: the sandbox
    writes it that way; the real service's zone for this text is UNCONFIRMED."""
    if not isinstance(text, str):
        return None
    for fmt in _TEXT_FORMATS:
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=zone).timestamp()
        except ValueError:
            continue
    return None


def upload_seconds(item: dict[str, Any], zone: ZoneInfo) -> float | None:
    """The task's upload time (epoch seconds), or ``None`` when the item carries none."""
    seconds = epoch_seconds(item.get("CreateTimeLong"))
    return seconds if seconds is not None else _text_seconds(item.get("CreateTime"), zone)


def iso(seconds: float, zone: ZoneInfo) -> str:
    return datetime.fromtimestamp(seconds, zone).isoformat()


class Partitioner:
    """Upload time → ``dt=YYYY-MM-DD/hour=HH`` in SCA's zone, memoized per quarter hour
    (every zone's offset is a multiple of 15 minutes, so a quarter never straddles hours)."""

    def __init__(self, zone: ZoneInfo) -> None:
        self.zone = zone
        self._memo: dict[int, str] = {}

    def of_seconds(self, seconds: float | None) -> str:
        if seconds is None:
            return UNKNOWN_PARTITION
        quarter = int(seconds // 900)
        known = self._memo.get(quarter)
        if known is None:
            moment = datetime.fromtimestamp(quarter * 900, self.zone)
            known = f"dt={moment:%Y-%m-%d}/hour={moment:%H}"
            if len(self._memo) > 4096:
                self._memo.clear()
            self._memo[quarter] = known
        return known

    def of(self, item: dict[str, Any]) -> str:
        return self.of_seconds(upload_seconds(item, self.zone))


def _strip_query(url: Any) -> Any:
    """A recording URL without its query string: CCC's (and push's) URLs are pre-signed, and a
    signature must never reach the output."""
    if not isinstance(url, str) or "?" not in url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        return url.split("?", 1)[0]
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


_URL_QUERY = re.compile(r"(https?://[^\s?#\"'<>]+)[?#][^\s\"'<>]*", re.IGNORECASE)


def _strip_url_queries(text: Any) -> Any:
    """Free text (an ``ErrorMessage``) with the query string of every URL in it removed: the
    service may echo the pre-signed ``voiceFileUrl`` it failed to download."""
    if not isinstance(text, str) or "://" not in text:
        return text
    return _URL_QUERY.sub(r"\1", text)


def to_record(item: dict[str, Any], zone: ZoneInfo, harvested_at: str) -> dict[str, Any]:
    """The output object of one GetResult item (see the module docstring for the schema)."""
    status = status_of(item)
    state = (
        "finished" if status == 1 else ("running" if status == 0 else ("failed" if status is not None else "unknown"))
    )
    recording = convert(item.get("Recording")) if isinstance(item.get("Recording"), dict) else None
    if recording is not None and "url" in recording:
        recording["url"] = _strip_query(recording["url"])
    call_id = call_id_of(item)
    uploaded = upload_seconds(item, zone)
    review_seconds = epoch_seconds(item.get("ReviewTimeLong"))
    review_time = iso(review_seconds, zone) if review_seconds is not None else item.get("ReviewTime")
    record: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "task_id": task_id_of(item),
        "status": status,
        "state": state,
        "call_id": call_id,
        "contact_id": call_id,
        "object_key": recording.get("name") if recording else None,
        "upload_time": iso(uploaded, zone) if uploaded is not None else None,
    }
    for name, field in _SIMPLE:
        record[name] = item.get(field)
    record["error_message"] = _strip_url_queries(record["error_message"])
    record["review_time"] = review_time
    record["review_type"] = item.get("ReviewType")
    record["comments"] = item.get("Comments")
    record["resolver"] = item.get("Resolver")
    for name, field in _NESTED:
        if field == "Recording":
            record[name] = recording
            continue
        value = unwrapped(field, item.get(field))
        record[name] = convert(value) if isinstance(value, (dict, list)) else value
    record["harvested_at"] = harvested_at
    for key, value in item.items():
        if key not in _CONSUMED:
            name = snake(key)
            if name not in record:
                value = unwrapped(key, value)
                record[name] = convert(value) if isinstance(value, (dict, list)) else value
    return record


def encode_line(record: dict[str, Any]) -> bytes:
    """One JSONL line (UTF-8, compact, ending in a newline), always strict JSON: ``NaN`` and
    infinities (which ``json.loads`` accepts from the service) become ``null``, and a lone
    surrogate (a UTF-16 string cut inside a pair) is kept as a ``\\udXXX`` escape instead of
    failing the whole run."""
    try:
        text = _encode(record)
    except ValueError:  # a non-finite float
        return encode_line(_finite(record))
    try:
        return (text + "\n").encode("utf-8")
    except UnicodeEncodeError:
        return (_encode_ascii(record) + "\n").encode("ascii")


def _finite(value: Any) -> Any:
    kind = type(value)
    if kind is float:
        return value if math.isfinite(value) else None
    if kind is dict:
        return {key: _finite(item) for key, item in value.items()}
    if kind is list:
        return [_finite(item) for item in value]
    return value


def utc_now_text(moment: datetime | None = None) -> str:
    """``harvested_at``: an aware moment in UTC, ISO 8601 to the second."""
    moment = moment or datetime.now(timezone.utc)
    return moment.astimezone(timezone.utc).replace(microsecond=0).isoformat()
