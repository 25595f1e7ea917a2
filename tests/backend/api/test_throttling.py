"""The per-client throttles on the views: submit rate, in-flight cap, block, rejections."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import cv2
import httpx
import pytest
import redis
from pytest_django.fixtures import Settings
from rest_framework.request import Request
from rest_framework.test import APIRequestFactory

from backend import abuse
from backend.api.errors import ApiError
from backend.api.throttling import (
    BlockedClientThrottle,
    InFlightThrottle,
    SubmitRateThrottle,
    counting_rejections,
)
from backend.audit.models import AuditEvent
from backend.clients.models import ApiClient
from backend.pseudonyms import client_subject, owner_hash, subject_hash
from tests.backend.gunicorn_web import web
from tests.conftest import Persona, portrait
from tests.factories import queued_job
from tests.harness import Stack, manage

__all__ = ["web"]

NOW = 1_000_000.0


@pytest.fixture
def client_row(alice: Persona) -> ApiClient:
    return ApiClient.objects.get(name=alice.name)


def request_by(client: ApiClient, method: str = "post") -> Request:
    """A request as the views see it after authentication, from 198.51.100.7."""
    raw = getattr(APIRequestFactory(), method)("/api/v1/jobs")
    raw.META["EPHEMERA_CLIENT_IP"] = "198.51.100.7"
    request = Request(raw)
    request.user = client
    return request


def submit_rate(now: float) -> SubmitRateThrottle:
    throttle = SubmitRateThrottle()
    throttle.timer = lambda: now  # type: ignore[method-assign]
    return throttle


def test_it_refuses_submits_over_the_tier_rate_until_time_refills_it(
    client_row: ApiClient, settings: Settings
) -> None:
    settings.EPHEMERA_TIER_RATES = {"standard": 2}  # one every 30 s
    for _ in range(2):
        assert submit_rate(NOW).allow_request(request_by(client_row), None)
    with pytest.raises(ApiError) as refused:
        submit_rate(NOW).allow_request(request_by(client_row), None)
    assert (refused.value.status, refused.value.code) == (429, "rate_limited")
    assert refused.value.retry_after == pytest.approx(30.0, abs=0.01)
    assert AuditEvent.objects.filter(event="throttled", outcome="submit").count() == 1
    assert submit_rate(NOW + 30.01).allow_request(request_by(client_row), None)


def test_it_does_not_count_reads_against_the_submit_rate(
    client_row: ApiClient, settings: Settings
) -> None:
    settings.EPHEMERA_TIER_RATES = {"standard": 1}
    for _ in range(3):
        assert submit_rate(NOW).allow_request(request_by(client_row, "get"), None)
    assert submit_rate(NOW).allow_request(request_by(client_row), None)


def test_it_refuses_a_client_at_its_in_flight_cap(
    client_row: ApiClient, settings: Settings
) -> None:
    settings.EPHEMERA_TIER_IN_FLIGHT = {"standard": 2}
    owner = owner_hash(client_row.pk)
    assert abuse.admit_in_flight(owner=owner, job_id=queued_job(owner=owner), cap=0)
    assert InFlightThrottle().allow_request(request_by(client_row), None)

    assert abuse.admit_in_flight(owner=owner, job_id=queued_job(owner=owner), cap=0)
    with pytest.raises(ApiError) as refused:
        InFlightThrottle().allow_request(request_by(client_row), None)
    assert (refused.value.status, refused.value.code) == (429, "rate_limited")
    assert "2 jobs in flight" in refused.value.message


@pytest.mark.slow
def test_a_burst_of_submits_is_held_to_the_in_flight_cap(web: tuple[Stack, int]) -> None:
    # Eight at once from a free key (4 in flight, 10 a minute), through gunicorn, with no
    # worker to end them: all eight pass the early check, which counts the
    # jobs already queued, before any of them is.
    stack, port = web
    key = manage(stack.env, "create_api_key", "--name", "burst", "--tier", "free").strip()
    start = threading.Barrier(8)
    photo = cv2.imencode(".jpg", portrait((128, 128)))[1].tobytes()

    def submit(_: int) -> int:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            start.wait()
            return http.post(
                "/api/v1/jobs",
                files={"image": ("photo.jpg", photo)},
                data={"task": "detect"},
                headers={"Authorization": f"Bearer {key}"},
            ).status_code

    with ThreadPoolExecutor(8) as pool:
        answers = sorted(pool.map(submit, range(8)))
    assert answers == [202] * 4 + [429] * 4
    # The refused jobs left nothing: four records, four uploads.
    stored = redis.Redis.from_url(stack.env["REDIS_URL"])
    assert len(list(stored.scan_iter(match="eph:job:*"))) == 4
    assert len(list(stored.scan_iter(match="eph:in:*"))) == 4


def test_it_refuses_a_blocked_client_with_the_time_left(
    client_row: ApiClient, settings: Settings
) -> None:
    settings.EPHEMERA_BLOCK_AFTER = 1
    settings.EPHEMERA_BLOCK_SECONDS = 600
    assert BlockedClientThrottle().allow_request(request_by(client_row), None)
    abuse.note_rejected_upload(subjects=[client_subject(owner_hash(client_row.pk))])
    with pytest.raises(ApiError) as refused:
        BlockedClientThrottle().allow_request(request_by(client_row), None)
    assert refused.value.code == "temporarily_blocked"
    assert 590 < (refused.value.retry_after or 0) <= 600
    assert AuditEvent.objects.filter(event="blocked").count() == 1


def reject(request: Request, code: str) -> None:
    with pytest.raises(ApiError), counting_rejections(request):
        raise ApiError(415, code, "refused")


def test_rejected_uploads_block_both_the_client_and_its_ip(
    client_row: ApiClient, settings: Settings, redis_conn: redis.Redis
) -> None:
    settings.EPHEMERA_BLOCK_AFTER = 2
    for _ in range(2):
        reject(request_by(client_row), "unsupported_media_type")
    for subject in (client_subject(owner_hash(client_row.pk)), subject_hash("ip", "198.51.100.7")):
        assert abuse.blocked_for(subjects=[subject]) > 0


def test_errors_that_are_no_rejected_upload_do_not_count(
    client_row: ApiClient, settings: Settings
) -> None:
    settings.EPHEMERA_BLOCK_AFTER = 2
    for _ in range(3):
        reject(request_by(client_row), "invalid_request")
    assert abuse.blocked_for(subjects=[client_subject(owner_hash(client_row.pk))]) == 0
