"""The POST itself: to the checked address only, with the URL's Host, reading a few bytes."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from backend.webhooks.http import DeliveryFailed, post
from backend.webhooks.targets import Target
from tests.webhook_receiver import receiver


def test_it_connects_to_the_checked_address_with_the_urls_host() -> None:
    # A name that no resolver knows: reaching the receiver proves the POST went to
    # the address checked earlier and did not ask DNS again (no rebinding window).
    with receiver() as hook:
        target = Target("http", "hooks.invalid", hook.port, "/in?x=1", address="127.0.0.1")
        assert post(target, body=b"{}", headers={"webhook-id": "msg_1"}) == 204
    (received,) = hook.received
    assert received.headers["host"] == f"hooks.invalid:{hook.port}"
    assert received.path == "/in?x=1"


@pytest.fixture
def endless_answer() -> Iterator[int]:
    """A server that answers 200 and then streams a body without end."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        conn, _ = server.accept()
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000000\r\n\r\n")
        try:
            while not stop.is_set():
                conn.sendall(b"x" * 65536)
        except OSError:
            pass
        conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    server.close()
    thread.join(timeout=5)


def test_it_does_not_read_a_long_answer(endless_answer: int) -> None:
    target = Target("http", "127.0.0.1", endless_answer, "/", address="127.0.0.1")
    started = time.monotonic()
    assert post(target, body=b"{}", headers={}) == 200
    assert time.monotonic() - started < 2


def test_a_closed_port_fails_without_raising_anything_else() -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    with pytest.raises(DeliveryFailed):
        post(Target("http", "127.0.0.1", port, "/", address="127.0.0.1"), body=b"", headers={})
