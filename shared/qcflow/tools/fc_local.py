"""Function Compute's handler contract, emulated for the demo and the tests.

The real ``functions/*/index.py`` run unchanged: the event arrives as **bytes** of JSON and
the context carries ``request_id``, the role's ``credentials`` (python3.10 style),
``function.timeout`` and ``get_remaining_time_in_milliseconds``. Nothing here is imported by
a handler; it is not needed in the layer.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import ModuleType
from typing import Any

FUNCTIONS_DIR = Path(__file__).resolve().parents[3] / "functions"


@dataclass(frozen=True)
class FcCredentials:
    access_key_id: str
    access_key_secret: str
    security_token: str | None = None


@dataclass(frozen=True)
class FcFunction:
    name: str
    handler: str = "index.handler"
    memory: int = 512
    timeout: int = 60


@dataclass
class FcContext:
    """What FC's Python runtime passes as ``context`` (the fields qcflow reads)."""

    credentials: FcCredentials | None
    function: FcFunction
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    region: str = "cn-shanghai"
    account_id: str = "1234567890123456"
    started: float = field(default_factory=time.monotonic)

    def get_remaining_time_in_milliseconds(self) -> int:
        return max(0, int((self.started + self.function.timeout - time.monotonic()) * 1000))


def context_for(
    function: str, credentials: FcCredentials | None, *, timeout: int = 60, request_id: str | None = None
) -> FcContext:
    """A fresh context (a new invocation); pass the same ``request_id`` to emulate FC's retry of one."""
    ctx = FcContext(credentials, FcFunction(f"qcflow-{function}", timeout=timeout))
    if request_id is not None:
        ctx.request_id = request_id
    return ctx


def load_handler_module(function: str, *, functions_dir: Path = FUNCTIONS_DIR, fresh: bool = True) -> ModuleType:
    """Import ``functions/<function>/index.py`` as FC does (a fresh instance unless ``fresh`` is False)."""
    path = functions_dir / function / "index.py"
    name = f"qcflow_fn_{function}_{uuid.uuid4().hex[:8]}" if fresh else f"qcflow_fn_{function}"
    if not fresh and name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def oss_event(
    bucket: str,
    *keys: str,
    etag: str = "",
    size: int = 0,
    event_name: str = "ObjectCreated:PutObject",
    region: str = "cn-shanghai",
) -> bytes:
    """An OSS trigger event (one record per key), as bytes, like FC hands it to the handler."""
    now = datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    records = [
        {
            "eventName": event_name,
            "eventSource": "acs:oss",
            "eventTime": now,
            "eventVersion": "1.0",
            "region": region,
            "oss": {
                "bucket": {
                    "arn": f"acs:oss:{region}:1234567890123456:{bucket}",
                    "name": bucket,
                    "ownerIdentity": "1234567890123456",
                },
                "object": {"deltaSize": size, "eTag": etag, "key": key, "size": size},
                "ossSchemaVersion": "1.0",
                "ruleId": "qcflow-local",
            },
            "requestParameters": {"sourceIPAddress": "127.0.0.1"},
            "responseElements": {"requestId": uuid.uuid4().hex.upper()[:24]},
            "userIdentity": {"principalId": "1234567890123456"},
        }
        for key in keys
    ]
    return json.dumps({"events": records}).encode("utf-8")


def timer_event(payload: dict[str, Any] | None = None, name: str = "harvest-timer") -> bytes:
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return json.dumps({"triggerTime": now, "triggerName": name, "payload": json.dumps(payload or {})}).encode("utf-8")


def http_event(
    method: str,
    path: str = "/",
    query: dict[str, str] | None = None,
    body: str = "",
    headers: dict[str, str] | None = None,
) -> bytes:
    """An FC3 HTTP-trigger event (``queryParameters`` decoded, as FC hands them)."""
    return json.dumps(
        {
            "version": "v1",
            "rawPath": path,
            "headers": headers or {},
            "queryParameters": query or {},
            "body": body,
            "isBase64Encoded": False,
            "requestContext": {
                "accountId": "1234567890123456",
                "domainName": "localhost",
                "requestId": str(uuid.uuid4()),
                "time": datetime.now(timezone.utc).isoformat(),
                "timeEpoch": str(int(time.time() * 1000)),
                "http": {
                    "method": method,
                    "path": path,
                    "protocol": "HTTP/1.1",
                    "sourceIp": "127.0.0.1",
                    "userAgent": "qcflow",
                },
            },
        }
    ).encode("utf-8")


class HttpTriggerServer:
    """An FC HTTP trigger on loopback: each request becomes an FC3 HTTP event for ``handler``
    (``functions/callback/index.py``'s), whose ``{"statusCode", "headers", "body"}`` is the answer.

    Use as a context manager; the serving thread is a daemon and ``stop`` joins it.
    """

    def __init__(
        self,
        handler: Any,
        credentials: FcCredentials | None,
        *,
        function: str = "callback",
        host: str = "127.0.0.1",
        timeout: int = 30,
    ) -> None:
        import http.server
        import threading
        from urllib.parse import parse_qsl, urlsplit

        outer = self

        class _Handler(http.server.BaseHTTPRequestHandler):
            def _serve(self) -> None:
                parts = urlsplit(self.path)
                query: dict[str, str] = {}
                for name, value in parse_qsl(parts.query, keep_blank_values=True):
                    query[name] = f"{query[name]},{value}" if name in query else value  # FC joins repeats with commas
                length = min(int(self.headers.get("content-length") or 0), 1 << 20)
                body = self.rfile.read(length).decode("utf-8", "replace") if length else ""
                event = http_event(
                    self.command, parts.path or "/", query, body, {k.lower(): v for k, v in self.headers.items()}
                )
                try:
                    answer = handler(event, context_for(function, credentials, timeout=timeout))
                except Exception as exc:  # noqa: BLE001 - FC answers 502 for a crashed function
                    answer = {"statusCode": 502, "body": f"function error: {type(exc).__name__}"}
                outer.calls += 1
                payload = str(answer.get("body", "")).encode("utf-8")
                self.send_response(int(answer.get("statusCode", 200)))
                for name, value in (answer.get("headers") or {}).items():
                    self.send_header(name, value)
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = _serve
            do_POST = _serve

            def log_message(self, *args: Any) -> None:  # keep the demo's output clean
                return

        self.calls = 0
        self._server = http.server.ThreadingHTTPServer((host, 0), _Handler)
        self._server.daemon_threads = True
        self.url = f"http://{host}:{self._server.server_address[1]}/sca-callback"
        self._thread = threading.Thread(target=self._server.serve_forever, name="qcflow-http-trigger", daemon=True)

    def start(self) -> HttpTriggerServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def __enter__(self) -> HttpTriggerServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
