"""A list server for the tests: stdlib http.server in a thread on 127.0.0.1, serving list files
with ETag/304, chosen status codes, content types and delays, and recording every request."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Served:
    body: bytes
    content_type: str = "text/plain"
    etag: str | None = None
    status: int = 200
    delay: float = 0.0


@dataclass
class ListServer:
    files: dict[str, Served] = field(default_factory=dict)
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    port: int = 0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@contextlib.contextmanager
def serve_lists() -> Iterator[ListServer]:
    state = ListServer()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
            state.requests.append((self.path, dict(self.headers)))
            item = state.files.get(self.path)
            if item is None:
                self.send_error(404)
                return
            if item.etag and self.headers.get("If-None-Match") == item.etag:
                self.send_response(304)
                self.end_headers()
                return
            time.sleep(item.delay)
            self.send_response(item.status)
            self.send_header("Content-Type", item.content_type)
            self.send_header("Content-Length", str(len(item.body)))
            if item.etag:
                self.send_header("ETag", item.etag)
            self.end_headers()
            with contextlib.suppress(ConnectionError):
                self.wfile.write(item.body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
