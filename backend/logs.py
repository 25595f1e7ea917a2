"""JSON log lines that never carry a photo, a key, a token, a raw id or an IP.

Callers log hashed ids (``backend.pseudonyms.hashed_id``) so one job can be followed across the
web and worker logs without the log revealing which job it was. The redacting
filter is the last line of defence for anything that slips through, including
third-party messages (Celery, gunicorn, Django).
"""

from __future__ import annotations

import json
import logging
import re
import time
from typing import Any

from backend.pseudonyms import hashed_id

API_KEY_PATTERN = re.compile(r"\bek_[A-Za-z0-9]{8}_[A-Za-z0-9_-]{16,}")
TOKEN_PATTERN = re.compile(r"\brt_[A-Za-z0-9_-]{16,}")
UUID_PATTERN = re.compile(
    r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"
)
IPV4_PATTERN = re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}\b")
BEARER_PATTERN = re.compile(r"(?i)\b(bearer|x-api-key:?)\s+\S+")

_STANDARD_ATTRS = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime"}
)


def redact(text: str) -> str:
    text = API_KEY_PATTERN.sub("[api-key]", text)
    text = TOKEN_PATTERN.sub("[token]", text)
    text = BEARER_PATTERN.sub(r"\1 [redacted]", text)
    text = UUID_PATTERN.sub(lambda match: f"id:{hashed_id(match.group(0).lower())}", text)
    return IPV4_PATTERN.sub("[ip]", text)


class RedactingFilter(logging.Filter):
    """Rewrites the message and string extras of every record before output."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = None
        for key, value in list(vars(record).items()):
            if key in _STANDARD_ATTRS or isinstance(value, int | float | bool | None):
                continue
            # Structures (Celery's `data` dict of a task) are flattened to text and
            # redacted like any string: nothing bypasses the filter by nesting.
            text = value if isinstance(value, str) else json.dumps(value, default=str)
            setattr(record, key, redact(text))
        if record.exc_info and record.exc_info[1] is not None:
            # Tracebacks can quote local values; keep the type and a redacted text.
            exc = record.exc_info[1]
            record.exc_text = redact(f"{type(exc).__name__}: {exc}")
            record.exc_info = None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                # An extra never replaces the line's own fields (an ``event`` extra
                # once hid which event a line was); it is kept beside them.
                field = f"extra_{key}" if key in line else key
                line[field] = value if isinstance(value, int | float | bool | None) else str(value)
        if record.exc_text:
            line["error"] = record.exc_text
        elif record.exc_info and record.exc_info[1] is not None:
            line["error"] = redact(type(record.exc_info[1]).__name__)
        return json.dumps(line, ensure_ascii=False)


def logging_config(level: str) -> dict[str, Any]:
    """Every process's logging (``dictConfig``): JSON lines on stdout, through the filter."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"redact": {"()": "backend.logs.RedactingFilter"}},
        "formatters": {"json": {"()": "backend.logs.JsonFormatter"}},
        "handlers": {
            "stdout": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "filters": ["redact"],
            }
        },
        "root": {"handlers": ["stdout"], "level": level},
        "loggers": {
            # Request logs would carry paths with job ids and result tokens.
            "django.request": {"level": "ERROR"},
            "django.server": {"level": "ERROR"},
            # gunicorn's own lines go through the root's handler, not its own
            # (``backend.web_server.Logger``).
            "gunicorn.error": {"handlers": [], "propagate": True},
            "gunicorn.access": {"handlers": [], "propagate": True},
        },
    }
