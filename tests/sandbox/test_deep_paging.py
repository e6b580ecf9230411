"""GetResult's 10,000 rule, strict (default) and loose, through the real HTTP path."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from qcflow.models.sca_result import GetResultResponse
from qcflow.tools.sandbox.options import PreloadOptions
from qcflow.tools.sandbox.server import SandboxServer
from tests.sandbox.conftest import PRELOAD_END, PRELOAD_START, options, running_sandbox, sca_client

pytestmark = pytest.mark.anyio

TOTAL = 10_300
BASE = {"requiredFields": "taskId", "startTime": "2026-11-19 00:00:00", "endTime": "2026-11-21 00:00:00"}


@pytest.fixture(scope="module")
def strict() -> Iterator[SandboxServer]:
    with running_sandbox(options(preload=PreloadOptions(count=TOTAL, start=PRELOAD_START, end=PRELOAD_END))) as server:
        yield server


@pytest.fixture(scope="module")
def loose() -> Iterator[SandboxServer]:
    preload = PreloadOptions(count=TOTAL, start=PRELOAD_START, end=PRELOAD_END)
    with running_sandbox(options(preload=preload, loose_deep_paging=True)) as server:
        yield server


async def page(server: SandboxServer, number: int, size: int = 99, last: str | None = None) -> dict[str, Any]:
    """One GetResult page as the raw body (a refusal is a body too)."""
    query: dict[str, Any] = {**BASE, "pageSize": size, "pageNumber": number}
    if last is not None:
        query["lastDataId"] = last
    answer = await sca_client(server).acs.call("GetResult", {"JsonStr": json.dumps(query)}, is_success=None)
    assert answer.http_status == 200
    return answer.body


def refused(body: dict[str, Any]) -> bool:
    """The service's refusal of a page: HTTP 200, ``Success: false``, ``InvalidParameter``."""
    return body["Success"] is False and body["Code"] == "InvalidParameter" and "lastDataId" in body["Message"]


def last_of(body: dict[str, Any]) -> str:
    results = GetResultResponse.model_validate(body).results
    assert results and body["Success"] is True
    return str(results[-1].last_data_id)


async def test_strict_refuses_a_page_reaching_past_record_10000_without_last_data_id(strict) -> None:
    page_101 = await page(strict, 101)  # records 9,900..9,998: inside the first 10,000
    assert page_101["Success"] is True and len(page_101["Data"]["ResultInfo"]) == 99 and page_101["Count"] == TOTAL
    assert refused(await page(strict, 102))  # records 9,999..10,097 cross the line
    page_102 = await page(strict, 102, last=last_of(page_101))
    assert page_102["Success"] is True and len(page_102["Data"]["ResultInfo"]) == 99
    assert refused(await page(strict, 103, last=last_of(page_101))), "only the next page"
    assert refused(await page(strict, 102, last="1@a_z@nope")), "the lastDataId of the previous page, not any"
    assert (await page(strict, 103, last=last_of(page_102)))["Success"] is True


@pytest.mark.parametrize(("size", "free", "needs"), [(50, 200, 201), (64, 156, 157), (99, 101, 102), (1, 10_000, 10_001)])
async def test_strict_line_is_offset_plus_page_size_over_10000(strict, size: int, free: int, needs: int) -> None:
    """A page ending exactly at record 10,000 is free; one record further needs the cursor."""
    assert (free - 1) * size + size <= 10_000 < (needs - 1) * size + size
    assert (await page(strict, free, size))["Success"] is True
    assert refused(await page(strict, needs, size))


async def test_loose_needs_last_data_id_only_from_record_10000_on(loose) -> None:
    page_102 = await page(loose, 102)  # ends at record 10,098, starts before 10,000: free when loose
    assert page_102["Success"] is True and len(page_102["Data"]["ResultInfo"]) == 99
    assert refused(await page(loose, 103))
    last = last_of(page_102)
    page_103 = await page(loose, 103, last=last)
    assert page_103["Success"] is True
    assert refused(await page(loose, 104, last=last)), "only the next page"
    assert refused(await page(loose, 104, last="1@a_z@nope"))
    assert (await page(loose, 104, last=last_of(page_103)))["Success"] is True


@pytest.mark.parametrize("mode", ["strict", "loose"])
async def test_a_sequential_reader_carrying_last_data_id_reads_everything_in_both_modes(mode: str, request) -> None:
    """What a harvester must do to read a window past 10,000 under either rule: walk on,
    page after page, always sending the previous page's last lastDataId."""
    server = request.getfixturevalue(mode)
    seen: list[str] = []
    last: str | None = None
    for number in range(1, TOTAL // 99 + 2):
        body = await page(server, number, last=last)
        assert body["Success"] is True, (number, body.get("Message"))
        items = body["Data"]["ResultInfo"]
        seen += [item["TaskId"] for item in items]
        if items:
            last = items[-1]["LastDataId"]
    assert len(seen) == TOTAL == len(set(seen))

