"""``qcflow sandbox serve`` as a user runs it: a real process, a real port, stops by itself."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import httpx
import pytest

from qcflow.acs.client import AcsClient
from qcflow.credentials import Credentials
from qcflow.models.sca import GetResultQuery
from qcflow.sca import ScaClient

QCFLOW = os.path.join(os.path.dirname(sys.executable), "qcflow")


@pytest.mark.anyio
async def test_sandbox_serve_with_custom_credentials_and_preload() -> None:
    proc = subprocess.Popen(
        [QCFLOW, "sandbox", "serve", "--port", "0", "--access-key-id", "my-id", "--access-key-secret", "my-secret",
         "--preload", "500", "--get-result-quota", "0", "--stop-after", "20"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+", line)
        assert url, line
        sca = ScaClient(AcsClient(url.group(0), "2019-01-15", lambda: Credentials("my-id", "my-secret")))
        page = await sca.get_result(GetResultQuery(page_size=5))
        assert page.count == 500 and len(page.results) == 5
        await sca.aclose()
        stats = httpx.get(url.group(0) + "/__sandbox/stats").json()
        assert stats["tasks"] == 500 and stats["answers"]["GetResult 200"] == 1
    finally:
        proc.terminate()
        proc.wait(10)


def test_sandbox_serve_stops_by_itself() -> None:
    done = subprocess.run([QCFLOW, "sandbox", "serve", "--port", "0", "--stop-after", "0.5"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and "listening on http://127.0.0.1:" in done.stdout


def test_help_lists_the_options() -> None:
    done = subprocess.run([QCFLOW, "sandbox", "serve", "--help"], capture_output=True, text=True, timeout=30)
    for option in ("--access-key-secret", "--error-rate", "--throttle-rate", "--drop-rate", "--preload", "--task-seconds", "--get-result-quota"):
        assert option in done.stdout
