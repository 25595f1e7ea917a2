"""Liveness and readiness. Readiness checks what a request needs: Redis and the database."""

from __future__ import annotations

import logging

from django.db import connection
from django.http import HttpRequest, JsonResponse

from backend.ephemeral import store

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
        return bool(store.client().ping())
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
