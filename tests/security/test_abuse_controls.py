"""Throttles, in-flight caps, temporary blocks and who counts as the caller."""

from __future__ import annotations

import pytest
from django.test import Client

from backend import abuse
from backend.ephemeral import connection
from backend.pseudonyms import subject_hash
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


def test_the_submit_rate_refills_with_time(db: None, redis_conn: object) -> None:
    """GCRA with an injected clock: 10 a minute is one every 6 s."""
    subject = subject_hash("client", "dave")
    now = 1_000_000.0
    for _ in range(10):
        assert abuse.rate_limit(scope="t", subject=subject, per_minute=10, now=now).allowed
    refused = abuse.rate_limit(scope="t", subject=subject, per_minute=10, now=now)
    assert not refused.allowed
    assert refused.retry_after == pytest.approx(6.0, abs=0.01)
    assert not abuse.rate_limit(scope="t", subject=subject, per_minute=10, now=now + 5.9).allowed
    assert abuse.rate_limit(scope="t", subject=subject, per_minute=10, now=now + 6.01).allowed


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


def test_requests_per_minute_per_ip_cover_unauthenticated_callers(
    db: None, redis_conn: object, settings: object
) -> None:
    settings.EPHEMERA_IP_RATE = 5  # type: ignore[attr-defined]
    client = Client(REMOTE_ADDR="198.51.100.7")
    assert [client.get("/api/v1/tasks").status_code for _ in range(5)] == [401] * 5
    refused = client.get("/api/v1/tasks")
    assert refused.status_code == 429
    assert error_code(refused) == "rate_limited"
    assert Client(REMOTE_ADDR="198.51.100.8").get("/api/v1/tasks").status_code == 401


@pytest.mark.parametrize(
    ("remote", "forwarded", "trusted", "expected"),
    [
        ("203.0.113.9", "", [], "203.0.113.9"),
        ("203.0.113.9", "1.2.3.4", [], "203.0.113.9"),  # untrusted peer: XFF ignored
        ("10.0.0.2", "198.51.100.7", ["10.0.0.0/8"], "198.51.100.7"),
        ("10.0.0.2", "6.6.6.6, 198.51.100.7", ["10.0.0.0/8"], "198.51.100.7"),  # forged left part
        ("10.0.0.2", "198.51.100.7, 10.0.0.3", ["10.0.0.0/8"], "198.51.100.7"),  # two proxies
        ("10.0.0.2", "not-an-ip", ["10.0.0.0/8"], "10.0.0.2"),
    ],
)
def test_x_forwarded_for_is_believed_only_from_trusted_proxies(
    settings: object, remote: str, forwarded: str, trusted: list[str], expected: str
) -> None:
    settings.EPHEMERA_TRUSTED_PROXIES = trusted  # type: ignore[attr-defined]
    assert abuse.client_ip(remote, forwarded) == expected


def test_a_forged_forwarded_for_does_not_escape_the_ip_limit(
    db: None, redis_conn: object, settings: object
) -> None:
    settings.EPHEMERA_IP_RATE = 3  # type: ignore[attr-defined]
    statuses = [
        Client(REMOTE_ADDR="198.51.100.7", HTTP_X_FORWARDED_FOR=f"192.0.2.{i}")
        .get("/api/v1/tasks")
        .status_code
        for i in range(5)
    ]
    assert statuses == [401, 401, 401, 429, 429]
