"""``qcflow push`` and ``qcflow replay`` as an operator runs them (real processes, the sandbox on loopback):
an interrupted or failing run releases the claims it never sent under, a deployment error stops the
run with exit 3 and burns nothing, and the summary says what is held and what to run."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from qcflow.credentials import credentials_from_env
from qcflow.ledger import Ledger
from qcflow.push.replay import backfill
from qcflow.services import build_services
from qcflow.store import LocalStore
from qcflow.tools.push_cli import OperatorRun
from qcflow.tools.sandbox.options import DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET, FaultOptions, SandboxOptions
from qcflow.tools.sandbox.server import SandboxServer

QCFLOW = os.path.join(os.path.dirname(sys.executable), "qcflow")
N = 6


@pytest.fixture
def sandbox() -> Iterator[SandboxServer]:
    with SandboxServer(replace(SandboxOptions(), task_seconds=0.2, task_jitter_seconds=0.1)) as server:
        yield server


def _env(tmp_path: Path, server: SandboxServer, **changes: str) -> dict[str, str]:
    env = {
        **os.environ,
        "QCFLOW_STORE": f"file:{tmp_path}/store",
        "QCFLOW_RECORDINGS_URL": f"file:{tmp_path}/recordings",
        "QCFLOW_CCC_ENDPOINT": server.url,
        "QCFLOW_SCA_ENDPOINT": server.url,
        "QCFLOW_CCC_INSTANCE_ID": "ccc-test",
        "QCFLOW_RECORDING_PREFIX": "ccc/",
        "QCFLOW_MAX_ATTEMPTS": "2",
        "QCFLOW_BACKOFF_INITIAL_SECONDS": "0.01",
        "QCFLOW_BACKOFF_MAX_SECONDS": "0.05",
        "QCFLOW_HTTP_TIMEOUT_SECONDS": "5",
        "ALIBABA_CLOUD_ACCESS_KEY_ID": DEFAULT_ACCESS_KEY_ID,
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": DEFAULT_ACCESS_KEY_SECRET,
    }
    env.update(changes)
    return env


def _recordings(tmp_path: Path, n: int = N) -> list[str]:
    store = LocalStore(tmp_path / "recordings")
    keys = [f"ccc/2026/12/04/job-{700 + i}.mkv" for i in range(n)]
    for key in keys:
        store.put(key, b"\x1aE\xdf\xa3matroska", content_type="video/x-matroska")
    return keys


def _qcflow(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([QCFLOW, *args], capture_output=True, text=True, timeout=timeout, env=env)


def _count(done: subprocess.CompletedProcess[str], status: str) -> int:
    """A row of the summary table (0 if absent)."""
    found = re.search(rf"\b{status}\s*│\s*(\d+)", done.stdout + done.stderr)
    return int(found.group(1)) if found else 0


def _ledger(tmp_path: Path) -> Ledger:
    return Ledger(LocalStore(tmp_path / "store"))


def _tasks_per_contact(server: SandboxServer) -> Counter[str]:
    sca = server.app.sca
    with sca._lock:
        return Counter(t.call["callId"] for t in sca._tasks)


def test_a_wrong_secret_stops_at_the_first_call_exits_3_and_burns_nothing(
    tmp_path: Path, sandbox: SandboxServer
) -> None:
    _recordings(tmp_path)
    env = _env(tmp_path, sandbox, ALIBABA_CLOUD_ACCESS_KEY_SECRET="wrong")
    done = _qcflow(env, "push", "--prefix", "ccc/", "--concurrency", "1")
    assert done.returncode == 3, done.stdout + done.stderr
    lines = [line for line in done.stderr.splitlines() if "deployment error" in line]
    assert len(lines) == 1 and "SignatureDoesNotMatch" in lines[0] and "ALIBABA_CLOUD_ACCESS_KEY_SECRET" in lines[0]
    assert "string to sign" not in done.stderr
    entries = list(_ledger(tmp_path).entries())
    assert not any(e.outcomes for e in entries), "nothing recorded as failed"
    assert not list(_ledger(tmp_path).failures())
    assert sandbox.app.stats["GetUploadAudioDataParams SignatureDoesNotMatch"] == 1, "stopped at the first"
    # fixed: the rerun pushes everything at once (the unsent claims were released, nothing is busy)
    again = _qcflow(_env(tmp_path, sandbox), "push", "--prefix", "ccc/")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "busy" not in again.stdout + again.stderr and _count(again, "submitted") == N
    assert set(_tasks_per_contact(sandbox).values()) == {1} and len(_tasks_per_contact(sandbox)) == N


def test_a_ram_policy_without_upload_exits_3_naming_the_policy(tmp_path: Path, sandbox: SandboxServer) -> None:
    _recordings(tmp_path, 3)
    sandbox.app.options = replace(sandbox.app.options, denied_actions=frozenset({"UploadAudioData"}))
    done = _qcflow(_env(tmp_path, sandbox), "push", "--prefix", "ccc/")
    assert done.returncode == 3, done.stdout + done.stderr
    assert "Forbidden.RAM" in done.stderr and "RAM policy" in done.stderr and "UploadAudioData" in done.stderr
    assert not any(e.outcomes for e in _ledger(tmp_path).entries()), "nothing recorded as failed"
    sandbox.app.options = replace(sandbox.app.options, denied_actions=frozenset())
    again = _qcflow(_env(tmp_path, sandbox), "push", "--prefix", "ccc/")
    assert again.returncode == 0 and _count(again, "submitted") == 3, again.stdout + again.stderr


def test_a_run_failing_retryably_releases_its_unsent_claims_and_names_the_host(
    tmp_path: Path, sandbox: SandboxServer
) -> None:
    """A wrong QCFLOW_SCA_ENDPOINT: UploadAudioData never connects. The rerun must not be `busy`."""
    _recordings(tmp_path, 3)
    wrong = _env(tmp_path, sandbox, QCFLOW_SCA_ENDPOINT="http://127.0.0.1:9")
    done = _qcflow(wrong, "push", "--prefix", "ccc/")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "released 3 claim(s)" in done.stdout and "still held" not in done.stdout, done.stdout
    assert "qcflow push --prefix ccc/" in done.stdout
    assert "127.0.0.1:9" in done.stdout and "QCFLOW_SCA_ENDPOINT" in done.stdout, "the connection error names the host"
    again = _qcflow(_env(tmp_path, sandbox), "push", "--prefix", "ccc/")
    assert again.returncode == 0 and _count(again, "submitted") == 3, again.stdout + again.stderr


def test_a_lost_upload_answer_keeps_its_claim_and_the_summary_says_until_when(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An UploadAudioData whose answer was lost may be in SCA: its claim stays, the summary says until when."""
    options = replace(
        SandboxOptions(),
        task_seconds=0.2,
        faults=FaultOptions(lost_answer_rate=1.0, actions=frozenset({"UploadAudioData"})),
    )
    with SandboxServer(options) as server:
        _recordings(tmp_path, 1)
        for name, value in _env(tmp_path, server, QCFLOW_MAX_ATTEMPTS="1").items():
            monkeypatch.setenv(name, value)
        said: list[str] = []
        run = OperatorRun("push", say=said.append, error=said.append)

        async def work() -> None:
            creds = credentials_from_env()
            services = await build_services(lambda: creds)
            try:
                pusher = services.pusher()
                await backfill(
                    pusher,
                    pusher.recordings_under("ccc/"),
                    token=run.token,
                    rounds=1,
                    on_result=run.note,
                    release_unsent=True,
                    held=run.held,
                )
            finally:
                await services.aclose()

        monkeypatch.setattr(sys, "argv", ["qcflow", "push", "--prefix", "ccc/"])
        assert run.execute(work) == 1
        text = "\n".join(said)
        assert "still held: 1 claim(s) of this run until" in text and "released" not in text, text
        assert "run `qcflow push --prefix ccc/` after" in text
        [entry] = list(_ledger(tmp_path).entries())
        assert entry.latest_generation == 0 and not entry.released and not entry.outcomes


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_an_interrupted_push_releases_what_it_never_sent(tmp_path: Path, signum: signal.Signals, code: int) -> None:
    options = replace(
        SandboxOptions(),
        task_seconds=0.2,
        faults=FaultOptions(latency_seconds=0.4, actions=frozenset({"GetUploadAudioDataParams"})),
    )
    with SandboxServer(options) as server:
        keys = _recordings(tmp_path, 12)
        env = _env(tmp_path, server)
        proc = subprocess.Popen(
            [QCFLOW, "push", "--prefix", "ccc/", "--concurrency", "4"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        records = tmp_path / "store" / "state" / "push" / "records"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(list(records.glob("*/*.claim.json"))) < 4:
            time.sleep(0.02)
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == code, out + err
        assert f"interrupted by {signum.name}" in out and "released" in out, out + err
        # every claim left is one whose UploadAudioData may have left; none blocks the rerun
        for entry in _ledger(tmp_path).entries():
            live = entry.latest_generation
            assert live is None or live in entry.outcomes or entry.submitted is not None, entry
        server.app.options = replace(server.app.options, faults=FaultOptions())
        again = _qcflow(env, "push", "--prefix", "ccc/")
        assert again.returncode == 0 and _count(again, "busy") == 0, again.stdout + again.stderr
        per_contact = _tasks_per_contact(server)
        assert len(per_contact) == len(keys) and set(per_contact.values()) == {1}


def test_replay_dry_run_shows_contact_id_and_reason(tmp_path: Path, sandbox: SandboxServer) -> None:
    LocalStore(tmp_path / "recordings").put(
        "ccc/2026/12/04/job-x700.mkv", b"\x1aE\xdf\xa3", content_type="video/x-matroska"
    )
    env = _env(tmp_path, sandbox, QCFLOW_CONTACT_ID_PATTERN=r"job-\w+")  # CCC knows no job-x700: a recorded failure
    pushed = _qcflow(env, "push", "--prefix", "ccc/")
    assert pushed.returncode == 1 and _count(pushed, "failed") == 1 and "qcflow replay" in pushed.stdout, pushed.stdout
    done = _qcflow(env, "replay", "--dry-run")
    assert done.returncode == 0, done.stdout + done.stderr
    line = next(line for line in done.stdout.splitlines() if line.startswith("ccc/"))
    assert "ContactId job-x700" in line and "failed: NotExists.ContactId" in line, line
