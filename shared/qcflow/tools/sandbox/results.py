"""SCA's side of the sandbox: tasks from UploadAudioData, and GetResult over them.

Tasks live in one list sorted by upload time, so a GetResult window is two bisects and a
page is a slice. Each result keeps only a few numbers; its content comes from a template
(``content.py``) whose heavy JSON is serialized once per requested field set, which is
what lets the sandbox serve far more than the real quota (see ``benchmarks/``).

Why ~540 lines: SCA's task store and GetResult's query language (filters, paging, the
10,000 rule, lastDataId) act on the same index of tasks; it is tooling, never in the layer.
"""

from __future__ import annotations

import bisect
import hashlib
import heapq
import json
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cached_property, partial
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from pydantic import ValidationError

from qcflow.models import tea
from qcflow.models.base import first_problem
from qcflow.models.sca import GetResultQuery, UploadAudioDataJson, parse_sca_time
from qcflow.tools.sandbox.callbacks import CallbackJob
from qcflow.tools.sandbox.content import build_templates
from qcflow.tools.sandbox.errors import ApiFailure, invalid_parameter
from qcflow.tools.sandbox.options import SandboxOptions
from qcflow.tools.sandbox.reviews import ReviewBook, ReviewState

DEFAULT_REQUIRED_FIELDS = "score,status,taskId,hitResult"
DEEP_PAGING_LIMIT = 10_000
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _pascal(name: str) -> str:
    return name[:1].upper() + name[1:]


@dataclass(frozen=True)
class FieldSelection:
    """``requiredFields``/``excludeFields`` resolved: top-level key → sub-keys kept (None: all)."""

    keep: tuple[tuple[str, frozenset[str] | None], ...]
    drop: tuple[tuple[str, frozenset[str]], ...]

    @classmethod
    def parse(cls, required: str | None, exclude: str | None) -> FieldSelection:
        keep: dict[str, set[str] | None] = {}
        for raw in (required or DEFAULT_REQUIRED_FIELDS).split(","):
            name = raw.strip()
            if not name:
                continue
            top, _, sub = name.partition(".")
            top = _pascal(top)
            if not sub:
                keep[top] = None
            elif top not in keep or keep[top] is not None:
                keep.setdefault(top, set()).add(_pascal(sub))  # type: ignore[union-attr]
        drop: dict[str, set[str]] = {}
        for raw in (exclude or "").split(","):
            top, _, sub = raw.strip().partition(".")
            if top and sub:
                drop.setdefault(_pascal(top), set()).add(_pascal(sub))
            elif top:
                keep.pop(_pascal(top), None)
        return cls(
            tuple(sorted((k, None if v is None else frozenset(v)) for k, v in keep.items())),
            tuple(sorted((k, frozenset(v)) for k, v in drop.items())),
        )

    @cached_property
    def _maps(self) -> tuple[dict[str, frozenset[str] | None], dict[str, frozenset[str]]]:
        """``keep`` and ``drop`` as dicts, built once per selection (``apply`` runs per record)."""
        return dict(self.keep), dict(self.drop)

    def apply(self, record: dict[str, Any]) -> dict[str, Any]:
        """The selected part of a plain (unwrapped) record, in the record's key order."""
        keep, drop = self._maps
        out: dict[str, Any] = {}
        for key, value in record.items():
            if key not in keep:
                continue
            subs = keep[key]
            removed = drop.get(key, frozenset())
            if subs is not None or removed:
                value = _select(value, subs, removed)
            out[key] = value
        return out


def _select(value: Any, keep: frozenset[str] | None, drop: frozenset[str]) -> Any:
    if isinstance(value, list):
        return [_select(item, keep, drop) for item in value]
    if isinstance(value, dict):
        return {k: v for k, v in value.items() if (keep is None or k in keep) and k not in drop}
    return value


