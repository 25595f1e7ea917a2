"""Middleware for every API request: who is calling, per-IP limits, headers.

Runs before authentication, so a flood of bad keys from one address is limited
and blocked like any other traffic.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import redis
from django.conf import settings
from django.http import HttpRequest, HttpResponse

from backend import abuse, metrics
from backend.api.errors import ApiError, coded_json
from backend.errors import backend_unavailable
from backend.pseudonyms import subject_hash

API_PREFIX = "/api/"
CORS_METHODS = "GET, POST, DELETE, OPTIONS"
CORS_HEADERS = "Authorization, X-API-Key, Content-Type, Prefer"
#: Answer headers a browser page of another origin may read: when to poll or
#: retry again, whether its wait was granted, where its job is.
CORS_EXPOSED = "Retry-After, Preference-Applied, Location"


PLATFORM_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


class PlatformHostMiddleware:
    """Let probes and Prometheus reach the platform endpoints by pod IP.

    Kubelet and Prometheus address a pod by its IP, which is never in
    ``ALLOWED_HOSTS``; Django would answer 400. For these three paths only
    (which serve no user data and build no URLs from the host) the Host header
    is replaced by the first allowed host; every other path keeps Django's check.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path in PLATFORM_PATHS and settings.ALLOWED_HOSTS:
            request.META["HTTP_HOST"] = (
                settings.ALLOWED_HOSTS[0].lstrip(".").replace("*", "localhost")
            )
        return self.get_response(request)


class ApiGuardMiddleware:
    timer = staticmethod(time.time)

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request.META["EPHEMERA_CLIENT_IP"] = abuse.client_ip(
            request.META.get("REMOTE_ADDR", ""), request.META.get("HTTP_X_FORWARDED_FOR", "")
        )
        if not request.path.startswith(API_PREFIX):
            return self.get_response(request)
        origin = request.META.get("HTTP_ORIGIN")
        if request.method == "OPTIONS" and origin:
            return self._cors(HttpResponse(status=204), origin, preflight=True)
        try:
            refused = self._refuse_by_ip(request)
        except redis.RedisError:
            refused = coded_json(backend_unavailable())
        response = refused or self.get_response(request)
        # Jobs, results and errors all describe one person's photo: never cache.
        response["Cache-Control"] = "no-store"
        return self._cors(response, origin, preflight=False) if origin else response

    def _refuse_by_ip(self, request: HttpRequest) -> HttpResponse | None:
        ip_subject = subject_hash("ip", request.META["EPHEMERA_CLIENT_IP"])
        left = abuse.blocked_for(subjects=[ip_subject])
        if left > 0:
            return _too_many(
                "temporarily_blocked", "Too many rejected uploads from this address.", left
            )
        decision = abuse.rate_limit(
            scope="ip", subject=ip_subject, per_minute=settings.EPHEMERA_IP_RATE, now=self.timer()
        )
        if not decision.allowed:
            metrics.inc("ephemera_throttled_total", scope="ip")
            return _too_many(
                "rate_limited", "Too many requests from this address.", decision.retry_after
            )
        return None

    @staticmethod
    def _cors(response: HttpResponse, origin: str, *, preflight: bool) -> HttpResponse:
        # Closed by default: only an allow-listed origin gets any CORS header.
        if origin not in settings.EPHEMERA_CORS_ORIGINS:
            return response
        response["Access-Control-Allow-Origin"] = origin
        response["Vary"] = "Origin"
        if preflight:
            response["Access-Control-Allow-Methods"] = CORS_METHODS
            response["Access-Control-Allow-Headers"] = CORS_HEADERS
            response["Access-Control-Max-Age"] = "600"
        else:
            response["Access-Control-Expose-Headers"] = CORS_EXPOSED
        return response


def _too_many(code: str, message: str, retry_after: float) -> HttpResponse:
    if code == "temporarily_blocked":
        metrics.inc("ephemera_blocked_total")
    return coded_json(ApiError(429, code, message, retry_after=retry_after))
