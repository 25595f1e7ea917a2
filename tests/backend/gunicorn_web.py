"""A web tier through the real gunicorn and a keep-alive client, for the
modules that test what it answers: they import ``web`` and ``client``."""

from __future__ import annotations

import os
from collections.abc import Iterator

import httpx
import pytest
import redis

from tests.harness import Stack

#: A Redis database of the session's server that only these modules use, one at a time.
WSGI_REDIS_DB = 13
BODY = os.urandom(1_500_000)


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, int]]:
    url = f"{os.environ['REDIS_URL'].rsplit('/', 1)[0]}/{WSGI_REDIS_DB}"
    redis.Redis.from_url(url).flushdb()
    stack = Stack.create(
        redis_url=url,
        workdir=tmp_path_factory.mktemp("wsgi"),
        EPHEMERA_MAX_UPLOAD_BYTES=str(1_000_000),
        WEB_CONCURRENCY="1",
    )
    _, port = stack.web()
    yield stack, port
    stack.stop()
    redis.Redis.from_url(url).flushdb()


@pytest.fixture
def client(web: tuple[Stack, int]) -> Iterator[httpx.Client]:
    stack, port = web
    redis.Redis.from_url(stack.env["REDIS_URL"]).flushdb()
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=20) as http:
        yield http


def upload(http: httpx.Client, key: str | None, data: bytes = BODY, **extra: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return http.post(
        "/api/v1/jobs",
        files={"image": ("photo.jpg", data)},
        data={"task": "cartoonize", **extra},
        headers=headers,
    )


def next_request_works(http: httpx.Client) -> None:
    assert http.get("/healthz").status_code == 200
