"""Fixtures for the store suite: a moto S3 server behind the OSS dialect shim, on loopback.

The server starts once per session on a free 127.0.0.1 port, in a daemon thread, and is
shut down at the end. Layers, outermost first:

    FaultInjector  (test harness: answers 5xx/403 or delays on demand, records requests)
    OssDialectShim (dialect translation only — see oss_shim.py)
    moto's DomainDispatcherApplication (the S3 backend that decides every outcome)

One setting of moto is changed: its minimum multipart part size (S3's 5 MiB) is set to
OSS's 100 KiB, so multipart tests can use OSS-sized parts.
"""

from __future__ import annotations

import errno
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from qcflow.credentials import Credentials
from qcflow.store import LocalStore, ObjectStore

from tests.store.oss_shim import OssDialectShim

BUCKET = "qcflow-test"
REGION = "cn-hangzhou"
CREDS = Credentials("test-ak", "test-secret", "test-sts-token")


@dataclass
class _Fault:
    remaining: int
    kind: str  # "answer" (reply without forwarding), "lose" (forward, then reply), "delay"
    status: str = "503 Service Unavailable"
    body: bytes = b""
    seconds: float = 0.0
    match: Callable[[dict[str, Any]], bool] = lambda env: True


@dataclass
class FaultInjector:
    """Test-harness middleware (not part of the shim): injects faults, records requests."""

    app: Any
    faults: list[_Fault] = field(default_factory=list)
    seen: list[dict[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self) -> None:
        with self.lock:
            self.faults.clear()
            self.seen.clear()

    def add(self, fault: _Fault) -> None:
        with self.lock:
            self.faults.append(fault)

    def _take(self, environ: dict[str, Any]) -> _Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.remaining > 0 and fault.match(environ):
                    fault.remaining -= 1
                    return fault
        return None

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        with self.lock:
            self.seen.append({
                "method": environ.get("REQUEST_METHOD", ""),
                "path": environ.get("PATH_INFO", ""),
                "query": environ.get("QUERY_STRING", ""),
                "authorization": environ.get("HTTP_AUTHORIZATION", ""),
                "security_token": environ.get("HTTP_X_OSS_SECURITY_TOKEN", ""),
                "forbid_overwrite": environ.get("HTTP_X_OSS_FORBID_OVERWRITE", ""),
            })
        fault = self._take(environ)
        if fault is None:
            return self.app(environ, start_response)
        if fault.kind == "delay":
            time.sleep(fault.seconds)
            return self.app(environ, start_response)
        if fault.kind == "lose":
            # The backend does the work; the client never sees its answer.
            list(self.app(environ, lambda *a, **k: (lambda _d: None)))
        start_response(fault.status, [("Content-Type", "application/xml"), ("Content-Length", str(len(fault.body))),
                                      ("x-oss-request-id", "injected-fault")])
        return [fault.body]


@dataclass
class MotoOss:
    endpoint: str
    injector: FaultInjector
    port: int

    def create_bucket(self, name: str, *, versioning: str | None = None) -> None:
        """Set-up, not code under test: straight at moto with boto3 (idempotent)."""
        import boto3

        s3 = boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1", aws_access_key_id="x",
                          aws_secret_access_key="x")
        if name not in {b["Name"] for b in s3.list_buckets()["Buckets"]}:
            s3.create_bucket(Bucket=name)
        if versioning:
            s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": versioning})


@pytest.fixture(scope="session")
def moto_oss() -> Iterator[MotoOss]:
    import moto.s3.models as moto_s3_models
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import make_server

    moto_s3_models.S3_UPLOAD_PART_MIN_SIZE = 100 * 1024  # OSS's minimum part size, not S3's

    class QuietHandler(MotoRequestHandler):
        def log_request(self, *args: Any, **kwargs: Any) -> None:  # keep test output readable
            pass

    injector = FaultInjector(OssDialectShim(DomainDispatcherApplication(create_backend_app)))
    server = make_server("127.0.0.1", 0, injector, threaded=True, request_handler=QuietHandler)
    port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, name="moto-oss", daemon=True)
    thread.start()
    endpoint = f"http://127.0.0.1:{port}"
    moto = MotoOss(endpoint, injector, port)
    moto.create_bucket(BUCKET)
    try:
        yield moto
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def oss_settings(endpoint: str, **overrides: Any) -> Any:
    from qcflow.config import load_settings

    values: dict[str, Any] = dict(
        store=f"oss://{BUCKET}/x", region=REGION, oss_endpoint=endpoint, max_attempts=3,
        backoff_initial_seconds=0.01, backoff_max_seconds=0.05,
        http_timeout_seconds=10, http_connect_timeout_seconds=2,
    )
    values.update(overrides)
    return load_settings(environ={}, **values)


def make_oss_store(moto: MotoOss, prefix: str | None = None, *, credentials: Any = CREDS, **settings: Any) -> Any:
    from qcflow.store.oss import OssStore

    prefix = prefix if prefix is not None else f"t/{uuid.uuid4().hex[:12]}"
    return OssStore.from_settings(BUCKET, prefix, oss_settings(moto.endpoint, **settings), credentials)


@pytest.fixture(params=["local", "oss"])
def store(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[ObjectStore]:
    """Every contract test runs against each adapter (a fresh directory / a fresh prefix)."""
    if request.param == "local":
        yield LocalStore(tmp_path / "store")
        return
    moto: MotoOss = request.getfixturevalue("moto_oss")
    moto.injector.reset()
    try:
        yield make_oss_store(moto)
    finally:
        moto.injector.reset()


@pytest.fixture
def oss_store(moto_oss: MotoOss) -> Iterator[Any]:
    moto_oss.injector.reset()
    try:
        yield make_oss_store(moto_oss)
    finally:
        moto_oss.injector.reset()


class _ShortWriteOs:
    """Stands in for ``os`` inside ``qcflow.store.local``: ``write`` stores part of the data,
    then fails with ENOSPC (a disk that filled up mid-write); everything else is ``os``."""

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)

    @staticmethod
    def write(fd: int, data: Any) -> int:
        if len(data) > 1:
            os.write(fd, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@dataclass
class WriteBreaker:
    """Makes the next writer writes fail on either adapter: a short write then ENOSPC on a
    local store, persistent 500s on part uploads on OSS (fault injection in the harness)."""

    store: Any
    monkeypatch: pytest.MonkeyPatch
    moto: MotoOss | None

    def arm(self) -> None:
        if self.moto is None:
            import qcflow.store.local as local_module

            self.monkeypatch.setattr(local_module, "os", _ShortWriteOs())
        else:
            self.moto.injector.add(_Fault(remaining=100, kind="answer", status="500 Internal Server Error",
                                          match=lambda env: "partNumber=" in env.get("QUERY_STRING", "")))

    def disarm(self) -> None:
        self.monkeypatch.undo()
        if self.moto is not None:
            with self.moto.injector.lock:
                self.moto.injector.faults.clear()


@pytest.fixture
def write_breaker(store: ObjectStore, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> WriteBreaker:
    moto = request.getfixturevalue("moto_oss") if type(store).__name__ == "OssStore" else None
    return WriteBreaker(store, monkeypatch, moto)
