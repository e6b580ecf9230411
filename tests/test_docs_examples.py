"""The two worked examples in docs/ run as written: their exported settings and the invoker they show.

docs/example-own-recordings.md exports the settings and pushes a folder of recordings with
``qcflow push --prefix``; docs/example-handler-event.md invokes the push and harvest handlers with
event files through the ``invoke.py`` it shows. Both run here against the sandbox on loopback, in
child processes (the CLI and the handlers read their settings from the environment once).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from qcflow.tools.fc_local import oss_event, timer_event
from qcflow.tools.sandbox.options import SandboxOptions
from qcflow.tools.sandbox.server import SandboxServer

ROOT = Path(__file__).resolve().parents[1]
OWN = (ROOT / "docs" / "example-own-recordings.md").read_text(encoding="utf-8")
HANDLER = (ROOT / "docs" / "example-handler-event.md").read_text(encoding="utf-8")
DOC_PORT = "8791"


def _blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", text, re.S | re.M)


def _exports(text: str) -> dict[str, str]:
    """Every ``export A=1 B=2`` line of the page's shell blocks."""
    found: dict[str, str] = {}
    for block in _blocks(text, "sh"):
        for line in block.splitlines():
            if line.startswith("export "):
                for word in shlex.split(line)[1:]:
                    name, _, value = word.partition("=")
                    found[name] = value
    return found


@pytest.fixture
def sandbox() -> Iterator[SandboxServer]:
    with SandboxServer(SandboxOptions(task_seconds=0.0, task_jitter_seconds=0.0)) as server:
        yield server


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def test_the_examples_run_as_written(sandbox: SandboxServer, tmp_path: Path) -> None:
    exports = _exports(OWN)
    assert {"QCFLOW_RECORDINGS_URL", "QCFLOW_STORE", "QCFLOW_CCC_ENDPOINT", "QCFLOW_SCA_ENDPOINT"} <= set(exports)
    assert f"--port {DOC_PORT}" in OWN and all(DOC_PORT in exports[f"QCFLOW_{n}_ENDPOINT"] for n in ("CCC", "SCA"))
    port = sandbox.url.rsplit(":", 1)[1].rstrip("/")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("QCFLOW_", "ALIBABA_CLOUD_"))},
        **{name: value.replace(DOC_PORT, port) for name, value in exports.items()},
        "PYTHONPATH": str(ROOT / "shared"),
        "QCFLOW_LOG_LEVEL": "WARNING",
    }
    folder = tmp_path / "my-recordings" / "ccc" / "2026" / "12" / "05"
    folder.mkdir(parents=True)
    for contact in ("job-1001", "job-1002", "job-1003"):
        (folder / f"{contact}.wav").write_bytes(b"RIFF audio")
    (folder / "notes.txt").write_text("hello\n")

    # docs/example-own-recordings.md: the backfill of a folder
    assert "qcflow push --prefix ccc/" in OWN
    cli = [sys.executable, "-c", "from qcflow.tools.cli import main; main()"]
    done = _run([*cli, "push", "--prefix", "ccc/"], tmp_path, env)
    pushed = done.stdout + done.stderr  # the summary table moves to stdout with issue 22 #6
    assert re.search(r"ignored\s*│\s*1", pushed) and re.search(r"submitted\s*│\s*3", pushed), pushed

    # docs/example-handler-event.md: the invoker it shows, with an OSS event and a timer event
    (invoker,) = _blocks(HANDLER, "python")
    (tmp_path / "invoke.py").write_text(invoker, encoding="utf-8")
    (folder / "job-1004.wav").write_bytes(b"RIFF audio")
    (tmp_path / "event.json").write_bytes(oss_event("my-bucket", "ccc/2026/12/05/job-1004.wav"))
    answer = _run([sys.executable, "invoke.py", "push", "event.json"], tmp_path, env).stdout.strip().splitlines()[-1]
    assert json.loads(answer) == {"records": 1, "submitted": 1}

    (tmp_path / "timer.json").write_bytes(timer_event())
    # as the pages' `sleep 3`: a pass reads upload times up to now - settle at whole seconds, so a task
    # uploaded within the current second is the next pass's (with settle 0; FC's default settle is longer)
    time.sleep(2)
    harvest_env = {**env, "QCFLOW_HARVEST_SETTLE_SECONDS": "0"}
    answer = _run([sys.executable, "invoke.py", "harvest", "timer.json"], tmp_path, harvest_env).stdout
    summary = json.loads(answer.strip().splitlines()[-1])
    assert summary["written"] == 4 and summary["files"], summary
