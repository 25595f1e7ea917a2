"""Helpers for the audit tests: real jobs written by the real store."""

from __future__ import annotations

from typing import Any

from backend.pseudonyms import owner_hash
from tests import factories

AuditRun = tuple[int, list[dict[str, Any]]]


def checks(lines: list[dict[str, Any]]) -> set[str]:
    return {line["check"] for line in lines if "check" in line}


def queued_job(image: bytes = b"\xff\xd8\xff\xe0 a photo") -> str:
    """A real job, as the API writes it: record, sealed input and event stream."""
    return factories.queued_job(
        image, task="anonymize", params={"mode": "blur"}, owner=owner_hash(1)
    )


def succeeded_job() -> str:
    """A real job that a worker took and finished: a sealed result and a sealed token."""
    return factories.succeeded_job(task="anonymize", owner=owner_hash(1))
