"""Run the sandbox on loopback: in a background thread (tests, benchmarks, demo) or in the foreground (CLI)."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import uvicorn

from qcflow.tools.sandbox.app import DroppedConnection, SandboxApp
from qcflow.tools.sandbox.options import SandboxOptions


class _HideInjectedDrops(logging.Filter):
    """Dropped connections are a requested fault, not a server bug: keep them out of the error log."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], DroppedConnection))


logging.getLogger("uvicorn.error").addFilter(_HideInjectedDrops())


def _http_impl() -> str:
    try:
        import httptools  # noqa: F401
    except ImportError:
        return "h11"
    return "httptools"


class SandboxServer:
    """A real HTTP server for ``SandboxApp`` on ``host:port`` (port 0: a free one).

    Use as a context manager; ``stop`` (or leaving the block) ends it and joins its threads
    (the server's and the callback sender's), and both are daemons so a forgotten server
    never keeps a process alive.
    """

    def __init__(
        self,
        options: SandboxOptions | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.app = SandboxApp(options, clock)
        self.host = host
        # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY on accepted connections only when the
        # listening socket says it is TCP; without it every answer waits ~40 ms (Nagle + delayed ACK)
        self._socket = socket.socket(
            socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP
        )
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, port))
        self.port: int = self._socket.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            http=_http_impl(),
            loop="asyncio",
            timeout_keep_alive=30,
        )
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def endpoint(self) -> str:
        """``host:port``, the form the official SDKs take as ``endpoint`` (protocol http)."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.endpoint}"

    def start(self, timeout: float = 10.0) -> SandboxServer:
        self.app.callbacks.start()
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, name="qcflow-sandbox", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("sandbox server did not start")
            time.sleep(0.01)
        return self

    def serve_forever(self) -> None:
        """Serve in the calling thread until interrupted (Ctrl-C) or ``stop``."""
        self.app.callbacks.start()
        try:
            self._server.run(sockets=[self._socket])
        finally:
            self.app.callbacks.stop()
            self._socket.close()

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the server to finish; from another thread than the serving one, wait for it."""
        self._server.should_exit = True
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
            self._socket.close()
            self.app.callbacks.stop(timeout)

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
