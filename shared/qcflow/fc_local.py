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

FUNCTIONS_DIR = Path(__file__).resolve().parents[2] / "functions"


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


def context_for(function: str, credentials: FcCredentials | None, *, timeout: int = 60, request_id: str | None = None) -> FcContext:
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


def oss_event(bucket: str, *keys: str, etag: str = "", size: int = 0, event_name: str = "ObjectCreated:PutObject",
              region: str = "cn-shanghai") -> bytes:
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
                "bucket": {"arn": f"acs:oss:{region}:1234567890123456:{bucket}", "name": bucket,
                           "ownerIdentity": "1234567890123456"},
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


def http_event(method: str, path: str = "/", query: dict[str, str] | None = None, body: str = "",
               headers: dict[str, str] | None = None) -> bytes:
    """An FC3 HTTP-trigger event (``queryParameters`` decoded, as FC hands them)."""
    return json.dumps({
        "version": "v1",
        "rawPath": path,
        "headers": headers or {},
        "queryParameters": query or {},
        "body": body,
        "isBase64Encoded": False,
        "requestContext": {
            "accountId": "1234567890123456", "domainName": "localhost", "requestId": str(uuid.uuid4()),
            "time": datetime.now(timezone.utc).isoformat(), "timeEpoch": str(int(time.time() * 1000)),
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "qcflow"},
        },
    }).encode("utf-8")