class Task:
    """One result row: an uploaded (or pre-loaded) recording and its inspection."""

    __slots__ = ("seq", "task_id", "upload_ms", "finish_ms", "status", "final_status", "call", "template", "error")

    def __init__(
        self,
        seq: int,
        task_id: str,
        upload_ms: int,
        finish_ms: int,
        final_status: int,
        call: dict[str, Any] | None,
        template: int,
    ) -> None:
        self.seq = seq
        self.task_id = task_id
        self.upload_ms = upload_ms
        self.finish_ms = finish_ms
        self.final_status = final_status
        self.status = 0
        self.call = call
        self.template = template
        self.error: str | None = None

    @property
    def sort_key(self) -> tuple[int, int]:
        return (self.upload_ms // 1000, self.seq)

    @property
    def call_id(self) -> str:
        return (self.call or {}).get("callId") or f"job-{7_000_000_000_000 + self.seq}"

    @property
    def last_data_id(self) -> str:
        return f"{self.seq}@a_z@{self.task_id}_{self.upload_ms}"


class ScaState:
    """Every task the sandbox knows, with the rules of UploadAudioData and GetResult."""

    def __init__(
        self,
        options: SandboxOptions,
        clock: Callable[[], float] = time.time,
        audio_check: Callable[[str], str | None] | None = None,
        on_callback: Callable[[CallbackJob], None] | None = None,
    ) -> None:
        self.options = options
        #: Told of every task uploaded with a callbackUrl (when it will be final): the
        #: callback sender's ``schedule``. Called under this state's lock, so it must be quick.
        self.on_callback = on_callback
        #: Says why a voiceFileUrl cannot be fetched (None: fine or unknown). The real service
        #: downloads the audio and fails the task when it cannot; offline, the sandbox can
        #: only judge the URLs it hands out itself.
        self.audio_check = audio_check
        self.clock = clock
        self.zone = ZoneInfo(options.time_zone)
        self._rng = random.Random(options.seed)
        self._templates = build_templates(options.seed)
        self._lock = threading.RLock()
        self._tasks: list[Task] = []
        self._keys: list[tuple[int, int]] = []
        self._by_task_id: dict[str, list[Task]] = {}
        self._pending: list[tuple[int, int, Task]] = []
        self._call_uuids: OrderedDict[str, float] = OrderedDict()  # in upload order, for cheap expiry
        self._seq = 0
        self._generation = 0
        self._filtered: OrderedDict[tuple[Any, ...], list[Task]] = OrderedDict()
        self._heavy: dict[tuple[int, FieldSelection], str] = {}
        #: People's reviews and appeals, and the tasks ordered by last review time.
        self.reviews = ReviewBook(options.reviews, options.seed, self.zone)

    # ------------------------------------------------------------------ tasks

    def _new_task(
        self,
        upload_ms: int,
        call: dict[str, Any] | None,
        task_id: str | None = None,
        finished: bool = False,
        failed: bool = False,
    ) -> Task:
        self._seq += 1
        seq = self._seq
        task_id = task_id or _task_id(self.options.seed, seq)
        template = int(hashlib.blake2b(f"{task_id}/{seq}".encode(), digest_size=2).hexdigest(), 16) % len(
            self._templates
        )
        if finished:
            return Task(seq, task_id, upload_ms, upload_ms, 6 if failed else 1, call, template)
        delay = self.options.task_seconds + self._rng.uniform(0, self.options.task_jitter_seconds)
        final = 6 if self._rng.random() < self.options.task_failure_rate else 1
        return Task(seq, task_id, upload_ms, upload_ms + int(delay * 1000), final, call, template)

    def _insert(self, task: Task) -> None:
        key = task.sort_key
        if not self._keys or key >= self._keys[-1]:
            self._keys.append(key)
            self._tasks.append(task)
        else:
            at = bisect.bisect_right(self._keys, key)
            self._keys.insert(at, key)
            self._tasks.insert(at, task)
        self._by_task_id.setdefault(task.task_id, []).append(task)
        if task.finish_ms <= task.upload_ms:
            task.status = task.final_status
            self._finished(task)
        else:
            heapq.heappush(self._pending, (task.finish_ms, task.seq, task))
        self._generation += 1

    def _advance(self) -> None:
        """Move every task whose time has come from running to its final status."""
        now_ms = int(self.clock() * 1000)
        moved = False
        while self._pending and self._pending[0][0] <= now_ms:
            _, _, task = heapq.heappop(self._pending)
            task.status = task.final_status
            self._finished(task)
            moved = True
        if self.reviews.apply_due(now_ms, self._machine_score):
            moved = True
        if moved:
            self._generation += 1

    def _finished(self, task: Task) -> None:
        if task.status == 1:
            self.reviews.finished(task, task.finish_ms)

    def _machine_score(self, task: Task) -> int:
        return int(self._templates[task.template]["score"])

    def review(
        self,
        task_id: str,
        *,
        at: float | None = None,
        score: int | None = None,
        result: int | None = None,
        appeal: bool = False,
        upheld: bool | None = None,
        resolver: str | None = None,
        comments: str | None = None,
    ) -> list[ReviewState]:
        """Review every finished result of ``task_id`` now (or at epoch ``at``); with ``appeal``
        the agent appeals first and this review settles it. For tests, demos and benchmarks
        (``POST /__sandbox/review``); raises ``KeyError`` for an unknown or unfinished task."""
        with self._lock:
            self._advance()
            tasks = [t for t in self._by_task_id.get(task_id, ()) if t.status == 1]
            if not tasks:
                raise KeyError(task_id)
            at_ms = int((self.clock() if at is None else at) * 1000)
            states = []
            for task in tasks:
                if appeal:
                    self.reviews.appeal(task)
                states.append(
                    self.reviews.review(
                        task,
                        at_ms,
                        self._machine_score(task),
                        score=score,
                        result=result,
                        upheld=upheld,
                        resolver=resolver,
                        comments=comments,
                    )
                )
            self._generation += 1
            return states

    def finished_task_ids(self, limit: int) -> list[str]:
        """The first ``limit`` distinct taskIds with a finished result (for demos: whom to review)."""
        with self._lock:
            self._advance()
            found: list[str] = []
            for task in self._tasks:
                if task.status == 1 and task.task_id not in found:
                    found.append(task.task_id)
                    if len(found) >= limit:
                        break
            return found

    def preload(self, count: int, start: datetime, end: datetime, failed_rate: float = 0.0) -> None:
        """``count`` finished results with upload times spread evenly over [start, end)."""
        if count <= 0:
            return
        start_ms = int(start.timestamp() * 1000)
        span = max(1, int(end.timestamp() * 1000) - start_ms)
        rng = random.Random(self.options.seed + 1)
        with self._lock:
            tasks = [
                self._new_task(start_ms + span * i // count, None, finished=True, failed=rng.random() < failed_rate)
                for i in range(count)
            ]
            for task in tasks:
                self._by_task_id.setdefault(task.task_id, []).append(task)
                task.status = task.final_status
            merged = sorted(self._tasks + tasks, key=lambda t: t.sort_key)
            self._tasks = merged
            self._keys = [t.sort_key for t in merged]
            self._generation += 1

    def preload_reviews(self, count: int, end: datetime) -> None:
        """``count`` of the finished tasks (spread evenly) reviewed once, each at a random
        time between its upload and ``end``: a backlog of reviews, for benchmarks."""
        with self._lock:
            finished = [t for t in self._tasks if t.status == 1]
            if count <= 0 or not finished:
                return
            step = max(1, len(finished) // count)
            chosen = finished[::step][:count]
            rng = random.Random(self.options.seed + 2)
            end_ms = int(end.timestamp() * 1000)
            timed = sorted((rng.randint(t.upload_ms, max(t.upload_ms, end_ms - 1)), t.seq, t) for t in chosen)
            for at_ms, _, task in timed:  # in time order: the review index only appends
                self.reviews.review(task, at_ms, self._machine_score(task))
            self._generation += 1

    def task_count(self) -> int:
        with self._lock:
            return len(self._tasks)

    # ------------------------------------------------------------------ UploadAudioData

    def upload_audio_data(self, json_str: str | None) -> str:
        """Validate ``JsonStr``, refuse a repeated callUuid (whole request), create the task."""
        if not json_str:
            raise invalid_parameter("JsonStr is required")
        data = _json_object(json_str)
        try:
            request = UploadAudioDataJson.model_validate(data, by_alias=True, by_name=False)
        except ValidationError as exc:
            raise invalid_parameter(f"JsonStr invalid at {first_problem(exc)}") from None
        for call in request.call_list:
            if not call.voice_file_url.lower().startswith(("http://", "https://")):
                raise invalid_parameter(f"voiceFileUrl must be an http(s) URL: {call.voice_file_url[:80]!r}")
            if " " in call.voice_file_url:
                raise invalid_parameter("voiceFileUrl must not contain spaces")
        if request.callback_url is not None:
            _check_callback_url(request.callback_url)
        now = self.clock()
        with self._lock:
            self._advance()
            horizon = now - self.options.call_uuid_window_seconds
            while self._call_uuids and next(iter(self._call_uuids.values())) < horizon:
                self._call_uuids.popitem(last=False)
            uuids = [c.call_uuid for c in request.call_list if c.call_uuid]
            if len(set(uuids)) != len(uuids):
                raise ApiFailure(200, "CallUuidRepeated", "callUuid repeated within the request", business=True)
            for uuid in uuids:
                if uuid in self._call_uuids:
                    raise ApiFailure(
                        200, "CallUuidRepeated", f"callUuid {uuid} was uploaded within the last 2 hours", business=True
                    )
            for uuid in uuids:
                self._call_uuids[uuid] = now
            task_id = _task_id(self.options.seed, self._seq + 1)
            upload_ms = int(now * 1000)
            tasks = []
            for call in request.call_list:
                task = self._new_task(upload_ms, call.to_wire(), task_id=task_id)
                problem = self.audio_check(call.voice_file_url) if self.audio_check else None
                if problem:
                    task.final_status, task.error = 6, f"audio file download failed: {problem}"
                self._insert(task)
                tasks.append(task)
            if request.callback_url and self.on_callback is not None:
                # one callback per taskId, once the last of its recordings is final
                finish_ms = max(t.finish_ms for t in tasks)
                failed = any(t.final_status != 1 for t in tasks)
                self.on_callback(CallbackJob(task_id, request.callback_url, finish_ms, failed))
            return task_id

    # ------------------------------------------------------------------ GetResult

    def get_result(self, json_str: str | None) -> bytes:
        """One page as the service's JSON body (bytes), or an ``ApiFailure``."""
        data = _json_object(json_str) if json_str else {}
        try:
            query = GetResultQuery.model_validate(data, by_alias=True, by_name=False)
        except ValidationError as exc:
            raise invalid_parameter(f"JsonStr invalid at {first_problem(exc)}") from None
        page_number = query.page_number or 1
        page_size = query.page_size or 10
        selection = FieldSelection.parse(query.required_fields, query.exclude_fields)
        with self._lock:
            self._advance()
            matches = self._indexed(self._matching(query))
            offset = (page_number - 1) * page_size
            if self._needs_cursor(offset, page_size):
                previous = matches[offset - 1] if offset - 1 < len(matches) else None
                if not query.last_data_id:
                    raise invalid_parameter(
                        f"lastDataId is required beyond record {DEEP_PAGING_LIMIT} "
                        f"(pageNumber {page_number} x pageSize {page_size})"
                    )
                if previous is None or previous.last_data_id != query.last_data_id:
                    raise invalid_parameter(
                        f"beyond record {DEEP_PAGING_LIMIT} only the next page may be read, "
                        "with the last lastDataId of the previous page"
                    )
            page = matches[offset : offset + page_size]
            items = ",".join(self._record_json(task, selection) for task in page)
            count = len(matches)
        head = _dumps(
            {
                "RequestId": "",
                "Success": True,
                "Code": "200",
                "Message": "successful",
                "PageNumber": page_number,
                "PageSize": page_size,
                "Count": count,
            }
        )
        return (head[:-1] + ',"Data":{"ResultInfo":[' + items + "]}}").encode("utf-8")

    def _indexed(self, matches: list[Task]) -> list[Task]:
        """``matches`` less the tasks not yet indexed (``index_lag_seconds`` after their upload).

        Applied after the filter cache, whose key knows nothing of time: with no lag (the
        default) the cached list itself, as before the option existed.
        """
        lag_ms = int(self.options.index_lag_seconds * 1000)
        if lag_ms <= 0:
            return matches
        visible_before = int(self.clock() * 1000) - lag_ms
        return [t for t in matches if t.upload_ms <= visible_before]

    def _needs_cursor(self, offset: int, page_size: int) -> bool:
        """Whether a page must carry the previous page's last ``lastDataId``.

        Strict (default): any page reaching past record 10,000, as a service capping
        offset + pageSize at 10,000 would (the rule of search back ends such as Elasticsearch).
        Loose: only pages that start at or after record 10,000.
        """
        if self.options.loose_deep_paging:
            return offset >= DEEP_PAGING_LIMIT
        return offset + page_size > DEEP_PAGING_LIMIT

    def _matching(self, query: GetResultQuery) -> list[Task]:
        filters = _filter_key(query)
        cache_key = (filters, self._generation)
        hit = self._filtered.get(cache_key)
        if hit is not None:
            self._filtered.move_to_end(cache_key)
            return hit
        if query.task_id is not None:
            candidates = sorted(self._by_task_id.get(query.task_id, ()), key=lambda t: t.sort_key)
        elif query.review_start_time or query.review_end_time:
            # by the time the last review was saved: only reviewed tasks, in that order
            candidates = self.reviews.between(
                self._seconds(query.review_start_time) if query.review_start_time else None,
                self._seconds(query.review_end_time) if query.review_end_time else None,
            )
        else:
            lo, hi = 0, len(self._tasks)
            if query.start_time:
                lo = bisect.bisect_left(self._keys, (self._seconds(query.start_time), -1))
            if query.end_time:
                hi = bisect.bisect_right(self._keys, (self._seconds(query.end_time), 1 << 62))
            candidates = self._tasks[lo:hi]
        checks = self._checks(query)
        result = [t for t in candidates if all(check(t) for check in checks)] if checks else candidates
        self._filtered[cache_key] = result
        while len(self._filtered) > 16:
            self._filtered.popitem(last=False)
        return result

    def _seconds(self, text: str) -> int:
        return int(parse_sca_time(text, self.zone).timestamp())

    def _checks(self, query: GetResultQuery) -> list[Callable[[Task], bool]]:
        checks: list[Callable[[Task], bool]] = []
        by_review = query.task_id is None and bool(query.review_start_time or query.review_end_time)
        if (query.task_id is not None or by_review) and (query.start_time or query.end_time):
            lo = self._seconds(query.start_time) if query.start_time else None
            hi = self._seconds(query.end_time) if query.end_time else None
            checks.append(
                lambda t: (lo is None or t.upload_ms // 1000 >= lo) and (hi is None or t.upload_ms // 1000 <= hi)
            )
        if query.task_id is not None and (query.review_start_time or query.review_end_time):
            rlo = self._seconds(query.review_start_time) if query.review_start_time else None
            rhi = self._seconds(query.review_end_time) if query.review_end_time else None
            checks.append(partial(self._reviewed_between, rlo, rhi))
        if query.review_status is not None:
            wanted_review = query.review_status
            checks.append(lambda t: (s.status if (s := self.reviews.state(t)) else 0) == wanted_review)
        if query.status is not None:
            status = query.status
            checks.append(lambda t: t.status == status)
        call_fields = {
            "callId": query.call_id,
            "fileName": query.file_name,
            "caller": query.caller,
            "callee": query.callee,
            "customerServiceId": query.customer_service_id,
            "customerServiceName": query.customer_service_name,
            "skillGroupName": query.skill_group_name,
        }
        for name, wanted in call_fields.items():
            if wanted is not None:
                checks.append(partial(self._call_field_is, name, str(wanted)))
        if query.call_start_time or query.call_end_time:
            lo_ms = self._seconds(query.call_start_time) * 1000 if query.call_start_time else None
            hi_ms = (self._seconds(query.call_end_time) + 1) * 1000 if query.call_end_time else None
            checks.append(
                lambda t: (
                    (lo_ms is None or self._call(t).get("callStartTime", 0) >= lo_ms)
                    and (hi_ms is None or self._call(t).get("callStartTime", 0) < hi_ms)
                )
            )
        return checks

    # ------------------------------------------------------------------ content

    def _reviewed_between(self, lo: int | None, hi: int | None, task: Task) -> bool:
        state = self.reviews.state(task)
        if state is None or state.time_ms is None:
            return False
        seconds = state.time_ms // 1000
        return (lo is None or seconds >= lo) and (hi is None or seconds <= hi)

    def _call_field_is(self, name: str, wanted: str, task: Task) -> bool:
        return str(self._call(task).get(name)) == wanted

    def _call(self, task: Task) -> dict[str, Any]:
        if task.call is not None:
            return task.call
        call_id = task.call_id
        return {
            "callId": call_id,
            "fileName": f"{call_id}.mkv",
            "voiceFileUrl": f"https://ccc-sandbox.oss-cn-shanghai.aliyuncs.com/record/{call_id}.mkv",
            "callType": 3 if task.seq % 3 else 1,
            "callStartTime": task.upload_ms - 600_000,
            "caller": f"1380000{task.seq % 10000:04d}",
            "callee": "4008001234",
        }

    def _record_json(self, task: Task, selection: FieldSelection) -> str:
        template = self._templates[task.template]
        finished = task.status == 1
        call = self._call(task)
        upload = datetime.fromtimestamp(task.upload_ms / 1000, timezone.utc).astimezone(self.zone)
        light: dict[str, Any] = {
            "TaskId": task.task_id,
            "Status": task.status,
            "ErrorMessage": (task.error or "audio file download failed: voiceFileUrl unreachable")
            if task.status not in (0, 1)
            else None,
            "CreateTime": upload.strftime("%Y-%m-%dT%H:%MZ"),
            "CreateTimeLong": str(task.upload_ms // 1000),
            "TaskName": "qcflow-sandbox",
            "Vid": f"{task.task_id}-{task.seq}",
            "Recording": {
                "Id": call.get("callId"),
                "CallId": call.get("callId"),
                "PrimaryId": str(task.seq),
                "Name": call.get("fileName"),
                "Url": call.get("voiceFileUrl"),
                "Duration": template["duration"],
                "Caller": call.get("caller"),
                "Callee": call.get("callee"),
                "CallType": call.get("callType"),
                "CallTime": str(call.get("callStartTime", "")),
                "Business": call.get("business") or template["business"],
                "DialogueSize": len(template["heavy"]["AsrResult"]),
            },
        }
        if finished:
            light.update(self.reviews.fields(task, template["score"]))
        light = {k: v for k, v in selection.apply(light).items() if v is not None}
        if isinstance(light.get("Recording"), dict):
            light["Recording"] = {k: v for k, v in light["Recording"].items() if v not in (None, "")}
        text = _dumps(light)[1:-1]
        parts = ['"LastDataId":' + _dumps(task.last_data_id)]
        if text:
            parts.append(text)
        if finished:
            heavy_key = (task.template, selection)
            heavy = self._heavy.get(heavy_key)
            if heavy is None:
                heavy = _dumps(tea.wrap(selection.apply(template["heavy"])))[1:-1]
                if len(self._heavy) >= 4096:  # odd field sets from many callers: stay bounded
                    self._heavy.clear()
                self._heavy[heavy_key] = heavy
            if heavy:
                parts.append(heavy)
        return "{" + ",".join(parts) + "}"


def _check_callback_url(url: str) -> None:
    """Refuse a callbackUrl nothing could call. The service also wants a public domain name,
    not an IP: not enforced, the sandbox lives on loopback (``callbacks.py`` warns instead)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        host = None
        parts = None
    if parts is None or parts.scheme.lower() not in ("http", "https") or not host:
        raise invalid_parameter(f"callbackUrl must be an http(s) URL: {url[:80]!r}")
    if any(c.isspace() for c in url):
        raise invalid_parameter("callbackUrl must not contain spaces")


def _json_object(text: str) -> dict[str, Any]:
    """``JsonStr`` parsed, or the service's refusal (malformed, not an object, absurdly deep)."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise invalid_parameter(f"JsonStr is not valid JSON: {type(exc).__name__}") from None
    if not isinstance(data, dict):
        raise invalid_parameter("JsonStr is not a JSON object")
    return data


def _task_id(seed: int, seq: int) -> str:
    digest = hashlib.blake2b(f"{seed}:{seq}".encode(), digest_size=16).hexdigest().upper()
    return f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}"


def _filter_key(query: GetResultQuery) -> tuple[Any, ...]:
    wire = query.to_wire()
    for paging in ("pageNumber", "pageSize", "lastDataId", "requiredFields", "excludeFields"):
        wire.pop(paging, None)
    return tuple(sorted((k, json.dumps(v, sort_keys=True)) for k, v in wire.items()))
