"""Fixtures for the audit tests: an empty ``eph:`` namespace and a healthy system."""

from __future__ import annotations

import io
import json
import secrets
from collections.abc import Callable

import pytest
import redis
from django.core.management import call_command
from django.core.management.base import CommandError
from pytest_django.fixtures import Settings

from tests.backend.audit.helpers import AuditRun


@pytest.fixture
def empty_redis(redis_conn: redis.Redis) -> redis.Redis:
    """The session's Redis with no key of ours, whatever earlier tests left."""
    for key in redis_conn.scan_iter(match="eph:*", count=1000):
        redis_conn.delete(key)
    return redis_conn


@pytest.fixture
def healthy(db: None, settings: Settings, empty_redis: redis.Redis) -> redis.Redis:
    """Good values for every setting the audit checks; the session's Redis keeps nothing."""
    settings.DEBUG = False
    settings.FLOWER_BASIC_AUTH = f"ops:{secrets.token_urlsafe(24)}"
    settings.SECRET_KEY = secrets.token_urlsafe(50)
    return empty_redis


@pytest.fixture
def privacy_audit() -> Callable[[], AuditRun]:
    """Run ``manage.py privacy_audit``: its exit code and its JSON lines."""

    def run() -> AuditRun:
        out = io.StringIO()
        try:
            call_command("privacy_audit", stdout=out)
            code = 0
        except CommandError as exc:
            code = exc.returncode
        return code, [json.loads(line) for line in out.getvalue().splitlines()]

    return run
