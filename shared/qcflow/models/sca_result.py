"""``GetResult``'s answer as typed pydantic models, for code that looks into results: the tools
(the report's DDL, the sandbox) and tests.

The functions read GetResult pages as plain dicts (``qcflow.models.sca.ResultPage``) and never
import this module: defining its models costs several milliseconds of a cold start.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from qcflow.models import tea
from qcflow.models.base import PascalModel
from qcflow.models.sca import STATUS_FINISHED, STATUS_RUNNING


class AsrSentence(PascalModel):
    words: str | None = None
    begin: int | None = None
    end: int | None = None
    emotion_value: int | None = None
    speech_rate: int | None = None
    role: str | None = None
    identity: str | None = None


class KeyWord(PascalModel):
    from_: int | None = Field(default=None, alias="From")
    to: int | None = None
    val: str | None = None
    cid: str | None = None


class Phrase(PascalModel):
    words: str | None = None
    begin: int | None = None
    end: int | None = None
    emotion_value: int | None = None
    role: str | None = None


class Hit(PascalModel):
    key_words: list[KeyWord] | None = Field(default=None, alias="KeyWords")
    cid: list[str] | None = None
    phrase: Phrase | None = None


class HitRule(PascalModel):
    """One rule that hit, with its hits; ``Conditions`` are kept as plain (unwrapped) data."""

    type: str | None = None
    name: str | None = None
    rid: str | None = None
    review_result: int | None = None
    score: int | None = None
    scheme_id: int | None = None
    scheme_version: int | None = None
    hits: list[Hit] | None = None
    conditions: list[dict[str, Any]] | None = None


class HitScore(PascalModel):
    score_name: str | None = None
    score_number: str | None = None
    score_id: str | None = None
    rule_id: str | None = None


class Recording(PascalModel):
    """The file as uploaded; ``Id`` is the ``callId`` sent (the ContactId)."""

    id: str | None = None
    call_id: str | None = None
    primary_id: str | None = None
    name: str | None = None
    url: str | None = None
    duration: int | None = None
    caller: str | None = None
    callee: str | None = None
    call_type: int | None = None
    call_time: str | None = None
    business: str | None = None
    data_set_name: str | None = None
    dialogue_size: int | None = None
    task_config_id: int | None = None
    task_config_name: str | None = None
    customer_name: str | None = None


class Agent(PascalModel):
    id: str | None = None
    name: str | None = None
    skill_group: str | None = None


class ReviewHistory(PascalModel):
    type: int | None = None
    operator: int | None = None
    operator_name: str | None = None
    time_str: str | None = None
    time: int | None = None
    score: int | None = None
    old_score: int | None = None
    review_result: int | None = None
    complain_result: int | None = None
    review_manager_type: str | None = None
    comments: str | None = None
    review_right_rule: list[dict[str, Any]] | None = None


class ResultInfo(PascalModel):
    """One task's result. ``Status``: 0 running, 1 finished, anything else failed."""

    task_id: str | None = None
    status: int | None = None
    score: int | None = None
    error_message: str | None = None
    create_time: str | None = None
    create_time_long: str | None = None
    last_data_id: str | None = None
    task_name: str | None = None
    vid: str | None = None
    assignment_time: str | None = None
    review_status: int | None = None
    review_result: int | None = None
    review_type: int | None = None
    review_time: str | None = None
    review_time_long: str | None = None
    reviewer: str | None = None
    resolver: str | None = None
    comments: str | None = None
    asr_result: list[AsrSentence] | None = None
    hit_result: list[HitRule] | None = None
    hit_score: list[HitScore] | None = None
    recording: Recording | None = None
    agent: Agent | None = None
    review_history_list: list[ReviewHistory] | None = None
    scheme_id_list: list[int] | None = None
    scheme_name_list: list[str] | None = None
    review_type_id_list: list[dict[str, Any]] | None = None

    @model_validator(mode="before")
    @classmethod
    def _unwrap(cls, data: Any) -> Any:
        return tea.unwrap(data)

    @property
    def finished(self) -> bool:
        return self.status == STATUS_FINISHED

    @property
    def running(self) -> bool:
        return self.status == STATUS_RUNNING

    @property
    def failed(self) -> bool:
        """A status other than running or finished; an absent ``Status`` is unknown, not failed
        (e.g. ``status`` was not among the ``requiredFields``)."""
        return self.status is not None and self.status not in (STATUS_RUNNING, STATUS_FINISHED)


class GetResultResponse(PascalModel):
    """A page of results; ``results`` is ``Data.ResultInfo`` unwrapped (empty when none)."""

    success: bool | None = None
    code: str | None = None
    message: str | None = None
    request_id: str | None = None
    page_number: int | None = None
    page_size: int | None = None
    count: int | None = None
    result_count_id: str | None = None
    results: list[ResultInfo] = Field(default_factory=list, exclude=True)

    @model_validator(mode="before")
    @classmethod
    def _lift_results(cls, data: Any) -> Any:
        if not isinstance(data, dict) or "results" in data:
            return data
        data = dict(data)
        items = data.pop("Data", None)  # {"ResultInfo": [...]}; each item unwraps itself
        if isinstance(items, dict):
            items = items.get("ResultInfo")
        data["results"] = items or []
        return data

    def to_wire(self) -> dict[str, Any]:
        """The answer as the service sends it, Tea wrappers included."""
        body = super().to_wire()
        body["Data"] = {"ResultInfo": tea.wrap([item.to_wire() for item in self.results])}
        return body
