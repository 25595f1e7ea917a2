"""The life of one job, in one place: every state change, its metric and its audit row.

    submit -> queued -> claim -> running -> succeed  -> succeeded -> (download)
                  |                  |---> fail     -> failed (code)
                  |                  '---> lose     -> failed (worker_lost)
                  |---> expire -> expired (input_expired; or a result never downloaded)
                  |---> cancel -> cancelled (DELETE, from any status)
                  '---> (Redis lost it) -> failed (lost), from the durable trace

Each function does the atomic transition in Redis (``store``), then counts the
end in the metrics, writes the audit row and closes the durable trace, exactly
once, and returns the record it changed so nobody reads it again. The pipeline,
the Celery failure hook, the sweeper and the API all call these functions; none
of them writes a status itself.

A job process does the first half only (``claim``, ``publish``, ``reject``):
state changes in Redis, which need the job's data. What it ended comes back as
an ``Ending``, and ``account`` does the second half (metric, audit row, trace,
webhook) in the long-lived process that started it. So the process that held
the photo never opens a database connection, and the accounting runs warm.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, cast

from django.conf import settings
from django.db import DatabaseError, transaction
from kombu.exceptions import OperationalError
from redis.exceptions import RedisError

from backend import abuse, metrics
from backend.audit.services import EventName, audit_record
from backend.ephemeral import store
from backend.ephemeral.keys import ACTIVE, Status, job_key
from backend.ephemeral.records import ACCOUNTED, JobRecord, cancelled_ttl, ended_ttl, record_ttl
from backend.errors import UPLOAD_REJECTIONS, CodedError, backend_unavailable, job_error
from backend.imaging import ImageHeader
from backend.jobs import traces
from backend.jobs.queue import enqueue_job
from backend.pseudonyms import client_subject, hashed_id
from backend.webhooks import events as webhooks

logger = logging.getLogger(__name__)

#: A message whose worker died this many times before claiming it ends `failed`.
MAX_DELIVERIES = 3


def submit(
    *,
    client_id: object,
    owner: str,
    task: str,
    params: Mapping[str, Any],
    header: ImageHeader | None,
    image: bytes,
    reference: bytes | None = None,
    consent: bool = False,
    webhook: str | None = None,
    admit: Callable[[str], None] | None = None,
) -> JobRecord:
    """Trace, seal and queue a checked upload; the new job's record.

    ``admit(job_id)`` runs once the job is in Redis and before it is queued;
    a ``CodedError`` from it refuses the job, and nothing of it stays.

    Without a ``header`` the uploads are end-to-end envelopes, checked by the
    job process once it has opened them.

    ``consent`` records, in the audit row, that the client stated consent for a
    biometric task; only the yes is kept (the web refuses such a job without it).

    The durable trace comes first, so every id the service hands out can be
    answered for even if Redis loses the job a moment later.
    """
    job_id = str(uuid.uuid4())
    webhook_sealed = (
        None
        if webhook is None
        else webhooks.seal_target(job_id=job_id, url=webhook, client_id=cast(int, client_id))
    )
    traces.trace_open(
        job_id=job_id,
        owner=owner,
        task=task,
        created_at=time.time(),
        lives=record_ttl(),
        webhook_sealed=webhook_sealed,
    )
    try:
        record = store.create_job(
            job_id=job_id,
            owner=owner,
            task=task,
            params=params,
            header=header,
            image=image,
            reference=reference,
            webhook_sealed=webhook_sealed,
        )
        if admit is not None:
            _admit(job_id, admit)
        enqueue_job(job_id)
    except (RedisError, OperationalError):
        # The id was never handed out: nothing of it may stay, here or in Redis.
        with contextlib.suppress(RedisError):
            store.discard_job(job_id)
        traces.trace_discard(job_id)
        raise backend_unavailable("The queue is unavailable; retry shortly.") from None
    size = len(image) + len(reference or b"")
    audit_record(
        event="submitted",
        client_id=cast(Any, client_id),
        job_id=job_id,
        task=task,
        byte_size=size,
        outcome="consent_given" if consent else "",
    )
    metrics.inc("ephemera_jobs_submitted_total", task=task)
    logger.info(
        "job_submitted",
        extra={
            "job": hashed_id(job_id),
            "task": task,
            "bytes_in": size,
            "format": "e2e" if header is None else header.format,
        },
    )
    return record


def _admit(job_id: str, admit: Callable[[str], None]) -> None:
    try:
        admit(job_id)
    except CodedError:
        store.discard_job(job_id)
        traces.trace_discard(job_id)
        raise


Outcome = Literal["succeeded", "failed", "expired", "cancelled", "skipped"]


@dataclass(frozen=True)
class Ending:
    """What a job process ended, for ``account``: the record after its transition.

    ``record`` is None when there was nothing to account for: the job was not
    there to claim (``skipped``, with what the claim ``found``), or it was
    cancelled or swept while it ran. It crosses a pipe as JSON without the
    result token: the accounting needs metadata only.
    """

    job_id: str
    outcome: Outcome
    record: JobRecord | None = None
    found: str = ""
    bytes_out: int = 0

    def to_json(self) -> bytes:
        record = None
        if self.record is not None:
            record = dataclasses.asdict(
                dataclasses.replace(self.record, result_token_hash=None, result_token_sealed=None)
            )
        return json.dumps({**dataclasses.asdict(self), "record": record}).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Ending:
        fields = json.loads(data)
        record = fields.pop("record")
        return cls(**fields, record=None if record is None else JobRecord(**record))


def claim(job_id: str) -> store.Claim:
    """Take a queued job for this worker; what was found when it was not there to take.

    A job process's step: the caller hands an unclaimed job to ``account``
    (as a ``skipped`` ending), which ends what can no longer run.
    """
    deadline = time.time() + settings.EPHEMERA_TASK_HARD_LIMIT + 30
    return store.claim_job(job_id, deadline=deadline)


def publish(job_id: str, *, data: bytes, content_type: str, run_ms: int) -> Ending:
    """Seal and publish the result (a job process's step); ``cancelled`` if it went meanwhile."""
    published = store.publish_result(job_id, data=data, content_type=content_type, run_ms=run_ms)
    if published is None:
        return Ending(job_id, "cancelled")
    return Ending(job_id, "succeeded", record=published.record, bytes_out=len(data))


def reject(
    job_id: str, error: CodedError, *, expected: tuple[Status, ...] = ("running",)
) -> Ending:
    """End the job ``failed`` with the error's code and message, if it is in ``expected``."""
    if error.code in UPLOAD_REJECTIONS:
        _count_rejected_envelope(job_id)
    return _end(job_id, new="failed", expected=expected, error=error)


def account(ending: Ending) -> JobRecord | None:
    """Count, audit, trace and notify what a job process ended; its record, if any."""
    record = ending.record
    if ending.outcome == "skipped":
        _unclaimed(ending.job_id, ending.found)
        return None
    if record is None:
        if ending.outcome == "cancelled":
            logger.info("job_cancelled_while_running", extra={"job": hashed_id(ending.job_id)})
        return None
    _account_end(record, bytes_out=ending.bytes_out)
    return record


def _account_end(record: JobRecord, *, bytes_out: int = 0) -> bool:
    """Count, audit, announce and log an end that nobody accounted for yet; False
    when another process had accounted for all of it.

    The pool process that ran the job, a redelivery, the failure hook and the
    sweeper can all get here for one end, and any of them can be killed half
    way. So each step is done once however often it is repeated, and a record
    stays not ``accounted`` until the last step: the trace's close with the
    audit row (one transaction), the webhook (one event per job), then the
    metrics (one Redis step that sets ``accounted``). Whoever accounts late
    does what a killed process left undone.
    """
    closed = _close_trace_and_audit(record)
    if not record.accounted:
        webhooks.job_ended(record)
    counted = _count_end_once(record, closed=closed)
    if not counted:
        return closed is True
    if record.status == "succeeded":
        if record.e2e:
            # The job process found a valid photo in the envelope: an accepted upload.
            abuse.note_accepted_upload(subjects=[client_subject(record.owner)])
        logger.info(
            "job_succeeded",
            extra={
                "job": hashed_id(record.id),
                "run_ms": record.run_ms,
                "bytes_out": bytes_out,
            },
        )
    elif record.status == "failed":
        logger.info("job_failed", extra={"job": hashed_id(record.id), "code": record.error_code})
    return True


def _close_trace_and_audit(record: JobRecord) -> bool | None:
    """Close the job's trace and write its audit row together; ``trace_close``'s answer.

    One transaction, so no process dies having done one without the other. When
    the database cannot be asked (None), the row is tried all the same.
    """
    code = record.error_code or ""
    try:
        with transaction.atomic():
            closed = traces.trace_close(job_id=record.id, status=record.status, code=code)
            # A cancelled job's audit row is its DELETE's, written by ``cancel``.
            if closed is not False and record.status != "cancelled":
                audit_record(
                    event=cast(EventName, record.status),
                    job_id=record.id,
                    task=record.task,
                    queued_ms=record.queued_ms,
                    run_ms=record.run_ms,
                    outcome=code,
                )
    except DatabaseError as exc:
        logger.error("trace_write_failed", extra={"error_type": type(exc).__name__})
        return None
    return closed


def _count_end_once(record: JobRecord, *, closed: bool | None) -> bool:
    """Count the end, its queue time and its run time in the metrics, once; True if here.

    A record that expired meanwhile can hold no flag: then the trace's close
    decides (and a database that could not be asked counts: twice beats never).
    """
    additions = _end_counts(record.task, record.status, record.error_code or "")
    if record.queued_ms is not None:
        additions |= metrics.observed(
            "ephemera_job_queue_seconds", record.queued_ms / 1000, task=record.task
        )
    if record.run_ms is not None:
        additions |= metrics.observed(
            "ephemera_job_run_seconds", record.run_ms / 1000, task=record.task
        )
    counted = metrics.add_once(additions, marker=job_key(record.id), flag=ACCOUNTED)
    if counted is None and closed is not False:
        metrics.add(additions)
        return True
    return bool(counted)


def _unclaimed(job_id: str, found: str) -> None:
    """A delivery found no queued job: end what can no longer run."""
    logger.info("job_not_claimed", extra={"job": hashed_id(job_id), "found": found})
    if found == "running":
        # An earlier delivery took the input and its worker died: it cannot succeed.
        fail(job_id, job_error("worker_lost"))
    elif found == "no_input":
        expire(job_id, expected=("queued",), code="input_expired")
    else:
        _settle_ended(job_id)


def succeed(job_id: str, *, data: bytes, content_type: str, run_ms: int) -> JobRecord | None:
    """Publish the result and account for it; None when the job was cancelled or swept."""
    return account(publish(job_id, data=data, content_type=content_type, run_ms=run_ms))


def fail(
    job_id: str, error: CodedError, *, expected: tuple[Status, ...] = ("running",)
) -> JobRecord | None:
    """End the job ``failed`` with the error's code, if it is in ``expected``, and account."""
    return account(reject(job_id, error, expected=expected))


def _count_rejected_envelope(job_id: str) -> None:
    """The web could not look inside an envelope: what the job process found there
    counts towards the client's block all the same, before anyone sees the end."""
    record = store.get_job(job_id)
    if record is not None and record.e2e and record.status == "running":
        abuse.note_rejected_upload(subjects=[client_subject(record.owner)])


def expire(
    job_id: str, *, expected: tuple[Status, ...], code: str, result_token_hash: str | None = None
) -> JobRecord | None:
    """End a job that waited too long (queued) or whose result was never downloaded."""
    return account(
        _end(
            job_id,
            new="expired",
            expected=expected,
            error=job_error(code),
            result_token_hash=result_token_hash,
        )
    )


def _end(
    job_id: str,
    *,
    new: Status,
    expected: tuple[Status, ...],
    error: CodedError,
    result_token_hash: str | None = None,
) -> Ending:
    """An end without a result: every payload of the job goes in the same step."""
    record = store.transition(
        job_id,
        expected=expected,
        new=new,
        fields={
            "finished_at": time.time(),
            "error_code": error.code,
            "error_message": error.message,
        },
        ttl=ended_ttl(),
        purge_inputs=True,
        purge_result=result_token_hash,
    )
    return Ending(job_id, "failed" if new == "failed" else "expired", record=record)


Loss = Literal["ended", "retry", "gone"]


def lose(job_id: str) -> Loss:
    """The worker process holding this job died (killed, crashed, out of memory).

    A running job lost its input with that process and fails now (``ended``).
    A queued one (its process died before the claim) may run again, at most
    ``MAX_DELIVERIES`` times (``retry``), so a message that kills workers cannot
    circulate forever. A job Redis no longer has is reconciled with its trace
    (``gone``): there is nothing left to run.
    """
    deliveries = store.count_delivery(job_id)
    if 0 <= deliveries < MAX_DELIVERIES:
        return "retry"
    expected: tuple[Status, ...] = ("queued",) if deliveries >= 0 else ("running",)
    if fail(job_id, job_error("worker_lost"), expected=expected) is not None:
        return "ended"
    _settle_ended(job_id)
    return "gone"


def _settle_ended(job_id: str) -> None:
    """A job no delivery can run any more: answer for it if Redis lost it, or
    account for its end if nobody did."""
    record = store.get_job(job_id)
    if record is None:
        reconcile(job_id)
    elif record.terminal:
        account_late(record)


def account_late(record: JobRecord) -> None:
    """Account for an end nobody accounted for (or only half), once.

    A job process can end its job and die before handing its ending back, and a
    pool process can die while it accounts; the message's redelivery, the
    failure hook, or at the latest the sweeper then finds the job ended and
    not ``accounted``. A DELETE's tombstone keeps no webhook target; the job's
    trace does, so a DELETE killed before it queued its webhook still has it
    queued here.
    """
    if record.status == "cancelled" and not record.webhook_sealed:
        trace = traces.trace_get(record.id)
        if trace is not None and trace.webhook_sealed:
            record = dataclasses.replace(record, webhook_sealed=trace.webhook_sealed)
    if _account_end(record):
        logger.warning("job_accounted_late", extra={"job": hashed_id(record.id)})


def cancel(job_id: str, *, client_id: object) -> JobRecord | None:
    """DELETE: purge everything about the job now; the record as it was, or None.

    The purge comes first and the audit row of the DELETE next. The end of an
    active job is then accounted for like any other, the count last: a web
    process killed half way leaves the tombstone not ``accounted``, and the
    sweeper finishes it, the webhook included (``account_late``).
    """
    before = store.cancel_job(job_id, tombstone_ttl=cancelled_ttl())
    if before is None:
        return None
    audit_record(event="deleted", client_id=cast(Any, client_id), job_id=job_id)
    if not before.terminal:
        # The end as the tombstone tells it: a cancelled job's queue time is not counted.
        _account_end(dataclasses.replace(before, status="cancelled", started_at=None))
    logger.info("job_deleted", extra={"job": hashed_id(job_id)})
    return before


def reconcile(job_id: str) -> traces.JobTrace | None:
    """A job Redis knows nothing about: if its trace says it was active, it was lost.

    Returns the trace (closed as ``failed``/``lost`` when it was active), or None
    when the job never existed or its life is over.
    """
    trace = traces.trace_get(job_id)
    if trace is None or trace.status not in ACTIVE:
        return trace
    trace.status, trace.error_code = "failed", "lost"
    record = dataclasses.replace(traces.as_record(trace), finished_at=time.time())
    # Back in Redis, and not ``accounted`` until its count, like any other end:
    # a process killed before the count leaves it to the sweeper. The webhook,
    # sealed in the trace too, is the one thing of the job Redis could not lose.
    # With Redis out of reach, the count follows the trace's close instead.
    with contextlib.suppress(RedisError):
        store.record_lost(record, ttl=ended_ttl())
    if _account_end(record):
        logger.warning("job_lost", extra={"job": hashed_id(job_id)})
    return trace


def _end_counts(task: str, status: str, code: str) -> metrics.Additions:
    return metrics.counted(
        "ephemera_jobs_finished_total", task=task, status=status, error_code=code
    )
