"""gunicorn, kept to the service's promises in what it writes itself.

gunicorn answers a request it cannot parse (a request line or headers over
its limits, bytes that are not HTTP) before Django sees it: with an HTML
page, and a plain-text log line that names the client's IP. A request that
fails inside gunicorn is logged with its path, which can hold a job id or a
result token. Here its lines go through the service's JSON formatter and
redacting filter (``backend.logs``), the access line is JSON fields, and its
own answers carry the API's error shape (``backend.errors.error_json``) and
its log line names neither the address nor the request.

``bin/ephemera web`` runs gunicorn with ``--config python:backend.web_server``.
"""

from __future__ import annotations

import logging
import logging.config
import os
from datetime import timedelta
from typing import Any

from gunicorn import glogging, util
from gunicorn.http import errors
from gunicorn.workers.gthread import ThreadWorker

from backend.errors import SERVER_FAILURE, error_json
from backend.logs import logging_config

#: Our own failure: status, reason, code, message.
_FAILURE = (500, "Internal Server Error", "internal_error", SERVER_FAILURE)
#: What gunicorn refuses by itself, first match wins: status, reason, code, message.
_REFUSALS: tuple[tuple[type[Exception] | tuple[type[Exception], ...], int, str, str, str], ...] = (
    (
        errors.LimitRequestLine,
        414,
        "URI Too Long",
        "uri_too_long",
        "The request line is too long.",
    ),
    (
        errors.LimitRequestHeaders,
        431,
        "Request Header Fields Too Large",
        "headers_too_large",
        "The request's headers are too large or too many.",
    ),
    (
        errors.UnsupportedTransferCoding,
        501,
        "Not Implemented",
        "unsupported_transfer_coding",
        "Send the body with Content-Length or chunked transfer coding.",
    ),
    (
        errors.ExpectationFailed,
        417,
        "Expectation Failed",
        "expectation_failed",
        "Only 'Expect: 100-continue' is understood.",
    ),
    # A header the application tried to send, and a server misconfiguration,
    # are our failures, not the client's (both are ParseExceptions too).
    (
        (
            errors.InvalidResponseHeader,
            errors.InvalidResponseHeaderName,
            errors.ConfigurationProblem,
        ),
        *_FAILURE,
    ),
    (
        errors.ParseException,
        400,
        "Bad Request",
        "malformed_request",
        "The request is not valid HTTP/1.1.",
    ),
)
#: What Django's middleware adds to every other answer (``tests/security``).
_SECURITY_HEADERS = (
    "X-Content-Type-Options: nosniff",
    "X-Frame-Options: DENY",
    "Referrer-Policy: no-referrer",
    "Cache-Control: no-store",
)
# Read by gunicorn from this module; the rest of its settings are in bin/ephemera.
worker_class = "backend.web_server.Worker"
logger_class = "backend.web_server.Logger"
# The redacting filter hashes ids under SECRET_KEY: the master, which loads no
# Django app, needs the settings too.
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "backend.settings")


def post_worker_init(worker: Any) -> None:
    """A gunicorn hook: how many threads the app's long polls share (``backend.api.prefer``)."""
    from backend.api.prefer import share_threads

    share_threads(worker.cfg.threads)


class Logger(glogging.Logger):
    """gunicorn's log lines as the service's JSON lines, through its redacting filter."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for log in (self.error_log, self.access_log):
            for handler in list(log.handlers):
                log.removeHandler(handler)
        logging.config.dictConfig(logging_config(logging.getLevelName(self.loglevel)))

    def access(self, resp: Any, req: Any, environ: dict[str, Any], request_time: timedelta) -> None:
        # No address, no path, no query, no user agent: the status and the sizes only.
        status = resp.status.split(None, 1)[0] if isinstance(resp.status, str) else resp.status
        self.access_log.info(
            "http_access",
            extra={
                "status": int(status),
                "method": environ.get("REQUEST_METHOD"),
                "bytes": getattr(resp, "sent", None),
                "duration_us": request_time // timedelta(microseconds=1),
            },
        )


class Worker(ThreadWorker):
    """gunicorn's threaded worker, whose own answers are the API's JSON errors."""

    def handle_error(self, req: Any, client: Any, addr: Any, exc: Exception) -> None:
        status, reason, code, message = next(
            (refusal[1:] for refusal in _REFUSALS if isinstance(exc, refusal[0])), _FAILURE
        )
        if status >= 500:
            self.log.error("http_failed", extra={"error_type": type(exc).__name__})
        else:
            self.log.info("http_refused", extra={"status": status, "code": code})
        body = error_json(code, message)
        head = "".join(
            f"{line}\r\n"
            for line in (
                f"HTTP/1.1 {status} {reason}",
                "Connection: close",
                "Content-Type: application/json",
                f"Content-Length: {len(body)}",
                *_SECURITY_HEADERS,
                "",
            )
        ).encode("latin-1")
        try:
            util.write_nonblock(client, head + body)
        except OSError:
            self.log.debug("http_answer_not_sent")
