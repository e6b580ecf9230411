"""A hostile world: the real handlers, real local stores, and a loopback "service" that
answers CCC and SCA with whatever a test scripts — junk, HTML, huge or deeply nested bodies.

``HostileService`` speaks just enough of the protocol to be reached (it dispatches on
``x-acs-action`` and never checks a signature); every answer is scripted per action
(``service.script[action] = Answer(...)``), defaulting to a well-formed one. The functions
run with credentials, an STS token and a pre-signed recording URL whose values are unique,
so that ``Hostile.leaks()`` can look for them in every log line, error, return value and
stored object.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from qcflow.errors import QcflowError
from qcflow.tools.fc_local import FcCredentials, context_for, load_handler_module

ACCESS_KEY_ID = "LTAI5tHostileKeyId01"
ACCESS_KEY_SECRET = "hostile-secret-0123456789abcdef"
STS_TOKEN = "CAIS-hostile-sts-token-0123456789"
URL_SIGNATURE = "hostileUrlSignatureAbC123xyz%3D"
URL_SIGNATURE_DECODED = "hostileUrlSignatureAbC123xyz="
CALLBACK_TOKEN = "hostile-callback-token-0123456789abcdefXYZ"
#: The path SCA calls back on (push puts the token there).
CALLBACK_PATH = f"/sca-callback/{CALLBACK_TOKEN}"
#: What may appear nowhere: no log line, error, answer or stored object.
SECRETS = (ACCESS_KEY_SECRET, STS_TOKEN, URL_SIGNATURE, URL_SIGNATURE_DECODED, CALLBACK_TOKEN)
FC_CREDS = FcCredentials(ACCESS_KEY_ID, ACCESS_KEY_SECRET, STS_TOKEN)
BUCKET = "recordings"
#: Where a store may write (its own bookkeeping starts with ``.qcflow``).
ALLOWED_TOP = ("state", "results")
#: The longest log line a hostile input may cause (nothing is echoed whole).
MAX_LOG_LINE = 8192


@dataclass
class Answer:
    """One scripted answer: HTTP status, body bytes, content type; ``cut``: the connection is
    closed after half the body (a dropped answer)."""

    status: int = 200
    body: bytes = b"{}"
    content_type: str = "application/json;charset=utf-8"
    cut: bool = False

    @classmethod
    def json(cls, value: Any, status: int = 200) -> Answer:
        return cls(status, json.dumps(value).encode("utf-8"))


def voice_url(base: str, contact: str, *, expires_in: int = 86400) -> str:
    expires = int(time.time()) + expires_in
    return (f"{base}/recordings/{contact}.mkv?Expires={expires}&OSSAccessKeyId={ACCESS_KEY_ID}"
            f"&Signature={URL_SIGNATURE}&security-token={STS_TOKEN}")


def ccc_params(base: str, contact: str, **call: Any) -> dict[str, Any]:
    """A well-formed ``ParamsStr`` object (as the sandbox builds it), ``call`` fields overriding."""
    item = {"callId": contact, "callStartTime": 1_704_870_035_381, "callType": 3, "caller": "13800000000",
            "callee": "4008001234", "customerServiceName": "agent", "customerServiceId": 2032428020000,
            "skillGroupId": 1, "skillGroupName": "default", "voiceFileUrl": voice_url(base, contact)}
    item.update(call)
    return {"autoSplit": 1, "sampleRate": 8, "callList": [item]}


def ccc_answer(params: Any) -> Answer:
    """CCC's envelope around ``params`` (an object is JSON-encoded into ``ParamsStr``; a string is sent as is)."""
    text = params if isinstance(params, str) else json.dumps(params)
    return Answer.json({"Code": "OK", "HttpStatusCode": 200, "Message": "", "RequestId": "REQ-CCC-1",
                        "Data": {"ParamsStr": text}})


def result_item(task_id: str, contact: str, *, status: int = 1, **fields: Any) -> dict[str, Any]:
    """A GetResult item as SCA sends it (Tea-wrapped), ``fields`` overriding."""
    now = int(time.time())
    item = {"TaskId": task_id, "Status": status, "Score": 90, "CreateTimeLong": str(now - 60),
            "CreateTime": time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime(now - 60)),
            "Recording": {"Id": contact, "Name": f"ccc/{contact}.mkv", "Url": voice_url("https://ccc.example", contact)},
            "HitResult": {"HitResult": []}}
    item.update(fields)
    return item


