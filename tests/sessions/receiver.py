"""A relying party's logout endpoints, for real: an HTTP server on a loopback port, in a thread of
the test, recording every request it gets (back-channel POSTs, front-channel iframe GETs) and
answering each as the test scripts it (a status, a redirect, or a hang)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


@dataclass
class Received:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    form: dict[str, list[str]]


@dataclass
class Receiver:
    port: int
    received: list[Received] = field(default_factory=list)
    # What to answer, in order; when empty, 200. An int is a status; "redirect" a 302 to /elsewhere;
    # "hang" holds the request until the receiver stops.
    script: list[int | str] = field(default_factory=list)
    released: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def uri(self, path: str) -> str:
        return f"{self.origin}{path}"

    def of(self, path: str) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.path == path]


@contextmanager
def receiver_running() -> Iterator[Receiver]:
    state = Receiver(port=0)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def _answer(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode("utf-8", "replace") if length else ""
            with state.lock:
                state.received.append(
                    Received(
                        method=self.command,
                        path=parts.path,
                        query=parse_qs(parts.query),
                        headers={k.lower(): v for k, v in self.headers.items()},
                        form=parse_qs(body),
                    )
                )
                step = state.script.pop(0) if state.script else 200
            if step == "hang":
                state.released.wait(30)
                return
            if step == "redirect":
                self.send_response(302)
                self.send_header("Location", f"{state.origin}/elsewhere")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            payload = b"<!doctype html><title>rp</title>"
            self.send_response(int(step))
            self.send_header("Content-Type", "text/html")
            self.send_header("Cache-Control", "no-store")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = _answer
        do_POST = _answer

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.released.set()
        server.shutdown()
        server.server_close()
