"""Liveness, readiness and metrics: the endpoints for the platform, not for clients."""

from __future__ import annotations

import hmac
import logging

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from backend.api.errors import error_response
from backend.ephemeral.connection import client
from backend.metrics import RedisCollector

logger = logging.getLogger(__name__)


def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def readyz(request: HttpRequest) -> JsonResponse:
    checks = {"redis": _check_redis(), "database": _check_database()}
    ready = all(checks.values())
    body = {"status": "ok" if ready else "unavailable", "checks": checks}
    return JsonResponse(body, status=200 if ready else 503)


def _check_redis() -> bool:
    try:
        return bool(client().ping())
    except Exception as exc:
        logger.warning("readiness_redis_failed", extra={"error_type": type(exc).__name__})
        return False


def _check_database() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return True
    except Exception as exc:
        logger.warning("readiness_database_failed", extra={"error_type": type(exc).__name__})
        return False


_registry = CollectorRegistry(auto_describe=False)
_registry.register(RedisCollector())  # type: ignore[arg-type]


def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus metrics: counts and durations by task and code, never user data."""
    token = settings.EPHEMERA_METRICS_TOKEN
    if token is not None:
        presented = request.META.get("HTTP_AUTHORIZATION", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(presented.encode(), token.encode()):
            return error_response(401, "not_authenticated", "Metrics need a token.")
    return HttpResponse(generate_latest(_registry), content_type=CONTENT_TYPE_LATEST)
