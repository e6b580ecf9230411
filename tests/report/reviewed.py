"""A lake with reviews, written the way the harvest writes it: ``results/`` and ``reviews/`` rows
made by ``qcflow.harvest.records.to_record`` from GetResult items as SCA sends them.

Until the review feed lands (r-reviews), this is the feed's contract played by hand: a review
row is the whole result as it stood after that review (``review_time`` always set,
``review_type`` always present), partitioned by review time. Each task's ``final`` score is
what the SCA console shows once every review is saved: what the latest view must give.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from qcflow.harvest.records import Partitioner, encode_line, to_record
from qcflow.store import ObjectStore

ZONE = ZoneInfo("Asia/Shanghai")
UPLOAD = datetime(2026, 11, 20, 10, 0, tzinfo=ZONE)


@dataclass
class Review:
    """One review saved in SCA: who, when, the score before and after, and its verdict."""

    at: datetime
    old: float
    new: float
    by: str | None = "张三"
    result: int | None = 1
    complain: int | None = None  # set on the review that settles an appeal
    status: int = 1
    text_time: bool = False  # the row carries ReviewTime text only (no ReviewTimeLong)


@dataclass
class Task:
    task_id: str
    call_id: str | None
    score: float | None
    upload: datetime = UPLOAD
    reviews: list[Review] = field(default_factory=list)
    #: reviews already saved when the harvest wrote the results/ row (None: no results/ row)
    seen_at_finish: int | None = 0
    state: str = "finished"
    agent: str = "7"

    @property
    def final(self) -> float | None:
        return self.reviews[-1].new if self.reviews else self.score

    @property
    def result_id(self) -> str:
        return f"{self.task_id}|{self.call_id or f'{self.task_id}-vid'}"


def item(task: Task, reviews: list[Review]) -> dict[str, Any]:
    """The GetResult item of ``task`` after ``reviews`` (SCA's PascalCase, Tea wrappers)."""
    body: dict[str, Any] = {
        "TaskId": task.task_id,
        "Status": 1 if task.state == "finished" else 6,
        "Score": (reviews[-1].new if reviews else task.score) if task.state == "finished" else None,
        "CreateTimeLong": str(int(task.upload.timestamp())),
        "Vid": f"{task.task_id}-vid",
        "Agent": {"Id": task.agent, "Name": f"agent {task.agent}", "SkillGroup": "售后"},
        "HitResult": {"HitResult": [{"Rid": "1101", "Name": "开场白检测", "Type": "服务规范"}]},
        "ReviewStatus": 0,
        "ErrorMessage": None if task.state == "finished" else "audio file download failed",
    }
    if task.call_id:
        body["Recording"] = {"Id": task.call_id, "Name": f"{task.call_id}.mkv"}
    if reviews:
        last = reviews[-1]
        body.update(
            {
                "ReviewStatus": last.status,
                "ReviewResult": last.result,
                "Resolver": last.by,
                "Reviewer": "assigned-qa",
                "ReviewType": 2,
                "Comments": "checked",
                "ReviewHistoryList": {
                    "ReviewHistory": [
                        {
                            "Type": 1,
                            "OperatorName": r.by,
                            "Time": int(r.at.timestamp() * 1000),
                            "TimeStr": r.at.strftime("%Y-%m-%d %H:%M:%S"),
                            "OldScore": r.old,
                            "Score": r.new,
                            "ReviewResult": 1 if r.result == 1 else 0,
                            **({"ComplainResult": r.complain} if r.complain is not None else {}),
                        }
                        for r in reviews
                    ]
                },
            }
        )
        if last.text_time:
            body["ReviewTime"] = last.at.strftime("%Y-%m-%d %H:%M:%S")
        else:
            body["ReviewTimeLong"] = str(int(last.at.timestamp()))
    return body


def tasks() -> list[Task]:
    """The cases: reviewed once, twice, appealed (upheld, rejected), reviewed before the
    results/ row was written, a review row with text time only, two recordings of one upload,
    unreviewed, failed, and a task whose results/ row is missing."""
    t = UPLOAD + timedelta(hours=2)
    return [
        Task("T-once", "c-once", 80, reviews=[Review(t, 80, 90, result=1)]),
        Task(
            "T-twice",
            "c-twice",
            70,
            reviews=[Review(t, 70, 60, by="李四", result=0), Review(t + timedelta(days=1), 60, 65, result=2)],
        ),
        Task(
            "T-appeal-up",
            "c-up",
            80,
            reviews=[
                Review(t, 80, 70, result=0),
                Review(t + timedelta(days=2), 70, 85, by="王五", complain=1, status=4),
            ],
        ),
        Task(
            "T-appeal-down",
            "c-down",
            75,
            reviews=[
                Review(t + timedelta(hours=1), 75, 60, by="李四", result=0),
                Review(t + timedelta(days=3), 60, 60, by="王五", result=0, complain=0, status=5),
            ],
        ),
        # reviewed before the harvest wrote its finished row: that row already holds the review
        Task(
            "T-early",
            "c-early",
            60,
            reviews=[Review(UPLOAD + timedelta(minutes=3), 60, 50, result=2)],
            seen_at_finish=1,
        ),
        # the results/ row was written after the first of two reviews
        Task(
            "T-mid",
            "c-mid",
            88,
            reviews=[Review(t, 88, 92, result=1), Review(t + timedelta(hours=5), 92, 94, by=None, result=1)],
            seen_at_finish=1,
        ),
        # the first review row carries ReviewTime text (SCA's zone, 12:00): read as UTC it would
        # look later than the second (13:00+08:00) and win
        Task(
            "T-text",
            "c-text",
            40,
            reviews=[Review(t, 40, 45, result=1, text_time=True), Review(t + timedelta(hours=1), 45, 55, result=1)],
        ),
        Task("T-multi", "c-m1", 66, reviews=[Review(t, 66, 76, result=1)]),
        Task("T-multi", "c-m2", 67),
        Task("T-novid", None, 58, reviews=[Review(t, 58, 59, result=3)]),
        Task("T-plain", "c-plain", 95, agent="8"),
        Task("T-failed", "c-failed", None, state="failed"),
        # reviewed, but its results/ row is not in the lake (lost, or out of the range read)
        Task("T-orphan", "c-orphan", 30, reviews=[Review(t, 30, 35, result=1)], seen_at_finish=None),
    ]


@dataclass
class Lake:
    tasks: list[Task]
    results: list[dict[str, Any]]
    reviews: list[dict[str, Any]]

    @property
    def lines(self) -> list[dict[str, Any]]:
        return self.results + self.reviews


def write_lake(store: ObjectStore, cases: list[Task] | None = None, *, gz: bool = False) -> Lake:
    """Every row of ``cases`` into ``store``: results/ by upload time, reviews/ by review time,
    one part per partition (a review row is harvested an hour after its review)."""
    cases = tasks() if cases is None else cases
    partitioner = Partitioner(ZONE)
    parts: dict[str, list[dict[str, Any]]] = {}
    results, reviews = [], []
    for task in cases:
        if task.seen_at_finish is not None:
            seen = task.reviews[: task.seen_at_finish]
            # a results/ row that already holds a review was written late: after that review's own row
            finished = max([task.upload + timedelta(minutes=5), *(r.at + timedelta(hours=2) for r in seen)])
            row = to_record(item(task, seen), ZONE, _utc(finished))
            results.append(row)
            parts.setdefault(f"results/{partitioner.of_seconds(task.upload.timestamp())}", []).append(row)
        for index, review in enumerate(task.reviews):
            row = to_record(item(task, task.reviews[: index + 1]), ZONE, _utc(review.at + timedelta(hours=1)))
            row.setdefault("review_type", None)
            reviews.append(row)
            parts.setdefault(f"reviews/{partitioner.of_seconds(review.at.timestamp())}", []).append(row)
    for number, (partition, rows) in enumerate(sorted(parts.items()), start=1):
        body = b"".join(encode_line(row) for row in rows)
        key = f"{partition}/part-{number:010d}-fixture.jsonl" + (".gz" if gz else "")
        store.put(key, gzip.compress(body) if gz else body)
    return Lake(cases, results, reviews)


def _utc(moment: datetime) -> str:
    from datetime import timezone

    return moment.astimezone(timezone.utc).replace(microsecond=0).isoformat()
