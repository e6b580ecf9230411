"""People in the sandbox: QA staff review finished results (复核), agents appeal (申诉).

What a review changes is exactly what GetResult's page lists for it, in the official SDK's
shapes (``GetResultResponseBodyDataResultInfo``): ``ReviewStatus`` (0 not reviewed, 1
reviewed, 3 appeal pending, 4 appeal upheld, 5 appeal rejected), ``ReviewResult`` (0 wrong,
1 correct, 2 partly correct, 3 to review), ``Score`` (the reviewed score), ``Resolver`` (who
reviewed) and ``Reviewer`` (the QA person assigned), ``Comments``, ``ReviewTime`` (text, like
``CreateTime``), ``ReviewTimeLong`` (a string; the page's example is in seconds, and
``ReviewOptions.time_unit`` sends milliseconds instead, since the unit is UNCONFIRMED),
``ReviewType`` (1 automatic, 2 manual) and ``ReviewHistoryList`` (Tea-wrapped as
``{"ReviewHistory": [...]}``; each entry ``Type``, ``OperatorName``, ``Time`` (ms),
``TimeStr``, ``OldScore``, ``Score``, ``ReviewResult``, ``Comments`` and, for the review that
settles an appeal, ``ComplainResult`` (1 upheld, 0 rejected)).

Filing an appeal sets ``ReviewStatus`` 3 and saves no review (its time does not move);
settling it is a review of its own. ``reviewStartTime``/``reviewEndTime`` select on the time
the *last* review was saved: ``ReviewBook`` keeps the reviewed tasks sorted by it, so a
review window is two bisects, as an upload window is. A task reviewed again leaves its old
place (the old window's ``Count`` drops: offsets move under a reader paging it).

Which tasks are reviewed: each task that finishes (status 1) is drawn once against
``ReviewOptions.share``; a reviewed one is reviewed again with ``twice_share`` and appealed
with ``appeal_share`` (then settled ``appeal_delay_seconds`` later). Events are applied at
their own time, lazily, before any answer (``ScaState._advance``), so what a read sees never
depends on when the sandbox got round to it. ``ScaState.review`` reviews one task on demand
(``POST /__sandbox/review``; benchmarks use it to build a backlog).
"""

from __future__ import annotations

import bisect
import heapq
import random
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal
from zoneinfo import ZoneInfo

_RESOLVERS = ("质检员张敏", "质检员刘洋", "质检员赵磊", "质检组长孙丽")
_COMMENTS = ("开场白不规范", "服务态度良好", "漏检禁用语", "规则误判,已修正", "")

Kind = Literal["review", "appeal", "settle"]


@dataclass(frozen=True)
class ReviewOptions:
    """How people review finished results (all off by default: no share, no reviews)."""

    #: Share of finished tasks reviewed (0..1), ``delay_seconds`` (+ up to ``jitter_seconds``) after they finish.
    share: float = 0.0
    delay_seconds: float = 5.0
    jitter_seconds: float = 5.0
    #: Of the reviewed tasks: reviewed a second time (``delay_seconds`` after the first)…
    twice_share: float = 0.0
    #: …or appealed by the agent after the last review, then settled ``appeal_delay_seconds`` later.
    appeal_share: float = 0.0
    appeal_delay_seconds: float = 5.0
    #: Unit of ``ReviewTimeLong``: the page's example is in seconds (``"s"``); ``"ms"`` checks readers.
    time_unit: Literal["s", "ms"] = "s"


@dataclass
class ReviewState:
    """A task's review fields as GetResult shows them (``history`` oldest first)."""

    status: int = 0
    result: int = 3
    score: int | None = None
    reviewer: str = ""
    resolver: str = ""
    comments: str = ""
    review_type: int | None = None
    time_ms: int | None = None
    history: list[dict[str, Any]] = field(default_factory=list)


