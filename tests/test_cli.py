"""The `qcflow` command as a user runs it: real processes (the sandbox on a real port, stopping by itself; operator
commands against a store that is not there)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

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
    for option in ("--access-key-secret", "--error-rate", "--throttle-rate", "--drop-rate", "--preload", "--task-seconds", "--get-result-quota", "--deny-action"):
        assert option in done.stdout


@pytest.mark.parametrize("command", [["status", "--json"], ["harvest"], ["replay", "--dry-run"], ["report"]])
def test_a_store_folder_that_is_not_there_is_an_error_not_an_empty_pipeline(command: list[str], tmp_path: Path) -> None:
    """QCFLOW_STORE=file:./qcflow-dta (a typo): one line naming the folder, a non-zero exit, nothing created."""
    missing = tmp_path / "qcflow-dta"
    env = {**os.environ, "QCFLOW_STORE": f"file:{missing}", "QCFLOW_SCA_ENDPOINT": "http://127.0.0.1:9",
           "ALIBABA_CLOUD_ACCESS_KEY_ID": "id", "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "secret"}
    args = [*command, "--out", str(tmp_path / "r.html")] if command == ["report"] else command
    done = subprocess.run([QCFLOW, *args], capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path)
    assert done.returncode != 0, done.stdout
    assert f"no such folder ({missing})" in done.stdout + done.stderr
    assert not missing.exists() and not (tmp_path / "r.html").exists()


def test_a_push_prefix_with_nothing_under_it_says_so(tmp_path: Path) -> None:
    (tmp_path / "recordings" / "ccc").mkdir(parents=True)
    env = {**os.environ, "QCFLOW_STORE": f"file:{tmp_path}/store", "QCFLOW_RECORDINGS_URL": f"file:{tmp_path}/recordings",
           "QCFLOW_CCC_ENDPOINT": "http://127.0.0.1:9", "QCFLOW_SCA_ENDPOINT": "http://127.0.0.1:9",
           "ALIBABA_CLOUD_ACCESS_KEY_ID": "id", "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "secret"}
    done = subprocess.run([QCFLOW, "push", "--prefix", "ccc/2026/12/"], capture_output=True, text=True, timeout=60,
                          env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no object under 'ccc/2026/12/' in file:" in done.stderr and "nothing to push from it" in done.stderr
