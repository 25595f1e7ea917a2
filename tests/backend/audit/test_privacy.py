"""``run_privacy_audit``: the measured facts behind the findings."""

from __future__ import annotations

import base64
import secrets
from datetime import timedelta

import redis
from django.conf import settings as django_settings
from django.utils import timezone
from pytest_django.fixtures import Settings
from redis.backoff import NoBackoff
from redis.retry import Retry

from backend.audit.privacy import CHECKS, run_privacy_audit
from backend.ephemeral import keys
from backend.ephemeral.records import record_ttl
from tests.backend.audit.helpers import queued_job, succeeded_job
from tests.services import free_port


def test_it_measures_the_ttls_on_keys_of_ours(healthy: redis.Redis) -> None:
    queued_job()
    succeeded_job()

    report = run_privacy_audit()

    seen = report.redis.max_ttl_seen
    assert django_settings.EPHEMERA_INPUT_TTL - 5 < seen["in"] <= report.input_ttl
    assert django_settings.EPHEMERA_RESULT_TTL - 5 < seen["res"] <= report.result_ttl
    assert 0 < seen["job"] <= report.record_ttl == record_ttl()
    assert 0 < seen["evt"] <= report.record_ttl
    assert report.redis.keys_scanned == 6
    assert report.redis.persistence_off is True
    assert report.ok


def test_no_key_of_ours_means_no_ttl_seen(healthy: redis.Redis) -> None:
    report = run_privacy_audit()
    assert report.redis.max_ttl_seen == dict.fromkeys(keys.NAMESPACES)


def test_the_counts_name_every_check_so_gauges_fall_back_to_zero(
    healthy: redis.Redis, settings: Settings
) -> None:
    settings.DEBUG = True
    counts = run_privacy_audit().counts()
    assert list(counts) == list(CHECKS)
    assert counts["debug_on"] == 1
    assert sum(counts.values()) == 1


def test_findings_are_counted_per_kind_not_listed_per_key(healthy: redis.Redis) -> None:
    for _ in range(3):
        healthy.persist(keys.job_key(queued_job()))

    report = run_privacy_audit()

    assert len(report.findings) == 1
    assert report.findings[0].count == 3
    assert report.counts()["redis_key_without_ttl"] == 3


def test_an_unreachable_redis_is_a_finding(healthy: redis.Redis) -> None:
    dead = redis.Redis(port=free_port(), socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0))

    report = run_privacy_audit(conn=dead)

    assert not report.redis.reachable
    assert [finding.check for finding in report.findings] == ["redis_unreachable"]


def test_the_key_age_counts_from_when_the_active_key_was_first_seen(
    healthy: redis.Redis, settings: Settings
) -> None:
    start = timezone.now()
    assert run_privacy_audit(now=start, observe_keyring=True).active_key_age_seconds == 0

    later = run_privacy_audit(now=start + timedelta(days=3), observe_keyring=True)
    assert later.active_key_since == start
    assert later.active_key_age_seconds == 3 * 86400

    new_key = base64.b64encode(secrets.token_bytes(32)).decode()
    settings.EPHEMERA_KEYS = f"rotated:{new_key},{settings.EPHEMERA_KEYS}"
    rotated = run_privacy_audit(now=start + timedelta(days=4), observe_keyring=True)
    assert rotated.active_key_since == start + timedelta(days=4)
    assert rotated.active_key_age_seconds == 0


def test_a_key_id_reused_for_new_key_material_starts_a_new_age(
    healthy: redis.Redis, settings: Settings
) -> None:
    start = timezone.now()
    settings.EPHEMERA_KEYS = f"k1:{base64.b64encode(secrets.token_bytes(32)).decode()}"
    run_privacy_audit(now=start, observe_keyring=True)

    settings.EPHEMERA_KEYS = f"k1:{base64.b64encode(secrets.token_bytes(32)).decode()}"
    report = run_privacy_audit(now=start + timedelta(days=1), observe_keyring=True)

    assert report.active_key_since == start + timedelta(days=1)


def test_a_read_of_the_report_writes_nothing(healthy: redis.Redis) -> None:
    from backend.audit.models import KeyringObservation

    assert run_privacy_audit().active_key_since is None
    assert not KeyringObservation.objects.exists()
    first = run_privacy_audit(observe_keyring=True).active_key_since
    assert first is not None
    assert run_privacy_audit().active_key_since == first