class ReviewBook:
    """Review state per task, the tasks ordered by last review time, and the events due."""

    def __init__(self, options: ReviewOptions, seed: int, zone: ZoneInfo) -> None:
        self.options = options
        self.zone = zone
        self._rng = random.Random(seed * 31 + 5)
        self._state: dict[int, ReviewState] = {}
        self._keys: list[tuple[int, int]] = []  # (last review second, seq), sorted
        self._tasks: list[Any] = []
        self._due: list[tuple[int, int, Kind, Any]] = []
        self._n = 0
        #: Reviews saved so far (each a future row in ``reviews/``), appeals filed.
        self.saved = 0
        self.appeals = 0

    # ------------------------------------------------------------------ scheduling
    def finished(self, task: Any, finish_ms: int) -> None:
        """``task`` just finished: draw whether (and how) people will review it."""
        options = self.options
        if options.share <= 0 or self._rng.random() >= options.share:
            return
        at = finish_ms + self._delay_ms()
        self._push(at, "review", task)
        if self._rng.random() < options.twice_share:
            at += self._delay_ms()
            self._push(at, "review", task)
        if self._rng.random() < options.appeal_share:
            at += self._delay_ms()
            self._push(at, "appeal", task)
            self._push(at + int(options.appeal_delay_seconds * 1000), "settle", task)

    def _delay_ms(self) -> int:
        return int((self.options.delay_seconds + self._rng.uniform(0, self.options.jitter_seconds)) * 1000)

    def _push(self, at_ms: int, kind: Kind, task: Any) -> None:
        self._n += 1
        heapq.heappush(self._due, (at_ms, self._n, kind, task))

    def apply_due(self, now_ms: int, machine_score: Any) -> bool:
        """Apply every event due by ``now_ms``, each at its own time; whether any was."""
        moved = False
        while self._due and self._due[0][0] <= now_ms:
            at_ms, _, kind, task = heapq.heappop(self._due)
            if kind == "appeal":
                self.appeal(task)
            else:
                self.review(task, at_ms, machine_score(task), settle=kind == "settle")
            moved = True
        return moved

    # ------------------------------------------------------------------ people
    def state(self, task: Any) -> ReviewState | None:
        return self._state.get(task.seq)

    def appeal(self, task: Any) -> None:
        """The agent appeals the last review: ``ReviewStatus`` 3; no review is saved."""
        state = self._state.get(task.seq)
        if state is None or state.status in (3,):
            return
        state.status = 3
        self.appeals += 1

    def review(
        self,
        task: Any,
        at_ms: int,
        machine_score: int | None,
        *,
        settle: bool = False,
        score: int | None = None,
        result: int | None = None,
        upheld: bool | None = None,
        resolver: str | None = None,
        comments: str | None = None,
    ) -> ReviewState:
        """Save one review of ``task`` at ``at_ms`` (settling a pending appeal when ``settle``
        or when the task's status is 3): every field the page lists moves together."""
        rng = self._rng
        state = self._state.get(task.seq)
        if state is None:
            state = self._state[task.seq] = ReviewState(score=machine_score, reviewer=rng.choice(_RESOLVERS))
        else:
            self._unindex(task, state)
        settling = settle or state.status == 3
        old = state.score if state.score is not None else (machine_score or 0)
        if settling:
            upheld = bool(rng.random() < 0.5) if upheld is None else upheld
            new = score if score is not None else (min(100, old + rng.randint(5, 15)) if upheld else old)
            state.status = 4 if upheld else 5
        else:
            new = score if score is not None else max(0, min(100, old + rng.choice((-15, -10, -5, 0, 5, 10))))
            state.status = 1
        state.result = result if result is not None else rng.choice((0, 1, 1, 2))
        state.score = new
        state.resolver = resolver if resolver is not None else rng.choice(_RESOLVERS)
        state.comments = comments if comments is not None else rng.choice(_COMMENTS)
        state.review_type = 2
        # a later review never shares (or precedes) the last one's millisecond
        state.time_ms = max(at_ms, (state.time_ms or 0) + 1)
        entry: dict[str, Any] = {
            "Type": 1,
            "OperatorName": state.resolver,
            "Time": state.time_ms,
            "TimeStr": self._moment(state.time_ms).strftime("%Y-%m-%d %H:%M:%S"),
            "OldScore": old,
            "Score": new,
            "ReviewResult": 1 if state.result == 1 else 0,
            "Comments": state.comments,
        }
        if settling:
            entry["ComplainResult"] = 1 if state.status == 4 else 0
        state.history.append(entry)
        self._index(task, state)
        self.saved += 1
        return state

    # ------------------------------------------------------------------ GetResult
    def between(self, lo_s: int | None, hi_s: int | None) -> list[Any]:
        """Tasks whose last review was saved in seconds ``lo_s..hi_s`` (both inclusive)."""
        lo = 0 if lo_s is None else bisect.bisect_left(self._keys, (lo_s, -1))
        hi = len(self._keys) if hi_s is None else bisect.bisect_right(self._keys, (hi_s, 1 << 62))
        return self._tasks[lo:hi]

    def fields(self, task: Any, machine_score: int | None) -> dict[str, Any]:
        """The review fields of a finished task as GetResult sends them (before selection)."""
        state = self._state.get(task.seq)
        if state is None:
            return {
                "Score": machine_score,
                "ReviewStatus": 0,
                "ReviewResult": 3,
                "Comments": "",
                "Reviewer": "",
                "Resolver": "",
            }
        assert state.time_ms is not None
        seconds = state.time_ms // 1000
        return {
            "Score": state.score,
            "ReviewStatus": state.status,
            "ReviewResult": state.result,
            "Comments": state.comments,
            "Reviewer": state.reviewer,
            "Resolver": state.resolver,
            "ReviewTime": self._moment(state.time_ms).strftime("%Y-%m-%dT%H:%MZ"),
            "ReviewTimeLong": str(state.time_ms if self.options.time_unit == "ms" else seconds),
            "ReviewType": state.review_type,
            "ReviewHistoryList": {"ReviewHistory": [dict(entry) for entry in state.history]},
        }

    def _moment(self, ms: int) -> datetime:
        return datetime.fromtimestamp(ms / 1000, timezone.utc).astimezone(self.zone)

    def _index(self, task: Any, state: ReviewState) -> None:
        assert state.time_ms is not None
        key = (state.time_ms // 1000, task.seq)
        if not self._keys or key > self._keys[-1]:  # the usual case: reviews come in time order
            self._keys.append(key)
            self._tasks.append(task)
            return
        at = bisect.bisect_right(self._keys, key)
        self._keys.insert(at, key)
        self._tasks.insert(at, task)

    def _unindex(self, task: Any, state: ReviewState) -> None:
        if state.time_ms is None:
            return
        at = bisect.bisect_left(self._keys, (state.time_ms // 1000, task.seq))
        if at < len(self._keys) and self._keys[at] == (state.time_ms // 1000, task.seq):
            del self._keys[at]
            del self._tasks[at]

    def __len__(self) -> int:
        return len(self._keys)
