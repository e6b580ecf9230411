"""The suite-wide leak scan catches what it is there to catch (and passes masked lines)."""

from __future__ import annotations

import io
import logging

from qcflow.logs import configure_logging
from tests.leakscan import LeakScan


def test_the_scan_flags_secrets_tokens_and_signatures() -> None:
    scan = LeakScan()
    scan.scan("t", "GET /recordings/job-1.mkv?Expires=1&OSSAccessKeyId=sandbox&Signature=abcdef0123456789")
    scan.scan("t", '{"message": "secret is qcflow-sandbox-secret"}')
    scan.scan("t", '{"token": "x-oss-security-token=CAIS1234567890"}')
    assert len(scan.leaks) == 3


def test_the_scan_passes_what_qcflow_logs_masked() -> None:
    stream = io.StringIO()
    logger = configure_logging("INFO", stream)
    logger.getChild("t").info(
        "fetching %s", "https://b.oss/x.mkv?Expires=1&OSSAccessKeyId=LTAIabcdef&Signature=abcdef0123456789"
    )
    logging.getLogger("qcflow").handlers.clear()
    scan = LeakScan()
    scan.scan("t", stream.getvalue())
    assert scan.lines_scanned == 1 and scan.leaks == []


def test_the_scan_flags_a_callback_token_that_qcflow_logs_mask() -> None:
    url = "https://fn.example/sca-callback/Abcdefghijklmnopqrstuvwxyz0123456789_-"
    scan = LeakScan()
    scan.scan("t", f"sending {url}")
    assert len(scan.leaks) == 1
    stream = io.StringIO()
    logger = configure_logging("INFO", stream)
    logger.getChild("t").info("callbackUrl %s", url)
    logging.getLogger("qcflow").handlers.clear()
    scan = LeakScan()
    scan.scan("t", stream.getvalue())
    assert scan.lines_scanned == 1 and scan.leaks == [], stream.getvalue()


def test_a_personal_number_the_sandbox_says_is_a_leak() -> None:
    """Issue 24: the sandbox customers' personal numbers, raw, in a captured line fail the suite."""
    from qcflow.tools.sandbox.content import PERSONAL_CANARIES

    scan = LeakScan()
    scan.scan("t", f"harvest: row {PERSONAL_CANARIES[0]}\nharvest: row ***********")
    assert scan.lines_scanned == 2 and len(scan.leaks) == 1
