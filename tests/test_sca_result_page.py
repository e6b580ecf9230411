"""GetResult pages as plain dicts, unwrapped while parsing: the same records as ``tea.unwrap``
(and as the pydantic models), without a model per record."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qcflow.errors import ServiceUnavailableError
from qcflow.models import tea
from qcflow.models.sca import GetResultQuery, ResultPage, loads_unwrapped
from qcflow.models.sca_result import GetResultResponse, ResultInfo
from qcflow.tools.sandbox.options import PreloadOptions, SandboxOptions
from tests.conftest import FIXTURES, load_fixture
from tests.sandbox.conftest import PRELOAD_END, PRELOAD_START, running_sandbox, sca_client
from tests.test_acs_client import Script, sca

EVERY_FIELD = (
    "taskId,status,score,errorMessage,createTime,createTimeLong,taskName,vid,assignmentTime,recording,asrResult,hitResult,"
    "hitScore,agent,schemeIdList,schemeNameList,reviewStatus,reviewResult,reviewType,reviewTime,reviewTimeLong,comments,"
    "reviewer,resolver,reviewHistoryList,reviewTypeIdList"
)


def test_the_seed_page_unwraps_as_tea_unwrap_does() -> None:
    raw = (FIXTURES / "sca_get_result_seed.json").read_bytes()
    assert loads_unwrapped(raw) == tea.unwrap(json.loads(raw))
    (item,) = ResultPage.from_body(loads_unwrapped(raw)).items
    rule = item["HitResult"][0]
    hit = rule["Hits"][0]  # "Hits": {"Hit": [...]}, recognised by its parent key
    assert hit["KeyWords"][0]["Val"] == "test" and hit["Cid"] == ["xxxx"]
    condition = rule["Conditions"][0]
    assert condition["Cid"] == "a", "a plain Cid string stays as it is"
    param = condition["Operators"][0]["Param"]
    assert param["Keywords"] == ["你好"] and param["Excludes"] == ["你好"]
    assert param["IntentModelCheckParm"]["Intents"][0]["Name"] == "fvt-eci-copy-5c703091"
    assert item["ReviewHistoryList"] == tea.unwrap(json.loads(raw))["Data"]["ResultInfo"][0]["ReviewHistoryList"]


@pytest.mark.anyio
async def test_get_result_page_over_a_scripted_answer() -> None:
    body = load_fixture("sca_get_result_seed.json")
    page = await sca(Script(httpx.Response(200, json=body))).get_result_page(GetResultQuery(page_size=10))
    assert (page.count, page.page_number, page.page_size, page.request_id) == (1, 1, 10, body["RequestId"])
    assert page.items == tea.unwrap(body)["Data"]["ResultInfo"]
    assert all(type(item) is dict for item in page.items)
    typed = GetResultResponse.model_validate(body).results
    assert [ResultInfo.model_validate(item) for item in page.items] == typed


@pytest.mark.anyio
async def test_sandbox_pages_with_every_field_match_tea_unwrap_and_the_models() -> None:
    options = SandboxOptions(task_seconds=0.1, task_jitter_seconds=0, task_failure_rate=0.2,
                             preload=PreloadOptions(count=300, start=PRELOAD_START, end=PRELOAD_END, failed_rate=0.1))
    with running_sandbox(options) as server:
        client = sca_client(server)
        seen = 0
        for number in (1, 2, 3, 4):
            query = GetResultQuery(page_number=number, page_size=99, required_fields=EVERY_FIELD)
            raw = (await client.acs.call("GetResult", client._query(query))).body  # plain json.loads
            page = await client.get_result_page(query)
            expected = tea.unwrap(raw)["Data"]["ResultInfo"]
            assert page.items == expected and page.count == raw["Count"] == 300 and page.page_number == number
            typed = (await client.get_result(query)).results
            assert [ResultInfo.model_validate(item) for item in page.items] == typed
            seen += len(page.items)
            wrapped = [item for item in raw["Data"]["ResultInfo"] if isinstance(item.get("AsrResult"), dict)]
            assert wrapped, "the sandbox sent wrappers: the comparison is not vacuous"
            assert all(isinstance(item["AsrResult"], list) for item in page.items if "AsrResult" in item)
        assert seen == 300


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"Hits": {"Hit": [1]}}', {"Hits": [1]}),
        ('{"Hits": {"Hits": [1]}}', {"Hits": {"Hits": [1]}}),  # the wrong inner key: not a wrapper
        ('{"Hits": {"Hit": [1], "Extra": 2}}', {"Hits": {"Hit": [1], "Extra": 2}}),
        ('{"Other": {"Hit": [1]}}', {"Other": {"Hit": [1]}}),  # a lone {"Hit": [...]} under another key
        ('{"Cid": "a"}', {"Cid": "a"}),
        ('{"Cid": {"Cid": "a"}}', {"Cid": {"Cid": "a"}}),
        ('{"HitResult": {"HitResult": {"HitResult": [1]}}}', {"HitResult": {"HitResult": [1]}}),  # as tea.unwrap
        ('[{"AsrResult": {"AsrResult": []}}]', [{"AsrResult": []}]),
    ],
)
def test_only_the_exact_wrapper_shape_is_unwrapped(text: str, expected: Any) -> None:
    assert loads_unwrapped(text) == expected == tea.unwrap(json.loads(text))


_NAMES = sorted(set(tea.TEA_LIST_WRAPPERS) | set(tea.TEA_LIST_WRAPPERS.values()) | {"Words", "Id"})
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=3),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(_NAMES), inner, max_size=3),
    max_leaves=25,
)


@settings(max_examples=400, deadline=None)
@given(_json)
def test_unwrapping_while_parsing_equals_tea_unwrap(value: Any) -> None:
    assert loads_unwrapped(json.dumps(value)) == tea.unwrap(value)


@pytest.mark.parametrize(
    "body",
    [
        {"Success": True, "Data": {"ResultInfo": "oops"}},
        {"Success": True, "Data": {"ResultInfo": [1, 2]}},
        {"Success": True, "Count": "many", "Data": {"ResultInfo": []}},
    ],
)
@pytest.mark.anyio
async def test_a_page_of_the_wrong_shape_is_the_services_fault(body: dict) -> None:
    with pytest.raises(ServiceUnavailableError) as info:
        await sca(Script(httpx.Response(200, json=body))).get_result_page(GetResultQuery())
    assert info.value.action == "GetResult"


@pytest.mark.anyio
async def test_an_empty_page() -> None:
    page = await sca(Script(httpx.Response(200, json={"Success": True, "Count": "0", "RequestId": "R"}))).get_result_page(GetResultQuery())
    assert page == ResultPage(count=0, page_number=None, page_size=None, request_id="R", items=[])


@pytest.mark.parametrize(("status", "failed", "finished", "running"), [(None, False, False, False), (0, False, False, True),
                                                                       (1, False, True, False), (6, True, False, False), (2, True, False, False)])
def test_failed_only_for_a_present_status_other_than_running_or_finished(status: int | None, failed: bool, finished: bool, running: bool) -> None:
    info = ResultInfo.model_validate({"TaskId": "T"} if status is None else {"TaskId": "T", "Status": status})
    assert (info.failed, info.finished, info.running) == (failed, finished, running)
