"""A local HTTP server for the network tests: routes with a status, body, content type and
delay, and a count of hits per path. Nothing beyond 127.0.0.1 is contacted. Imported by the test
modules (pytest puts `tests/` on sys.path); import `server` and `no_proxies` to use them."""

from __future__ import annotations

import contextlib
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


@dataclass
class Route:
    status: int = 200
    body: bytes = b""
    content_type: str | None = "video/mp4"
    send_length: bool = True
    delay: float = 0.0  # seconds of silence before the status line
    stall_after: int | None = None  # send this many body bytes, then fall silent for `delay`


@dataclass
class Server:
    base: str
    routes: dict[str, Route]
    hits: Counter[str] = field(default_factory=Counter)

    def url(self, path: str) -> str:
        return f"{self.base}{path}"


@pytest.fixture()
def server() -> Iterator[Server]:
    routes: dict[str, Route] = {}
    hits: Counter[str] = Counter()
    lock = threading.Lock()
    stop = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            with lock:
                hits[self.path] += 1
            route = routes.get(self.path, Route(404, b"not found", "text/plain"))
            if route.delay and route.stall_after is None:
                # Bounded, and cut short when the test ends, so no thread outlives it long.
                stop.wait(route.delay)
                return
            self.send_response(route.status)
            if route.content_type:
                self.send_header("Content-Type", route.content_type)
            if route.send_length:
                self.send_header("Content-Length", str(len(route.body)))
            self.end_headers()
            # The client may hang up early (e.g. over the size limit).
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                if route.stall_after is None:
                    self.wfile.write(route.body)
                else:
                    self.wfile.write(route.body[: route.stall_after])
                    self.wfile.flush()
                    stop.wait(route.delay)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield Server(f"http://127.0.0.1:{httpd.server_address[1]}", routes, hits)
    finally:
        stop.set()
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(autouse=True)
def no_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    # requests honours proxy variables; the test server must be reached directly.
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
