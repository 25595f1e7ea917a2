"""The log filter: whatever a message or its extras hold, secrets come out redacted."""

from __future__ import annotations

import json
import logging
import uuid

from backend.logs import JsonFormatter, RedactingFilter
from backend.pseudonyms import hashed_id


def render(message: str, *args: object, **extra: object) -> dict[str, object]:
    record = logging.LogRecord("t", logging.INFO, __file__, 1, message, args, None)
    for key, value in extra.items():
        setattr(record, key, value)
    RedactingFilter().filter(record)
    return json.loads(JsonFormatter().format(record))


def test_keys_tokens_ids_and_ips_are_redacted_in_messages(settings: object) -> None:
    job_id = str(uuid.uuid4())
    key = "ek_1a2b3c4d_" + "S" * 43
    token = "rt_" + "T" * 64
    line = render("got %s %s %s from 203.0.113.5", key, token, job_id)
    text = json.dumps(line)
    for secret in (key, "S" * 43, token, job_id, "203.0.113.5"):
        assert secret not in text
    assert f"id:{hashed_id(job_id)}" in text


def test_nested_extras_are_redacted_too(settings: object) -> None:
    task_id = str(uuid.uuid4())
    line = render("Task received", data={"id": task_id, "args": "(job:abc)", "n": [1, task_id]})
    assert task_id not in json.dumps(line)


def test_the_authorization_header_is_redacted(settings: object) -> None:
    line = render("header Bearer abc.def-secret and X-API-Key: other-secret")
    assert "abc.def-secret" not in line["event"]
    assert "other-secret" not in line["event"]


def test_an_exception_keeps_its_type_and_loses_its_secrets(settings: object) -> None:
    try:
        raise ValueError("ek_1a2b3c4d_" + "Z" * 43)
    except ValueError:
        import sys

        record = logging.LogRecord("t", logging.ERROR, __file__, 1, "boom", None, sys.exc_info())
    RedactingFilter().filter(record)
    line = json.loads(JsonFormatter().format(record))
    assert line["error"].startswith("ValueError")
    assert "Z" * 43 not in line["error"]


def test_an_extra_never_replaces_the_lines_own_fields(settings: object) -> None:
    line = render("webhook_retry", event="a1b2", level="custom", attempt=1)
    assert (line["event"], line["level"]) == ("webhook_retry", "info")
    assert (line["extra_event"], line["extra_level"], line["attempt"]) == ("a1b2", "custom", 1)
