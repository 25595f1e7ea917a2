"""Throttles, in-flight caps and temporary blocks, end to end through the real API."""

from __future__ import annotations

from django.test import Client

from backend.ephemeral import connection
from tests.conftest import Persona, Upload, make_persona
from tests.integration.helpers import submit


def error_code(response: object) -> str:
    return response.json()["error"]["code"]  # type: ignore[attr-defined]


def test_a_free_client_gets_ten_submits_a_minute_then_429(
    db: None, redis_conn: object, canary_jpeg: Upload, settings: object
) -> None:
    settings.EPHEMERA_TIER_IN_FLIGHT = {"free": 0}  # type: ignore[attr-defined]
    carol = make_persona("carol", tier="free")
    statuses = [submit(carol.api, canary_jpeg.data).status_code for _ in range(10)]
    assert statuses == [202] * 10
    refused = submit(carol.api, canary_jpeg.data)
    assert refused.status_code == 429
    assert error_code(refused) == "rate_limited"
    assert 1 <= int(refused["Retry-After"]) <= 6


def test_an_unlimited_client_is_not_rate_limited(
    db: None, redis_conn: object, canary_jpeg: Upload
) -> None:
    erin = make_persona("erin", tier="unlimited")
    assert {submit(erin.api, canary_jpeg.data).status_code for _ in range(15)} == {202}


def test_a_free_client_may_have_four_jobs_in_flight(
    db: None, redis_conn: object, canary_jpeg: Upload
) -> None:
    # No worker runs in this test: every accepted job stays queued.
    frank = make_persona("frank", tier="free")
    assert [submit(frank.api, canary_jpeg.data).status_code for _ in range(4)] == [202] * 4
    refused = submit(frank.api, canary_jpeg.data)
    assert refused.status_code == 429
    assert "in flight" in refused.json()["error"]["message"]
    # Deleting one frees a place.
    jobs = [key.decode().split(":")[2] for key in connection.client().scan_iter(match="eph:job:*")]
    assert frank.api.delete(f"/api/v1/jobs/{jobs[0]}").status_code == 204
    assert submit(frank.api, canary_jpeg.data).status_code == 202


def test_three_rejected_uploads_in_a_row_block_the_client_and_its_ip(
    alice: Persona, bob: Persona, canary_jpeg: Upload
) -> None:
    for _ in range(3):
        assert submit(alice.api, b"GIF89a not a photo").status_code == 415
    blocked = submit(alice.api, canary_jpeg.data)
    assert blocked.status_code == 429
    assert error_code(blocked) == "temporarily_blocked"
    assert int(blocked["Retry-After"]) > 3000
    # The IP is blocked too, for everyone and for every API path, authenticated or not.
    assert error_code(bob.api.get("/api/v1/tasks")) == "temporarily_blocked"
    assert error_code(Client().get("/api/v1/tasks")) == "temporarily_blocked"


def test_a_valid_upload_resets_the_count_of_rejections(alice: Persona, canary_jpeg: Upload) -> None:
    for _ in range(2):
        assert submit(alice.api, b"%PDF-1.7").status_code == 415
    assert submit(alice.api, canary_jpeg.data).status_code == 202
    for _ in range(2):
        assert submit(alice.api, b"%PDF-1.7").status_code == 415
    assert submit(alice.api, canary_jpeg.data).status_code == 202
