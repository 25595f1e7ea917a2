"""Which API key a request runs under, through the real gunicorn."""

from __future__ import annotations

import httpx
import pytest

from tests.backend.gunicorn_web import web
from tests.harness import Stack

__all__ = ["web"]

pytestmark = pytest.mark.slow

OTHER_KEY = "ek_00000000_" + "A" * 43


def test_either_header_carries_the_key_and_both_may_carry_the_same(
    web: tuple[Stack, int],
) -> None:
    stack, port = web
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=20) as http:
        for headers in (
            {"Authorization": f"Bearer {stack.key}"},
            {"Authorization": f"bearer  {stack.key}"},
            {"X-API-Key": stack.key},
            {"Authorization": f"Bearer {stack.key}", "X-API-Key": stack.key},
        ):
            assert http.get("/api/v1/tasks", headers=headers).status_code == 200, headers


@pytest.mark.parametrize("valid", ["Authorization", "X-API-Key"])
def test_two_different_keys_are_refused_whichever_is_valid(
    web: tuple[Stack, int], valid: str
) -> None:
    # It used to run under the Bearer key, whatever X-API-Key said.
    stack, port = web
    keys = {valid: stack.key, ({"Authorization", "X-API-Key"} - {valid}).pop(): OTHER_KEY}
    headers = {
        name: f"Bearer {key}" if name == "Authorization" else key for name, key in keys.items()
    }
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=20) as http:
        answer = http.get("/api/v1/tasks", headers=headers)
        assert answer.status_code == 400
        assert answer.json()["error"]["code"] == "invalid_request"
        assert "one API key" in answer.json()["error"]["message"]
        assert http.get("/healthz").status_code == 200


def test_a_scheme_other_than_bearer_is_no_key(web: tuple[Stack, int]) -> None:
    stack, port = web
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=20) as http:
        answer = http.get("/api/v1/tasks", headers={"Authorization": f"Basic {stack.key}"})
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "not_authenticated"
    assert answer.headers["www-authenticate"] == 'Bearer realm="ephemera"'
