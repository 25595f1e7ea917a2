"""One error shape everywhere: ``{"error": {"code": ..., "message": ...}}``.

No body ever carries a stack trace, a path, a model name or a version. Anything
that is not an expected API error is logged by type only and answered with a
plain 500.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from django.core.exceptions import (
    PermissionDenied,
    RequestDataTooBig,
    SuspiciousOperation,
    TooManyFieldsSent,
    TooManyFilesSent,
)
from django.db import DatabaseError
from django.http import Http404, HttpRequest, HttpResponse
from rest_framework import exceptions, status
from rest_framework.response import Response

from backend.errors import (
    SERVER_FAILURE,
    CodedError,
    backend_unavailable,
    error_body,
    error_json,
)

logger = logging.getLogger(__name__)


class ApiError(CodedError):
    """An expected failure of a request, with its HTTP status, code and message."""

    def __init__(
        self, status_code: int, code: str, message: str, *, retry_after: float | None = None
    ) -> None:
        super().__init__(code, message, status=status_code, retry_after=retry_after)

    @property
    def status_code(self) -> int:
        return self.status


_DRF_CODES: dict[type[exceptions.APIException], tuple[str, str]] = {
    exceptions.NotAuthenticated: (
        "not_authenticated",
        "Send your API key as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'.",
    ),
    exceptions.AuthenticationFailed: (
        "authentication_failed",
        "The API key is not valid, expired or revoked.",
    ),
    exceptions.MethodNotAllowed: ("method_not_allowed", "This method is not allowed here."),
    exceptions.NotFound: ("not_found", "Nothing here; see /api/docs/."),
    exceptions.PermissionDenied: ("permission_denied", "You may not do this."),
    exceptions.ParseError: ("malformed_request", "The request body could not be parsed."),
    exceptions.UnsupportedMediaType: (
        "unsupported_media_type",
        "Send the request as multipart/form-data.",
    ),
    exceptions.NotAcceptable: ("not_acceptable", "This endpoint answers application/json."),
}


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    if isinstance(exc, CodedError):
        return _respond(exc.status, exc.code, exc.message, exc)
    if isinstance(exc, exceptions.Throttled):
        return _respond(429, "rate_limited", "Too many requests; retry later.", exc)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    if isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    if isinstance(exc, RequestDataTooBig):
        return _respond(413, "payload_too_large", "The request body is too large.", None)
    if isinstance(exc, TooManyFieldsSent | TooManyFilesSent):
        return _respond(400, "invalid_request", "The request has too many fields.", None)
    if isinstance(exc, SuspiciousOperation):
        # What Django's own handler answers 400 to: the client sent it, not our fault.
        logger.warning("suspicious_request", extra={"error_type": type(exc).__name__})
        return _respond(400, "malformed_request", "The request body could not be parsed.", None)
    if isinstance(exc, exceptions.ValidationError):
        return _respond(400, "invalid_request", _first_message(exc.detail), exc)
    if isinstance(exc, exceptions.APIException):
        code, message = _DRF_CODES.get(type(exc), (str(exc.default_code), "Request refused."))
        return _respond(exc.status_code, code, message, exc)
    if isinstance(exc, redis.RedisError | DatabaseError):
        logger.error("backend_unavailable", extra={"error_type": type(exc).__name__})
        exc = backend_unavailable()
        return _respond(exc.status, exc.code, exc.message, exc)
    logger.error("unhandled_error", extra={"error_type": type(exc).__name__})
    return _respond(500, "internal_error", SERVER_FAILURE, None)


def _first_message(detail: Any) -> str:
    if isinstance(detail, dict):
        for field, value in detail.items():
            return f"{field}: {_first_message(value)}"
    if isinstance(detail, list) and detail:
        return _first_message(detail[0])
    return str(detail)


def _respond(status_code: int, code: str, message: str, exc: Exception | None) -> Response:
    response = Response(error_body(code, message), status=status_code)
    # Throttled exceptions of DRF's own carry their wait as ``wait``.
    wait = exc.retry_after if isinstance(exc, CodedError) else getattr(exc, "wait", None)
    if wait is not None:
        response["Retry-After"] = _whole_seconds(wait)
    auth_header = getattr(exc, "auth_header", None)
    if auth_header:
        response["WWW-Authenticate"] = auth_header
    return response


# --- Django-level handlers (outside DRF views) ------------------------------------


def error_response(status_code: int, code: str, message: str) -> HttpResponse:
    """An error answered outside DRF, in the one shape."""
    return HttpResponse(
        error_json(code, message), status=status_code, content_type="application/json"
    )


def coded_json(error: CodedError) -> HttpResponse:
    """A ``CodedError`` answered outside DRF (middleware), ``Retry-After`` included."""
    response = error_response(error.status, error.code, error.message)
    if error.retry_after is not None:
        response["Retry-After"] = _whole_seconds(error.retry_after)
    return response


def _whole_seconds(seconds: float) -> str:
    """``Retry-After`` in whole seconds, rounded up, at least 1."""
    return str(max(1, int(seconds + 0.999)))


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return error_response(
        status.HTTP_400_BAD_REQUEST, "invalid_request", "The request is malformed."
    )


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return error_response(status.HTTP_403_FORBIDDEN, *_DRF_CODES[exceptions.PermissionDenied])


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return error_response(status.HTTP_404_NOT_FOUND, *_DRF_CODES[exceptions.NotFound])


def server_error(request: HttpRequest) -> HttpResponse:
    return error_response(500, "internal_error", SERVER_FAILURE)


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    return error_response(status.HTTP_403_FORBIDDEN, "csrf_failed", "CSRF check failed.")
