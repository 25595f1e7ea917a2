"""Durable job traces: written at submit, closed at the end, read when Redis has nothing."""

from __future__ import annotations

import datetime as dt
import logging
from typing import cast

from django.db import Error as DatabaseError
from django.utils import timezone

from backend.ephemeral.keys import ACTIVE, Status
from backend.ephemeral.records import JobRecord
from backend.errors import JOB_ERRORS
from backend.jobs.models import JobTrace

logger = logging.getLogger(__name__)


def _at(timestamp: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(timestamp, tz=dt.UTC)


def trace_open(
    *,
    job_id: str,
    owner: str,
    task: str,
    created_at: float,
    lives: float,
    webhook_sealed: str | None = None,
) -> None:
    """Write the trace before anything else exists, so every id handed out has one."""
    JobTrace.objects.create(
        id=job_id,
        owner=owner,
        task=task,
        status="queued",
        created_at=_at(created_at),
        expires_at=_at(created_at + lives),
        webhook_sealed=webhook_sealed or "",
    )


def trace_discard(job_id: str) -> None:
    JobTrace.objects.filter(id=job_id).delete()


def trace_close(*, job_id: str, status: str, code: str = "") -> bool | None:
    """Note the end of a job that was still active; False when it had ended already,
    None when that cannot be told (no trace, or the database could not be asked).

    Closing is a conditional update, so of several processes that close the
    same end only one gets True: the lifecycle accounts for the end there.
    Never raises a database error: the job's end is already true in Redis, and
    a trace left active only makes a later read answer ``lost`` wrongly if
    Redis also loses the record, which the log line below lets an operator see.
    """
    try:
        if JobTrace.objects.filter(id=job_id, status__in=ACTIVE).update(
            status=status, error_code=code, ended_at=timezone.now()
        ):
            return True
        return False if JobTrace.objects.filter(id=job_id).exists() else None
    except DatabaseError as exc:
        logger.error("trace_write_failed", extra={"error_type": type(exc).__name__})
        return None


def trace_get(job_id: str) -> JobTrace | None:
    """The trace of a job that may still be asked about (not past its life)."""
    return JobTrace.objects.filter(id=job_id, expires_at__gt=timezone.now()).first()


def traces_active_before(moment: float) -> list[str]:
    """Ids of jobs still active in SQL that were created before ``moment``."""
    rows = JobTrace.objects.filter(status__in=ACTIVE, created_at__lt=_at(moment))
    return [str(job_id) for job_id in rows.values_list("id", flat=True)]


def traces_purge() -> int:
    """Delete the traces whose job can no longer exist; their number."""
    deleted, _ = JobTrace.objects.filter(expires_at__lte=timezone.now()).delete()
    return deleted


def as_record(trace: JobTrace) -> JobRecord:
    """The job as its trace tells it, for a client asking after Redis lost the record.

    A job that had succeeded lost its result with Redis: it answers ``expired``
    with the code ``lost``, never a result that no longer exists.
    """
    status, code = trace.status, trace.error_code
    if status == "succeeded":
        status, code = "expired", "lost"
    ended = trace.ended_at.timestamp() if trace.ended_at else None
    return JobRecord(
        id=str(trace.id),
        owner=trace.owner,
        task=trace.task,
        status=cast(Status, status),
        params={},
        format="",
        created_at=trace.created_at.timestamp(),
        expires_at=trace.expires_at.timestamp(),
        finished_at=ended,
        error_code=code or None,
        error_message=JOB_ERRORS.get(code) if code else None,
        webhook_sealed=trace.webhook_sealed or None,
    )
