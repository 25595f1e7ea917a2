"""``GET /api/v1/privacy``: the guarantees as the audit measures them now."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import redis
from django.conf import settings as django_settings
from django.core.cache import cache
from django.utils import timezone
from pytest_django.fixtures import Settings
from rest_framework.test import APIRequestFactory

from backend.audit.services import keyring_observe
from backend.audit.views import PrivacyView
from backend.ephemeral import crypto
from tests.backend.audit.helpers import queued_job
from tests.conftest import Persona


@pytest.fixture(autouse=True)
def fresh_measurement() -> Iterator[None]:
    cache.clear()
    yield
    cache.clear()


def get_privacy(key: str | None) -> Any:
    """The view with the API's real authentication (the lead wires its URL)."""
    headers = {"HTTP_AUTHORIZATION": f"Bearer {key}"} if key else {}
    request = APIRequestFactory().get("/api/v1/privacy", **headers)
    response = PrivacyView.as_view()(request)
    response.render()
    return response


def body(response: Any) -> Any:
    return json.loads(response.content)


def test_it_needs_an_api_key(healthy: redis.Redis) -> None:
    assert get_privacy(None).status_code == 401
    assert get_privacy("ek_12345678_not-a-real-key-at-all").status_code == 401


def test_it_reports_the_measured_guarantees(
    healthy: redis.Redis, alice: Persona, settings: Settings
) -> None:
    settings.EPHEMERA_ISOLATE_JOBS = False
    queued_job()
    active = crypto.keyring().active
    keyring_observe(
        kid=active, key=crypto.keyring().keys[active], now=timezone.now() - timedelta(days=2)
    )

    response = get_privacy(alice.key)

    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    measured = body(response)
    ttl = measured["ttl"]
    assert ttl["input_seconds"] == django_settings.EPHEMERA_INPUT_TTL
    assert ttl["result_seconds"] == django_settings.EPHEMERA_RESULT_TTL
    assert ttl["input_seconds"] - 5 < ttl["max_seen_seconds"]["input"] <= ttl["input_seconds"]
    assert 0 < ttl["max_seen_seconds"]["record"] <= ttl["record_seconds"]
    assert ttl["max_seen_seconds"]["result"] is None
    assert measured["redis_persistence_off"] is True
    assert measured["job_isolation"] is False
    assert 2 * 86400 <= measured["key_rotation"]["age_seconds"] < 2 * 86400 + 60
    assert measured["findings"] == 0


@pytest.fixture
def snapshots_on(healthy: redis.Redis) -> Iterator[None]:
    healthy.config_set("save", "3600 1")
    try:
        yield
    finally:
        healthy.config_set("save", "")


@pytest.mark.usefixtures("snapshots_on")
def test_it_shows_persistence_on_and_counts_findings_without_details(
    healthy: redis.Redis, alice: Persona, settings: Settings
) -> None:
    settings.DEBUG = True

    measured = body(get_privacy(alice.key))

    assert measured["redis_persistence_off"] is False
    assert measured["findings"] == 2
    assert "debug" not in str(measured).lower()


def test_callers_within_seconds_share_one_measurement(
    healthy: redis.Redis, alice: Persona, bob: Persona
) -> None:
    first = body(get_privacy(alice.key))
    healthy.set("eph:in:plaintext", b"photo", ex=60)

    second = body(get_privacy(bob.key))

    assert second == first
    cache.clear()
    assert body(get_privacy(bob.key))["findings"] == 2
