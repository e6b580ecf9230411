"""A push world on loopback: the sandbox, a local state store and a local recordings folder,
the real ``functions/push/index.py`` loaded as FC loads it, configured through the environment."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from qcflow.tools.fc_local import FcCredentials, context_for, load_handler_module, oss_event
from qcflow.ledger import Ledger, LedgerEntry, recording_id
from qcflow.push import object_location
from qcflow.tools.sandbox.options import DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET, SandboxOptions
from qcflow.tools.sandbox.server import SandboxServer
from qcflow.store import LocalStore

BUCKET = "recordings"
FC_CREDS = FcCredentials(DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET, "sts-token-of-the-role")


@dataclass
class PushWorld:
    server: SandboxServer
    state: LocalStore
    recordings: LocalStore
    env: dict[str, str]
    modules: list[ModuleType] = field(default_factory=list)

    @property
    def recordings_url(self) -> str:
        return self.env["QCFLOW_RECORDINGS_URL"]

    def put_recording(self, key: str, metadata: dict[str, str] | None = None, body: bytes = b"\x1aE\xdf\xa3matroska") -> str:
        return self.recordings.put(key, body, content_type="video/x-matroska", metadata=metadata)

    def instance(self) -> ModuleType:
        """A fresh FC instance of the push function (module state = instance state)."""
        module = load_handler_module("push")
        self.modules.append(module)
        return module

    def deliver(self, module: ModuleType, *keys: str, request_id: str | None = None, timeout: int = 60) -> Any:
        return module.handler(oss_event(BUCKET, *keys), context_for("push", FC_CREDS, timeout=timeout, request_id=request_id))

    def location(self, key: str) -> str:
        return object_location(self.recordings_url, key)

    def entry(self, key: str) -> LedgerEntry:
        return Ledger(self.state).read(recording_id(self.location(key)))

    def tasks_for(self, contact_id: str) -> list[Any]:
        """The sandbox's own tasks for a ContactId (the service's truth, read directly)."""
        sca = self.server.app.sca
        with sca._lock:
            return [t for t in sca._tasks if (t.call or {}).get("callId") == contact_id]

    def all_tasks(self) -> list[Any]:
        sca = self.server.app.sca
        with sca._lock:
            return list(sca._tasks)


@contextlib.contextmanager
def push_world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, options: SandboxOptions | None = None,
               **settings: str) -> Iterator[PushWorld]:
    options = options or replace(SandboxOptions(), task_seconds=0.2, task_jitter_seconds=0.1)
    state_dir, recordings_dir = tmp_path / "store", tmp_path / "recordings"
    with SandboxServer(options) as server:
        env = {
            "QCFLOW_STORE": f"file:{state_dir}",
            "QCFLOW_RECORDINGS_URL": f"file:{recordings_dir}",
            "QCFLOW_CCC_ENDPOINT": server.url,
            "QCFLOW_SCA_ENDPOINT": server.url,
            "QCFLOW_CCC_INSTANCE_ID": "ccc-test",
            "QCFLOW_RECORDING_PREFIX": "ccc/",
            "QCFLOW_BACKOFF_INITIAL_SECONDS": "0.01",
            "QCFLOW_BACKOFF_MAX_SECONDS": "0.05",
            "QCFLOW_THROTTLE_BACKOFF_INITIAL_SECONDS": "0.05",
            "QCFLOW_THROTTLE_BACKOFF_MAX_SECONDS": "0.5",
            "QCFLOW_HTTP_TIMEOUT_SECONDS": "5",
            "ALIBABA_CLOUD_ACCESS_KEY_ID": DEFAULT_ACCESS_KEY_ID,
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET": DEFAULT_ACCESS_KEY_SECRET,
        }
        env.update(settings)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        world = PushWorld(server, LocalStore(state_dir), LocalStore(recordings_dir), env)
        try:
            yield world
        finally:
            for module in world.modules:
                module.app.close()


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[PushWorld]:
    with push_world(tmp_path, monkeypatch) as w:
        yield w
