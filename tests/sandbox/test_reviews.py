"""The sandbox's people: reviews, second reviews and appeals, as GetResult and the SDK see them."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import httpx
from alibabacloud_qualitycheck20190115 import models as sca_models

from qcflow.tools.sandbox.options import DEFAULT_ACCESS_KEY_ID as AK
from qcflow.tools.sandbox.options import DEFAULT_ACCESS_KEY_SECRET as SK
from qcflow.tools.sandbox.options import PreloadOptions, SandboxOptions
from qcflow.tools.sandbox.reviews import ReviewOptions
from tests.sandbox.conftest import FakeClock, running_sandbox
from tests.sandbox.test_sdk_compat import raw_call, without_request_id
from tests.support.sdk_oracle import sca_sdk

ZONE = ZoneInfo("Asia/Shanghai")
REVIEW_FIELDS = (
    "taskId,status,score,createTimeLong,recording,reviewStatus,reviewResult,reviewer,resolver,comments,"
    "reviewTime,reviewTimeLong,reviewType,reviewHistoryList"
)
START = datetime(2026, 11, 20, 0, 0, tzinfo=timezone.utc)


def _text(moment: datetime) -> str:
    return moment.astimezone(ZONE).strftime("%Y-%m-%d %H:%M:%S")


def _sandbox(clock: FakeClock, count: int = 50, **reviews: object) -> SandboxOptions:
    return SandboxOptions(
        preload=PreloadOptions(count=count, start=START - timedelta(days=90), end=START - timedelta(days=89)),
        reviews=replace(ReviewOptions(), **reviews),  # type: ignore[arg-type]
        quotas=replace(SandboxOptions().quotas, get_result=None),
        max_clock_skew_seconds=10**9,  # a fake clock weeks away from the clients' own
    )


def _review(server, task_id: str, **body: object) -> dict:
    answer = httpx.post(f"{server.url}/__sandbox/review", json={"taskId": task_id, **body})
    assert answer.status_code == 200, answer.text
    return answer.json()


def _by_review(server, lo: datetime, hi: datetime, page: int = 1, size: int = 99, **extra: object) -> dict:
    query = {
        "reviewStartTime": _text(lo),
        "reviewEndTime": _text(hi),
        "pageNumber": page,
        "pageSize": size,
        "requiredFields": REVIEW_FIELDS,
        **extra,
    }
    return raw_call(server, "GetResult", "2019-01-15", {"JsonStr": json.dumps(query)})


def _first_ids(server, n: int) -> list[str]:
    query = {
        "pageSize": n,
        "requiredFields": "taskId",
        "startTime": _text(START - timedelta(days=91)),
        "endTime": _text(START),
    }
    body = raw_call(server, "GetResult", "2019-01-15", {"JsonStr": json.dumps(query)})
    return [item["TaskId"] for item in body["Data"]["ResultInfo"]]


def test_reviews_and_an_appeal_in_the_sdks_shapes() -> None:
    clock = FakeClock(START.timestamp())
    with running_sandbox(_sandbox(clock), clock) as server:
        task = _first_ids(server, 1)[0]
        _review(server, task, score=70, result=0)
        clock.advance(60)
        _review(server, task, appeal=True, upheld=True, score=90)
        sdk = sca_sdk(server.endpoint, AK, SK, protocol="http")
        query = {
            "reviewStartTime": _text(START),
            "reviewEndTime": _text(START + timedelta(minutes=5)),
            "requiredFields": REVIEW_FIELDS,
        }
        answer = sdk.get_result(sca_models.GetResultRequest(json_str=json.dumps(query))).body
        raw = raw_call(server, "GetResult", "2019-01-15", {"JsonStr": json.dumps(query)})
        # the SDK's models rebuild exactly what was sent: no review field unknown or misnamed
        assert without_request_id(answer.to_map()) == without_request_id(raw)
        assert answer.count == 1
        info = answer.data.result_info[0]
        assert info.task_id == task and info.score == 90 and info.review_status == 4 and info.review_type == 2
        assert info.review_time_long == str(int(START.timestamp()) + 60)
        history = info.review_history_list.review_history
        assert [(h.old_score, h.score) for h in history][1] == (70, 90)
        assert history[0].score == 70 and history[0].review_result == 0 and history[0].complain_result is None
        assert history[1].complain_result == 1 and history[1].time == (int(START.timestamp()) + 60) * 1000
        assert raw["Data"]["ResultInfo"][0]["ReviewHistoryList"].keys() == {"ReviewHistory"}
        assert info.resolver and isinstance(info.comments, str)


def test_the_review_window_selects_on_the_last_review_only() -> None:
    clock = FakeClock(START.timestamp())
    with running_sandbox(_sandbox(clock), clock) as server:
        a, b = _first_ids(server, 2)
        _review(server, a)
        _review(server, b)
        first_minute = (START, START + timedelta(seconds=59))
        assert _by_review(server, *first_minute)["Count"] == 2
        clock.advance(3600)
        _review(server, a)
        assert [i["TaskId"] for i in _by_review(server, *first_minute)["Data"]["ResultInfo"]] == [b]
        later = _by_review(server, START + timedelta(hours=1), START + timedelta(hours=1, seconds=1))
        assert [i["TaskId"] for i in later["Data"]["ResultInfo"]] == [a]
        # an upload window still holds both (months ago), a review window of then holds neither
        assert _by_review(server, START - timedelta(days=91), START - timedelta(days=1))["Count"] == 0


def test_people_review_finished_tasks_on_their_own_some_twice_some_appealed() -> None:
    clock = FakeClock(START.timestamp())
    options = replace(
        _sandbox(
            clock,
            count=0,
            share=1.0,
            twice_share=0.5,
            appeal_share=0.5,
            delay_seconds=10,
            jitter_seconds=0,
            appeal_delay_seconds=10,
        ),
        task_seconds=1.0,
        task_jitter_seconds=0.0,
    )
    with running_sandbox(options, clock) as server:
        sca = server.app.sca
        for n in range(40):
            sca.upload_audio_data(
                json.dumps(
                    {"callList": [{"voiceFileUrl": f"https://x/{n}.mkv", "callId": f"job-{n}", "fileName": f"{n}.mkv"}]}
                )
            )
        clock.advance(5)
        assert _by_review(server, START, START + timedelta(hours=2))["Count"] == 0  # nobody has reviewed yet
        clock.advance(3600)
        body = _by_review(server, START, START + timedelta(hours=2))
        items = body["Data"]["ResultInfo"]
        assert body["Count"] == 40 and len(items) == 40
        histories = [item["ReviewHistoryList"]["ReviewHistory"] for item in items]
        assert any(len(h) >= 2 for h in histories) and any("ComplainResult" in h[-1] for h in histories)
        for item, history in zip(items, histories):
            # the last entry is the current state; each entry starts from the score the previous left
            assert item["Score"] == history[-1]["Score"]
            assert all(later["OldScore"] == earlier["Score"] for earlier, later in zip(history, history[1:]))
            assert int(item["ReviewTimeLong"]) == history[-1]["Time"] // 1000
            assert item["ReviewStatus"] == (
                (4 if history[-1]["ComplainResult"] else 5) if "ComplainResult" in history[-1] else 1
            )
        assert server.app.snapshot()["reviews"]["saved"] == sum(len(h) for h in histories)


def test_more_than_10000_reviews_in_one_hour_page_only_with_last_data_id() -> None:
    clock = FakeClock(START.timestamp())
    with running_sandbox(_sandbox(clock, count=10_050), clock) as server:
        sca = server.app.sca
        for task in sca._tasks:  # noqa: SLF001 - building a backlog directly
            sca.reviews.review(task, int(START.timestamp() * 1000) + task.seq * 100, 80)
        hour = (START, START + timedelta(hours=1))
        first = _by_review(server, *hour, page=101)
        assert first["Count"] == 10_050 and len(first["Data"]["ResultInfo"]) == 99
        refused = _by_review(server, *hour, page=102)
        assert refused["Success"] is False if "Success" in refused else refused["Code"] == "InvalidParameter"
        cursor = first["Data"]["ResultInfo"][-1]["LastDataId"]
        last = _by_review(server, *hour, page=102, lastDataId=cursor)
        assert len(last["Data"]["ResultInfo"]) == 10_050 - 101 * 99


def test_review_time_long_in_milliseconds_when_asked() -> None:
    clock = FakeClock(START.timestamp() + 0.25)
    with running_sandbox(_sandbox(clock, time_unit="ms"), clock) as server:
        task = _first_ids(server, 1)[0]
        _review(server, task)
        item = _by_review(server, START, START + timedelta(minutes=1))["Data"]["ResultInfo"][0]
        assert item["ReviewTimeLong"] == str(int(START.timestamp() * 1000) + 250)


def test_review_endpoint_refuses_an_unknown_task() -> None:
    with running_sandbox(SandboxOptions()) as server:
        assert httpx.post(f"{server.url}/__sandbox/review", json={"taskId": "nope"}).status_code == 404
        assert httpx.post(f"{server.url}/__sandbox/review", content=b"{").status_code == 400


def test_a_preloaded_backlog_of_reviews() -> None:
    clock = FakeClock(START.timestamp())
    options = replace(_sandbox(clock, count=1_000), preload=PreloadOptions(count=1_000, start=START - timedelta(days=1), end=START, reviews=300))
    with running_sandbox(options, clock) as server:
        body = _by_review(server, START - timedelta(days=1), START, size=1)
        assert body["Count"] == 300 and server.app.snapshot()["reviews"]["saved"] == 300
        item = body["Data"]["ResultInfo"][0]
        assert int(item["ReviewTimeLong"]) >= int(item["CreateTimeLong"])