def windows_only(items: list[Any]) -> Callable[[dict[str, str]], Answer]:
    """GetResult answering ``items`` to window queries and nothing to a query by taskId."""

    def answer(query: dict[str, str]) -> Answer:
        asked = json.loads(query.get("JsonStr") or "{}")
        return result_page([] if asked.get("taskId") else items)

    return answer


def result_page(items: list[Any], count: int | None = None) -> Answer:
    return Answer.json({"Success": True, "Code": "200", "Message": "successful", "RequestId": "REQ-SCA-1",
                        "Count": len(items) if count is None else count, "PageNumber": 1, "PageSize": 99,
                        "Data": {"ResultInfo": items}})


class HostileService:
    """CCC + SCA on one loopback port, answering what ``script`` says (per ``x-acs-action``).

    Defaults: CCC a well-formed ParamsStr for the asked ContactId, UploadAudioData a new
    taskId, GetResult an empty page. ``requests`` records (action, query) of every call.
    """

    def __init__(self) -> None:
        service = self
        self.script: dict[str, Answer | Callable[[dict[str, str]], Answer]] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.lock = threading.Lock()

        class _Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                from urllib.parse import parse_qsl, urlsplit

                length = int(self.headers.get("content-length") or 0)
                if length:
                    self.rfile.read(min(length, 1 << 20))
                query = dict(parse_qsl(urlsplit(self.path).query, keep_blank_values=True))
                action = self.headers.get("x-acs-action") or query.get("Action") or ""
                with service.lock:
                    service.requests.append((action, query))
                answer = service.answer(action, query)
                self.send_response(answer.status)
                self.send_header("content-type", answer.content_type)
                self.send_header("content-length", str(len(answer.body)))
                self.end_headers()
                if answer.cut:
                    self.wfile.write(answer.body[: len(answer.body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(answer.body)

            do_GET = _serve
            do_POST = _serve

            def log_message(self, *args: Any) -> None:
                return

        class _Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                return  # a client hanging up on a scripted answer is part of the game, not news

        self._server = _Server(("127.0.0.1", 0), _Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="hostile-service", daemon=True)

    def answer(self, action: str, query: dict[str, str]) -> Answer:
        scripted = self.script.get(action)
        if callable(scripted):
            return scripted(query)
        if scripted is not None:
            return scripted
        if action == "GetUploadAudioDataParams":
            return ccc_answer(ccc_params(self.url, query.get("ContactId") or "job-1"))
        if action == "UploadAudioData":
            task = hashlib.sha1(query.get("JsonStr", "").encode()).hexdigest()[:16].upper()
            return Answer.json({"Success": True, "Code": "200", "Message": "successful", "RequestId": "REQ-UP-1", "Data": task})
        if action == "GetResult":
            return result_page([])
        return Answer.json({"Code": "InvalidAction.NotFound", "Message": "no such action"}, status=404)

    def count(self, action: str) -> int:
        with self.lock:
            return sum(1 for a, _ in self.requests if a == action)

    def __enter__(self) -> HostileService:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


@dataclass
class Outcome:
    """What one invocation did: its return value or the exception it raised, and its log lines."""

    value: Any = None
    error: BaseException | None = None
    logs: list[dict[str, Any]] = field(default_factory=list)
    raw_logs: str = ""

    def events(self) -> set[str]:
        return {str(line.get("event")) for line in self.logs if line.get("event")}


@dataclass
class Hostile:
    root: Path
    service: HostileService
    env: dict[str, str]
    capfd: pytest.CaptureFixture[str]
    modules: list[ModuleType] = field(default_factory=list)

    @property
    def store_root(self) -> Path:
        return self.root / "store"

    @property
    def recordings_root(self) -> Path:
        return self.root / "recordings"

    def put_recording(self, key: str, body: bytes = b"\x1aE\xdf\xa3matroska", metadata: dict[str, str] | None = None) -> None:
        from qcflow.store import LocalStore

        LocalStore(self.recordings_root).put(key, body, content_type="video/x-matroska", metadata=metadata)

    def invoke(self, function: str, event: Any, *, timeout: int = 20, request_id: str | None = None,
               module: ModuleType | None = None) -> Outcome:
        """One invocation of ``functions/<function>/index.py`` on a fresh instance (or ``module``);
        ``request_id``: FC's, the same for its retries of one invocation."""
        if module is None:
            module = load_handler_module(function)
            self.modules.append(module)
        self.capfd.readouterr()
        outcome = Outcome()
        try:
            outcome.value = module.handler(event, context_for(function, FC_CREDS, timeout=timeout, request_id=request_id))
        except BaseException as exc:  # noqa: BLE001 - judged by the caller (a qcflow error is fine)
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            outcome.error = exc
        captured = self.capfd.readouterr()
        outcome.raw_logs = captured.out + captured.err
        for line in outcome.raw_logs.splitlines():
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict):
                outcome.logs.append(value)
        return outcome

    # ------------------------------------------------------------------ the checks
    def outside_prefixes(self) -> list[str]:
        """Files written anywhere but under the store's ``state/``/``results/`` (and its own
        ``.qcflow*`` bookkeeping); the recordings folder is the test's own and is compared apart."""
        found = []
        for path in self.root.rglob("*"):
            if path.is_dir():
                continue
            relative = path.relative_to(self.root)
            parts = relative.parts
            if parts[0] == "recordings":
                continue
            if parts[0] == "store" and len(parts) > 1 and (parts[1] in ALLOWED_TOP or parts[1].startswith(".qcflow")):
                continue
            found.append(str(relative))
        return found

    def stored_bytes(self) -> bytes:
        return b"\n".join(p.read_bytes() for p in sorted(self.store_root.rglob("*")) if p.is_file())

    def leaks(self, outcome: Outcome) -> list[str]:
        """Secrets found in the invocation's logs, its answer or error, or any stored object."""
        places = {
            "logs": outcome.raw_logs,
            "answer": json.dumps(outcome.value, default=str) if outcome.value is not None else "",
            "error": f"{outcome.error!s} {outcome.error!r}" if outcome.error is not None else "",
            "store": self.stored_bytes().decode("utf-8", "replace"),
        }
        return [f"{secret[:12]}… in {where}" for where, text in places.items() for secret in SECRETS if secret in text]

    def check(self, outcome: Outcome, *, expect_events: set[str] | None = None) -> None:
        """The corpus' common rules: a return value or a qcflow error (never a bare Python
        one), with a bounded message; a JSON log line (one of ``expect_events`` when given);
        nothing outside the prefixes; no secret anywhere."""
        error = outcome.error
        assert error is None or isinstance(error, QcflowError), f"a bare {type(error).__name__}: {error!r}"[:2000]
        if error is not None:
            assert str(error).strip() and len(str(error)) < 4000, "a clear, bounded message"
        assert outcome.logs, "at least one JSON log line"
        assert all(len(line) <= MAX_LOG_LINE for line in outcome.raw_logs.splitlines()), "no log line echoes a huge input"
        if expect_events is not None:
            assert outcome.events() & expect_events, f"expected one of {expect_events}, logged {outcome.events()}"
        assert self.outside_prefixes() == [], f"written outside state/ and results/: {self.outside_prefixes()}"
        assert self.leaks(outcome) == []


@pytest.fixture
def hostile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]) -> Iterator[Hostile]:
    with HostileService() as service:
        env = {
            "QCFLOW_STORE": f"file:{tmp_path / 'store'}",
            "QCFLOW_RECORDINGS_URL": f"file:{tmp_path / 'recordings'}",
            "QCFLOW_CCC_ENDPOINT": service.url,
            "QCFLOW_SCA_ENDPOINT": service.url,
            "QCFLOW_CCC_INSTANCE_ID": "ccc-hostile",
            "QCFLOW_RECORDING_PREFIX": "ccc/",
            "QCFLOW_MAX_ATTEMPTS": "2",
            "QCFLOW_BACKOFF_INITIAL_SECONDS": "0.01",
            "QCFLOW_BACKOFF_MAX_SECONDS": "0.02",
            "QCFLOW_THROTTLE_BACKOFF_INITIAL_SECONDS": "0.01",
            "QCFLOW_THROTTLE_BACKOFF_MAX_SECONDS": "0.02",
            "QCFLOW_HTTP_TIMEOUT_SECONDS": "5",
            "QCFLOW_HARVEST_SETTLE_SECONDS": "0",
            "QCFLOW_HARVEST_START_SECONDS": "3600",
            "QCFLOW_GET_RESULT_QUOTA": "60000",
            "QCFLOW_CALLBACK_TOKEN": CALLBACK_TOKEN,
            "ALIBABA_CLOUD_ACCESS_KEY_ID": ACCESS_KEY_ID,
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET": ACCESS_KEY_SECRET,
            "ALIBABA_CLOUD_SECURITY_TOKEN": STS_TOKEN,
        }
        for name in [n for n in os.environ if n.startswith("QCFLOW_")]:
            monkeypatch.delenv(name)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        world = Hostile(tmp_path, service, env, capfd)
        try:
            yield world
        finally:
            for module in world.modules:
                module.app.close()


def unique_tmp_name() -> str:
    return f"/tmp/qcflow-hostile-{uuid.uuid4().hex[:12]}"
