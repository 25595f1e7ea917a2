"""Every keep-alive client survives every answer, through the real gunicorn.

A keep-alive client (httpx here, as a browser or a requests Session would)
sends a request that is answered early (before or without its body being
read), then its next request on the same client. Before the WSGI layer, that
next request got no answer at all.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import httpx
import pytest

from tests.backend.gunicorn_web import BODY, client, next_request_works, upload, web
from tests.harness import Stack

__all__ = ["client", "web"]

pytestmark = pytest.mark.slow


def test_a_401_before_the_body_is_read_leaves_the_client_working(client: httpx.Client) -> None:
    answer = upload(client, key=None)
    assert answer.status_code == 401
    assert answer.headers["connection"] == "close"
    next_request_works(client)


def test_a_404_with_an_unread_body_leaves_the_client_working(client: httpx.Client) -> None:
    assert client.post("/api/v1/nothing-here", content=BODY).status_code == 404
    next_request_works(client)


def test_a_403_leaves_the_client_working(client: httpx.Client) -> None:
    # The admin's login form without its CSRF token.
    answer = client.post("/admin/login/", data={"username": "x" * 100_000})
    assert answer.status_code == 403
    next_request_works(client)


def test_a_413_declared_too_large_leaves_the_client_working(
    client: httpx.Client, web: tuple[Stack, int]
) -> None:
    stack, _ = web
    answer = upload(client, stack.key, data=os.urandom(1_200_000))
    assert (answer.status_code, answer.json()["error"]["code"]) == (413, "payload_too_large")
    next_request_works(client)


def test_a_415_for_a_body_that_is_not_multipart_leaves_the_client_working(
    client: httpx.Client, web: tuple[Stack, int]
) -> None:
    stack, _ = web
    answer = client.post(
        "/api/v1/jobs",
        content=BODY[:500_000],
        headers={"Authorization": f"Bearer {stack.key}", "Content-Type": "application/json"},
    )
    assert answer.status_code == 415
    next_request_works(client)


def test_a_415_for_bytes_that_are_no_photo_keeps_the_connection_alive(
    client: httpx.Client, web: tuple[Stack, int]
) -> None:
    stack, _ = web
    answer = upload(client, stack.key, data=b"GIF89a" + BODY[:1000])
    assert answer.status_code == 415
    # The body was read to find that out: the connection stays open.
    assert answer.headers["connection"] == "keep-alive"
    next_request_works(client)


def test_a_429_and_the_block_leave_the_client_working(
    client: httpx.Client, web: tuple[Stack, int]
) -> None:
    stack, _ = web
    for _ in range(3):  # three rejected uploads in a row block the client
        assert upload(client, stack.key, data=b"not a photo").status_code == 415
    blocked = upload(client, stack.key)
    assert (blocked.status_code, blocked.json()["error"]["code"]) == (429, "temporarily_blocked")
    assert "retry-after" in blocked.headers
    next_request_works(client)


def test_a_client_that_disconnects_mid_upload_harms_no_one(
    client: httpx.Client, web: tuple[Stack, int]
) -> None:
    stack, port = web
    with socket.create_connection(("127.0.0.1", port)) as raw:
        raw.sendall(
            b"POST /api/v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            + f"Authorization: Bearer {stack.key}\r\n".encode()
            + b"Content-Type: multipart/form-data; boundary=x\r\nContent-Length: 900000\r\n\r\n"
            + b"--x\r\n"
            + BODY[:100_000]
        )
    next_request_works(client)
    assert upload(client, None).status_code == 401
    next_request_works(client)


def test_answers_do_not_name_the_server_software(client: httpx.Client) -> None:
    answer = client.get("/healthz")
    assert "server" not in answer.headers
    assert "gunicorn" not in str(answer.headers).lower()


def test_the_web_listens_on_loopback_unless_told_otherwise(web: tuple[Stack, int]) -> None:
    _, port = web
    listening = Path("/proc/net/tcp").read_text().splitlines()[1:]
    local = {line.split()[1] for line in listening if line.split()[3] == "0A"}
    assert f"0100007F:{port:04X}" in local  # 127.0.0.1
    assert f"00000000:{port:04X}" not in local  # 0.0.0.0
