"""Errors with a code: one shape for every failure a client gets to see.

An API answer, a rejected upload and a failed job all carry a snake_case
``code`` and a ``message`` that says what was wrong and what to do. The codes
and messages of a job's end are defined here once; the pipeline, the Celery
failure hook, the sweeper and the serializers use them from here.
"""

from __future__ import annotations

import json


def error_body(code: str, message: str) -> dict[str, dict[str, str]]:
    """The body of every error answer, whichever layer gives it."""
    return {"error": {"code": code, "message": message}}


def error_json(code: str, message: str) -> bytes:
    """``error_body`` as the bytes of an answer, compact as DRF renders it, for the
    layers that answer without DRF (Django's handlers, gunicorn's own refusals)."""
    return json.dumps(error_body(code, message), separators=(",", ":")).encode()


#: The answer's message for a failure of our own: it names nothing of the stack.
SERVER_FAILURE = "Something went wrong on our side."


#: Seconds a client waits before it retries after ``backend_unavailable``.
BACKEND_RETRY_AFTER = 5


class CodedError(Exception):
    """A failure the client should see: ``code``, ``message`` and an HTTP ``status``."""

    code: str
    message: str
    status: int = 422
    #: Seconds, sent as ``Retry-After`` (429 and 503 answers); None sends none.
    retry_after: float | None = None

    def __init__(
        self,
        code: str,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        if status is not None:
            self.status = status
        self.retry_after = retry_after


def backend_unavailable(message: str = "The service is busy; retry shortly.") -> CodedError:
    """Redis, the queue or the database out of reach: 503, and a retry in a few seconds."""
    return CodedError("backend_unavailable", message, status=503, retry_after=BACKEND_RETRY_AFTER)


#: Why a job ended without a result, and what the client should do about it.
JOB_ERRORS: dict[str, str] = {
    "worker_lost": "The worker processing this job stopped; submit it again.",
    "lost": (
        "The job's data was lost when the service's store restarted; "
        "nothing of the photo remains. Submit it again."
    ),
    "time_limit": "The job ran out of time; try a smaller photo.",
    "out_of_memory": "The job ran out of memory; try a smaller photo.",
    "internal_error": "The job failed on our side.",
    "integrity_error": "The upload failed its integrity check; submit it again.",
    "input_expired": (
        "The job waited in the queue longer than its upload may live; submit it again."
    ),
    "expired": "The result was not downloaded in time and was deleted.",
    "unknown_task": "This task is no longer offered; see GET /api/v1/tasks.",
    "envelope_rejected": (
        "The encrypted upload does not open with this service's key for this task: it was "
        "changed on the way, or encrypted for another task or service. Encrypt it again."
    ),
}

#: Answers that count as a rejected upload towards a client's temporary block,
#: from the web (a plain upload, an envelope) or from a job process (what it
#: found inside an envelope).
UPLOAD_REJECTIONS = frozenset(
    {
        "payload_too_large",
        "unsupported_media_type",
        "undecodable_image",
        "image_too_large",
        "invalid_envelope",
        "unknown_key",
        "key_retired",
        "envelope_rejected",
    }
)


def job_error(code: str) -> CodedError:
    """The end of a job with one of the service's own codes (not a task's)."""
    return CodedError(code, JOB_ERRORS[code])
