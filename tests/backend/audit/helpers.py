"""Helpers for the audit tests: real jobs written by the real store."""

from __future__ import annotations

import uuid
from typing import Any

from backend.ephemeral import store

AuditRun = tuple[int, list[dict[str, Any]]]


def checks(lines: list[dict[str, Any]]) -> set[str]:
    return {line["check"] for line in lines if "check" in line}


def queued_job(image: bytes = b"\xff\xd8\xff\xe0 a photo") -> str:
    """A real job, as the API writes it: record, sealed input and event stream."""
    job_id = str(uuid.uuid4())
    store.create_job(
        job_id=job_id,
        owner=store.owner_hash(1),
        task="anonymize",
        params={"mode": "blur"},
        fmt="jpeg",
        image=image,
    )
    return job_id


def succeeded_job() -> str:
    """A real job that a worker took and finished: a sealed result and a sealed token."""
    job_id = queued_job()
    assert store.claim_job(job_id).outcome == "claimed"
    assert store.publish_result(job_id, data=b"result", content_type="image/png", run_ms=5)
    return job_id
