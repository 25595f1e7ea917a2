"""The Python client and the ``ephemera`` command line of the Ephemera API.

A client of the HTTP API only: it never imports the service's own code.
"""

from __future__ import annotations

from ephemera_client.client import Client
from ephemera_client.errors import (
    ApiError,
    AuthenticationFailed,
    EphemeraError,
    ImageRejected,
    InvalidRequest,
    JobNotSucceeded,
    JobTimeout,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    ResultGone,
    ServiceUnavailable,
    UnsupportedMediaType,
)
from ephemera_client.models import Download, Job, JobError, JobResult, Task

__all__ = [
    "ApiError",
    "AuthenticationFailed",
    "Client",
    "Download",
    "EphemeraError",
    "ImageRejected",
    "InvalidRequest",
    "Job",
    "JobError",
    "JobNotSucceeded",
    "JobResult",
    "JobTimeout",
    "NotFound",
    "PayloadTooLarge",
    "RateLimited",
    "ResultGone",
    "ServiceUnavailable",
    "Task",
    "UnsupportedMediaType",
]
