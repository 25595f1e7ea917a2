"""What gunicorn answers and logs by itself: the API's error shape, JSON lines, no address."""

from __future__ import annotations

import json
import socket

import httpx
import pytest

from tests.backend.gunicorn_web import client, next_request_works, web
from tests.harness import Stack

__all__ = ["client", "web"]

pytestmark = pytest.mark.slow

SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}


def assert_refused(answer: httpx.Response, status: int, code: str) -> None:
    assert answer.status_code == status
    assert answer.headers["content-type"] == "application/json"
    assert answer.json()["error"]["code"] == code
    assert {name: answer.headers.get(name) for name in SECURITY_HEADERS} == SECURITY_HEADERS
    assert answer.headers["connection"] == "close"


def test_headers_over_the_limit_get_a_json_431(client: httpx.Client) -> None:
    answer = client.get("/api/v1/tasks", headers={"Authorization": "Bearer " + "a" * 10_000})
    assert_refused(answer, 431, "headers_too_large")
    next_request_works(client)


def test_a_request_line_over_the_limit_gets_a_json_414(client: httpx.Client) -> None:
    assert_refused(client.get("/api/v1/jobs/" + "a" * 9000), 414, "uri_too_long")
    next_request_works(client)


@pytest.mark.parametrize(
    "request_bytes",
    [b"NOT HTTP\r\n\r\n", b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n"],
    ids=["request line", "header"],
)
def test_bytes_that_are_not_http_get_a_json_400(
    web: tuple[Stack, int], request_bytes: bytes
) -> None:
    _, port = web
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        raw.sendall(request_bytes)
        answer = b""
        while chunk := raw.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ")
    assert json.loads(body)["error"]["code"] == "malformed_request"


def test_its_log_lines_are_json_without_the_clients_address(
    client: httpx.Client, web: tuple[Stack, int]
) -> None:
    stack, _ = web
    client.get("/api/v1/tasks", headers={"Authorization": "Bearer " + "a" * 10_000})
    client.get("/healthz")
    [gunicorn] = [process for process in stack.processes if process.name == "web"]
    lines = gunicorn.log_path.read_text().splitlines()
    events = [json.loads(line) for line in lines]  # every line: a JSON object
    assert {"event": "http_refused", "status": 431, "code": "headers_too_large"}.items() <= next(
        event for event in events if event["event"] == "http_refused"
    ).items()
    assert any(event["event"] == "http_access" and event["status"] == 200 for event in events)
    assert "127.0.0.1" not in "\n".join(lines)
