"""A real HTTP receiver for webhooks, in a thread on 127.0.0.1 (allow-listed in tests)."""

from __future__ import annotations

import select
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    port: int
    #: Status codes to answer, in order; once used up, 204.
    answers: list[int] = field(default_factory=list)
    #: Where a 3xx answer points (its Location).
    location: str = ""
    received: list[Received] = field(default_factory=list)
    #: Never answer: hold each POST's connection open, as a tarpit does.
    hold: bool = False
    #: How many held connections their sender closed (gave up on).
    abandoned: int = 0
    released: threading.Event = field(default_factory=threading.Event)

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def wait_for(self, count: int, timeout: float = 30) -> list[Received]:
        deadline = time.monotonic() + timeout
        while len(self.received) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(self.received) >= count, f"{len(self.received)} of {count} POSTs arrived"
        return self.received


@contextmanager
def receiver(
    answers: list[int] | None = None, location: str = "", *, hold: bool = False
) -> Iterator[Receiver]:
    state = Receiver(port=0, answers=list(answers or []), location=location, hold=hold)

    def held(connection: socket.socket) -> None:
        """Wait, unanswered, until the receiver closes or the sender hangs up."""
        while not state.released.wait(0.05):
            readable, _, _ = select.select([connection], [], [], 0)
            if readable and not connection.recv(1, socket.MSG_PEEK):
                state.abandoned += 1
                return

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length)
            state.received.append(
                Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
            )
            if state.hold:
                held(self.connection)
                self.close_connection = True
                return
            status = state.answers.pop(0) if state.answers else 204
            self.send_response(status)
            if 300 <= status < 400:
                self.send_header("Location", state.location)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.released.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
