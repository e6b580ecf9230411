"""JSON logs with the fields needed to debug, and no secret in them."""

from __future__ import annotations

import io
import json
import logging

import httpx
import pytest

from qcflow.acs.client import AcsClient, RetryPolicy
from qcflow.credentials import Credentials
from qcflow.logs import configure_logging, redact
from qcflow.models.sca import GetResultQuery
from qcflow.sca import ScaClient


@pytest.fixture(autouse=True)
def _restore_qcflow_logger():
    yield
    logger = logging.getLogger("qcflow")
    logger.handlers, logger.propagate = [], True
    logger.setLevel(logging.NOTSET)


def test_redact_masks_url_signatures_and_credentials() -> None:
    url = "https://ccc.oss-cn-shanghai.aliyuncs.com/r/job-1.mkv?Expires=1704956435&OSSAccessKeyId=LTAIabc&Signature=q8x%2BSig%3D"
    assert redact(url) == "https://ccc.oss-cn-shanghai.aliyuncs.com/r/job-1.mkv?Expires=1704956435&OSSAccessKeyId=***&Signature=***"
    assert "tok123" not in redact('{"SecurityToken": "tok123"}')
    assert redact("x-oss-signature=abc&keep=1") == "x-oss-signature=***&keep=1"


@pytest.mark.anyio
async def test_retry_logs_are_json_with_request_ids() -> None:
    stream = io.StringIO()
    configure_logging("INFO", stream)
    answers = iter([httpx.Response(400, json={"Code": "Throttling.User", "Message": "slow", "RequestId": "REQ-7"}), httpx.Response(200, json={"Success": True, "Data": {"ResultInfo": []}})])
    acs = AcsClient("qualitycheck.cn-hangzhou.aliyuncs.com", "2019-01-15", lambda: Credentials("AKID", "SECRETVALUE", "TOKENVALUE"),
                    retry=RetryPolicy(max_attempts=2, backoff_initial_seconds=0.001, backoff_max_seconds=0.001),
                    transport=httpx.MockTransport(lambda request: next(answers)))
    await ScaClient(acs).get_result(GetResultQuery())
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    (retry,) = [line for line in lines if line.get("event") == "acs_retry"]
    assert retry["level"] == "WARNING" and retry["logger"] == "qcflow.acs"
    assert retry["action"] == "GetResult" and retry["code"] == "Throttling.User" and retry["request_id"] == "REQ-7" and retry["attempt"] == 1
    assert "SECRETVALUE" not in stream.getvalue() and "TOKENVALUE" not in stream.getvalue()


def test_extra_fields_and_messages_are_redacted() -> None:
    stream = io.StringIO()
    configure_logging("DEBUG", stream)
    logging.getLogger("qcflow.push").info("fetched %s", "https://x/y.mkv?Signature=abc", extra={"voice_file_url": "https://x/y.mkv?Expires=1&Signature=def"})
    line = json.loads(stream.getvalue())
    assert line["message"] == "fetched https://x/y.mkv?Signature=***"
    assert line["voice_file_url"] == "https://x/y.mkv?Expires=1&Signature=***"
