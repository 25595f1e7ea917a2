"""The API's errors as exceptions: one class carrying status, code and message.

Every error the service answers has the body
``{"error": {"code": "<snake_case>", "message": "<text>"}}``; the subclasses
below let a caller catch the common cases by type instead of comparing codes.
"""

from __future__ import annotations


class EphemeraError(Exception):
    """Anything this client raises."""


class ApiError(EphemeraError):
    """An error answer from the service.

    ``status`` is the HTTP status, ``code`` the snake_case error code (such as
    ``unknown_task``), ``message`` what went wrong and what to do about it.
    ``retry_after`` is the ``Retry-After`` delay in seconds, when the service sent one.
    """

    def __init__(
        self, status: int, code: str, message: str, *, retry_after: float | None = None
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after


class InvalidRequest(ApiError):
    """400: bad params, an unknown task, a malformed request."""


class AuthenticationFailed(ApiError):
    """401: no API key, or a key that is invalid, expired or revoked."""


class NotFound(ApiError):
    """404: no such job or result (also another client's)."""


class ResultGone(ApiError):
    """410: the result was downloaded already, or it expired."""


class PayloadTooLarge(ApiError):
    """413: the upload is over the byte limit."""


class UnsupportedMediaType(ApiError):
    """415: the upload is not a JPEG, PNG or WebP."""


class ImageRejected(ApiError):
    """422: the image cannot be decoded, or has too many pixels."""


class RateLimited(ApiError):
    """429: too many requests or jobs in flight; wait ``retry_after`` seconds."""


class ServiceUnavailable(ApiError):
    """503: the service is busy or its backend is down; retry shortly."""


class JobTimeout(EphemeraError):
    """``wait`` gave up before the job ended; the job itself goes on."""

    def __init__(self, job_id: str, timeout: float) -> None:
        super().__init__(f"job {job_id} did not end within {timeout:g}s")
        self.job_id = job_id
        self.timeout = timeout


class JobNotSucceeded(EphemeraError):
    """A download was asked for a job that has no result (failed, cancelled, expired)."""

    def __init__(self, job_id: str, status: str, code: str | None, message: str | None) -> None:
        reason = f" ({code}: {message})" if code else ""
        super().__init__(f"job {job_id} ended {status}{reason}")
        self.job_id = job_id
        self.status = status
        self.code = code
        self.message = message


_BY_STATUS: dict[int, type[ApiError]] = {
    400: InvalidRequest,
    401: AuthenticationFailed,
    404: NotFound,
    410: ResultGone,
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
    422: ImageRejected,
    429: RateLimited,
    503: ServiceUnavailable,
}


def error_for(
    status: int, code: str, message: str, *, retry_after: float | None = None
) -> ApiError:
    """The exception for an error answer: the class of its status, else ``ApiError``."""
    cls = _BY_STATUS.get(status, ApiError)
    return cls(status, code, message, retry_after=retry_after)
