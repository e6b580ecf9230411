"""I/O test doubles that kill their own process at an exact point: a store and a transport.

They wrap the *real* store and the *real* HTTP transport of a child process
(``tests/chaos/child.py``); qcflow's code runs unchanged and knows nothing of them. When the
chosen point is reached, ``die`` writes a note (which point, and what was being done) to the
note file, then sends SIGKILL to its own process: no ``finally``, no ``atexit``, no flush of
anything qcflow holds — what a machine losing power or FC killing an instance leaves behind.

The points (``POINTS``), by the guarantee each one attacks:

- ``push:after-claim``       the ledger claim was just won (create-if-absent answered True);
- ``push:before-upload``     UploadAudioData is about to leave (claimed, CCC asked, nothing sent);
- ``push:after-upload``      SCA answered UploadAudioData (a task exists, or a repeat was refused),
                             before the ledger heard of it;
- ``push:before-outcome``    the outcome is about to be written (SCA has the task);
- ``harvest:before-commit``  a part's lines are spilled, its commit record is about to be created;
- ``harvest:before-part``    a commit record (and pending marker) exists, its part is not written;
- ``harvest:mid-part``       the part's first bytes are written, the part is not committed;
- ``harvest:before-checkpoint`` at least one part is committed, the checkpoint is about to move.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx

PUSH_AFTER_CLAIM = "push:after-claim"
PUSH_BEFORE_UPLOAD = "push:before-upload"
PUSH_AFTER_UPLOAD = "push:after-upload"
PUSH_BEFORE_OUTCOME = "push:before-outcome"
HARVEST_BEFORE_COMMIT = "harvest:before-commit"
HARVEST_BEFORE_PART = "harvest:before-part"
HARVEST_MID_PART = "harvest:mid-part"
HARVEST_BEFORE_CHECKPOINT = "harvest:before-checkpoint"

PUSH_POINTS = (PUSH_AFTER_CLAIM, PUSH_BEFORE_UPLOAD, PUSH_AFTER_UPLOAD, PUSH_BEFORE_OUTCOME)
HARVEST_POINTS = (HARVEST_BEFORE_COMMIT, HARVEST_BEFORE_PART, HARVEST_MID_PART, HARVEST_BEFORE_CHECKPOINT)
POINTS = PUSH_POINTS + HARVEST_POINTS
#: Points where SCA already holds the task when the process dies (a resend would duplicate it).
AFTER_SCA = (PUSH_AFTER_UPLOAD, PUSH_BEFORE_OUTCOME)


class Killer:
    """Kills this process once, at ``point``, after writing a note to ``note_path``."""

    def __init__(self, point: str | None, note_path: str | None) -> None:
        if point is not None and point not in POINTS:
            raise ValueError(f"unknown crash point {point!r}; known: {', '.join(POINTS)}")
        self.point = point
        self.note_path = note_path
        self._lock = threading.Lock()

    def armed(self, point: str) -> bool:
        return self.point == point

    def die(self, detail: dict[str, Any]) -> None:
        with self._lock:  # one thread writes the note; the others wait for the end
            if self.note_path:
                fd = os.open(self.note_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                try:
                    os.write(fd, json.dumps({"point": self.point, **detail}).encode("utf-8"))
                    os.fsync(fd)
                finally:
                    os.close(fd)
            os.kill(os.getpid(), signal.SIGKILL)


class CrashingStore:
    """An ``ObjectStore`` that delegates to a real one and dies at a store point."""

    def __init__(self, inner: Any, killer: Killer) -> None:
        self._inner = inner
        self._killer = killer
        self.url = inner.url
        self.parts_committed = 0
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"CrashingStore({self._inner!r}, at={self._killer.point})"

    def get(self, key: str) -> Any:
        return self._inner.get(key)

    def head(self, key: str) -> Any:
        return self._inner.head(key)

    def put(self, key: str, data: bytes, **kw: Any) -> Any:
        return self._inner.put(key, data, **kw)

    def list(self, prefix: str = "", **kw: Any) -> Iterator[Any]:
        return self._inner.list(prefix, **kw)

    def delete(self, key: str) -> None:
        self._inner.delete(key)

    def signed_get_url(self, key: str, expires: timedelta) -> str:
        return self._inner.signed_get_url(key, expires)

    def create_if_absent(self, key: str, data: bytes, **kw: Any) -> bool:
        killer = self._killer
        if killer.armed(PUSH_BEFORE_OUTCOME) and key.endswith(".outcome.json"):
            killer.die({"key": key, "outcome": _json(data)})
        if killer.armed(HARVEST_BEFORE_COMMIT) and key.startswith("state/harvest/commits/"):
            killer.die({"key": key})
        if killer.armed(HARVEST_BEFORE_CHECKPOINT) and key.startswith("state/harvest/checkpoint/"):
            with self._lock:
                committed = self.parts_committed
            if committed:
                killer.die({"key": key, "parts_committed": committed})
        created = self._inner.create_if_absent(key, data, **kw)
        if created and killer.armed(PUSH_AFTER_CLAIM) and key.endswith(".claim.json"):
            killer.die({"key": key, "claim": _json(data)})
        return created

    def open_writer(self, key: str, **kw: Any) -> Any:
        if not key.startswith("results/"):
            return self._inner.open_writer(key, **kw)
        if self._killer.armed(HARVEST_BEFORE_PART):
            self._killer.die({"key": key})
        return _CountingWriter(self._inner.open_writer(key, **kw), self, key)


class _CountingWriter:
    """A result part's writer: dies after its first write (``harvest:mid-part``) and counts
    the parts committed (for ``harvest:before-checkpoint``)."""

    def __init__(self, inner: Any, store: CrashingStore, key: str) -> None:
        self._inner = inner
        self._store = store
        self._key = key

    def write(self, data: bytes) -> None:
        self._inner.write(data)
        if self._store._killer.armed(HARVEST_MID_PART):
            self._store._killer.die({"key": self._key, "bytes": len(data)})

    def abort(self) -> None:
        self._inner.abort()

    @property
    def etag(self) -> str | None:
        return self._inner.etag

    def __enter__(self) -> _CountingWriter:
        self._inner.__enter__()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self._inner.__exit__(exc_type, exc, tb)
        if exc_type is None and self._inner.etag is not None:
            with self._store._lock:
                self._store.parts_committed += 1


class CrashingTransport(httpx.AsyncBaseTransport):
    """The HTTP transport of the API clients; dies around ``UploadAudioData``."""

    def __init__(self, killer: Killer, inner: httpx.AsyncBaseTransport | None = None) -> None:
        self._killer = killer
        self._inner = inner or httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        killer = self._killer
        upload = request.headers.get("x-acs-action") == "UploadAudioData"
        if upload and killer.armed(PUSH_BEFORE_UPLOAD):
            killer.die({"action": "UploadAudioData", "sent": False})
        response = await self._inner.handle_async_request(request)
        if upload and killer.armed(PUSH_AFTER_UPLOAD):
            body = await response.aread()
            answer = _json(body)
            landed = isinstance(answer, dict) and (answer.get("Success") is True or answer.get("Code") == "CallUuidRepeated")
            if landed:
                killer.die({"action": "UploadAudioData", "sent": True, "task_id": answer.get("Data"),
                            "code": answer.get("Code")})
            headers = [(k, v) for k, v in response.headers.multi_items()
                       if k.lower() not in ("content-encoding", "transfer-encoding", "content-length")]
            return httpx.Response(response.status_code, headers=headers, content=body, request=request)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


def _json(data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        return None
