"""What every request meets first: per-IP limits and blocks, CORS, no-store, probe hosts."""

from __future__ import annotations

import redis
from django.http import HttpRequest, HttpResponse
from django.test import Client, RequestFactory
from pytest_django.fixtures import Settings

from backend import abuse
from backend.api.middleware import ApiGuardMiddleware
from backend.pseudonyms import subject_hash
from tests.conftest import redis_out_of_reach

NOW = 1_000_000.0


def guard(now: float = NOW) -> ApiGuardMiddleware:
    """The middleware around a view that answers 200, on a clock the test sets."""

    def view(request: HttpRequest) -> HttpResponse:
        return HttpResponse("ok")

    middleware = ApiGuardMiddleware(view)
    middleware.timer = lambda: now  # type: ignore[method-assign]
    return middleware


def api_get(remote: str = "198.51.100.7", **extra: str) -> HttpRequest:
    return RequestFactory().get("/api/v1/tasks", REMOTE_ADDR=remote, **extra)


def test_it_limits_requests_per_ip_and_refills_with_time(
    redis_conn: redis.Redis, settings: Settings
) -> None:
    settings.EPHEMERA_IP_RATE = 6  # one every 10 s
    assert [guard()(api_get()).status_code for _ in range(6)] == [200] * 6
    refused = guard()(api_get())
    assert (refused.status_code, refused["Retry-After"]) == (429, "10")
    assert guard(NOW + 10.01)(api_get()).status_code == 200


def test_requests_per_minute_per_ip_cover_unauthenticated_callers(
    db: None, redis_conn: redis.Redis, settings: Settings
) -> None:
    settings.EPHEMERA_IP_RATE = 5
    client = Client(REMOTE_ADDR="198.51.100.7")
    assert [client.get("/api/v1/tasks").status_code for _ in range(5)] == [401] * 5
    refused = client.get("/api/v1/tasks")
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limited"
    assert Client(REMOTE_ADDR="198.51.100.8").get("/api/v1/tasks").status_code == 401


def test_a_forged_forwarded_for_does_not_escape_the_ip_limit(
    db: None, redis_conn: redis.Redis, settings: Settings
) -> None:
    settings.EPHEMERA_IP_RATE = 3
    statuses = [
        Client(REMOTE_ADDR="198.51.100.7", HTTP_X_FORWARDED_FOR=f"192.0.2.{i}")
        .get("/api/v1/tasks")
        .status_code
        for i in range(5)
    ]
    assert statuses == [401, 401, 401, 429, 429]


def test_it_refuses_a_blocked_ip_with_the_time_left(
    redis_conn: redis.Redis, settings: Settings
) -> None:
    settings.EPHEMERA_BLOCK_AFTER = 1
    settings.EPHEMERA_BLOCK_SECONDS = 600
    abuse.note_rejected_upload(subjects=[subject_hash("ip", "198.51.100.7")])
    refused = guard()(api_get())
    assert refused.status_code == 429
    assert 590 < int(refused["Retry-After"]) <= 600
    assert guard()(api_get(remote="198.51.100.8")).status_code == 200


def test_it_answers_503_with_a_retry_when_redis_is_down(settings: Settings) -> None:
    with redis_out_of_reach(settings):
        refused = guard()(api_get())
    assert (refused.status_code, refused["Retry-After"]) == (503, "5")
    assert b"backend_unavailable" in refused.content


def test_it_leaves_non_api_paths_alone(redis_conn: redis.Redis, settings: Settings) -> None:
    settings.EPHEMERA_IP_RATE = 1
    answers = [guard()(RequestFactory().get("/healthz")) for _ in range(3)]
    assert [answer.status_code for answer in answers] == [200] * 3
    assert "Cache-Control" not in answers[0]


def test_every_api_answer_is_no_store(redis_conn: redis.Redis) -> None:
    assert guard()(api_get())["Cache-Control"] == "no-store"


def preflight(origin: str) -> HttpResponse:
    return Client().options(
        "/api/v1/jobs", HTTP_ORIGIN=origin, HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST"
    )


def test_cors_is_closed_by_default(db: None, redis_conn: redis.Redis) -> None:
    assert "Access-Control-Allow-Origin" not in preflight("https://evil.example")


def test_cors_opens_only_to_an_allow_listed_origin(
    db: None, redis_conn: redis.Redis, settings: Settings
) -> None:
    settings.EPHEMERA_CORS_ORIGINS = ["https://app.example"]
    allowed = preflight("https://app.example")
    assert allowed["Access-Control-Allow-Origin"] == "https://app.example"
    assert "Authorization" in allowed["Access-Control-Allow-Headers"]
    assert "Access-Control-Allow-Origin" not in preflight("https://evil.example")


def test_an_allowed_origin_gets_cors_on_answers_too(
    redis_conn: redis.Redis, settings: Settings
) -> None:
    settings.EPHEMERA_CORS_ORIGINS = ["https://app.example"]
    answer = guard()(api_get(HTTP_ORIGIN="https://app.example"))
    assert answer["Access-Control-Allow-Origin"] == "https://app.example"
    assert answer["Vary"] == "Origin"
    assert "Access-Control-Allow-Methods" not in answer
    # Its page may read when to poll again, and whether its wait was granted.
    assert {"Retry-After", "Preference-Applied"} <= {
        name.strip() for name in answer["Access-Control-Expose-Headers"].split(",")
    }


def test_probes_reach_the_platform_paths_by_pod_ip(db: None, redis_conn: redis.Redis) -> None:
    for path in ("/healthz", "/readyz", "/metrics"):
        assert Client().get(path, HTTP_HOST="10.1.2.3:8000").status_code == 200
    assert Client().get("/api/v1/tasks", HTTP_HOST="10.1.2.3:8000").status_code == 400
