"""What a worker does with one job id, as a plain function.

claim (queued -> running, input taken with GETDEL) -> decrypt -> decode ->
model -> encode without metadata -> seal under a new data key -> publish a
single-use token. Every failure ends the job ``failed`` with a code; the input
is already gone by then, because the claim took it.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any, Literal, cast

import numpy as np
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings

from backend import metrics
from backend.audit.services import audit_record
from backend.ephemeral import store
from backend.ephemeral.crypto import DecryptionError
from backend.imaging import ImageHeader, ImageRejected, UndecodableImage, sniff
from backend.logs import hashed_id
from workers import imaging, runtime
from workers.imaging import cv2  # imported there after OpenCV's own pixel limits are set
from workers.registry import InvalidParams, TaskFailed, get_spec

logger = logging.getLogger(__name__)

Outcome = Literal["succeeded", "failed", "cancelled", "skipped"]


class JobError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def process_job(job_id: str) -> Outcome:
    """Run one job end to end. Safe to call for any id, any number of times."""
    log = {"job": hashed_id(job_id)}
    try:
        claim = store.claim_job(job_id)
    except DecryptionError:
        store.fail_job(
            job_id, code="integrity_error", message="The upload failed its integrity check."
        )
        logger.error("job_input_integrity_error", extra=log)
        return "failed"
    if claim.outcome != "claimed" or claim.image is None:
        logger.info("job_not_claimed", extra={**log, "outcome": claim.outcome})
        if claim.outcome in {"lost", "input_expired"}:
            status = "failed" if claim.outcome == "lost" else "expired"
            record_end(job_id, status=status, code=claim.outcome)
        return "skipped"
    record = store.get_job(job_id)
    if record is None or record.status != "running":
        return "cancelled"
    log["task"] = record.task
    started = time.perf_counter()
    try:
        data, content_type = _transform(claim.image, task=record.task, params=record.params)
    except JobError as exc:
        if store.fail_job(job_id, code=exc.code, message=exc.message):
            record_end(job_id, status="failed", code=exc.code)
        logger.info("job_failed", extra={**log, "code": exc.code})
        return "failed"
    run_ms = round((time.perf_counter() - started) * 1000)
    token = store.publish_result(job_id, data=data, content_type=content_type, run_ms=run_ms)
    if token is None:
        logger.info("job_cancelled_while_running", extra=log)
        return "cancelled"
    logger.info("job_succeeded", extra={**log, "run_ms": run_ms, "bytes_out": len(data)})
    record_end(job_id, status="succeeded")
    return "succeeded"


def record_end(job_id: str, *, status: str, code: str = "") -> None:
    """Count a job's end in the metrics (by task, status and code only)."""
    record = store.get_job(job_id)
    task = record.task if record else "unknown"
    metrics.inc("ephemera_jobs_finished_total", task=task, status=status, error_code=code)
    audit_record(
        event=cast(Any, status),
        job_id=job_id,
        task=task,
        queued_ms=record.queued_ms if record else None,
        run_ms=record.run_ms if record else None,
        outcome=code,
    )
    if record is not None and record.queued_ms is not None:
        metrics.observe("ephemera_job_queue_seconds", record.queued_ms / 1000, task=task)
        if record.run_ms is not None:
            metrics.observe("ephemera_job_run_seconds", record.run_ms / 1000, task=task)


def _transform(image: bytes, *, task: str, params: dict[str, Any]) -> tuple[bytes, str]:
    spec = get_spec(task)
    if spec is None:
        raise JobError("unknown_task", "This task is no longer offered.")
    try:
        # Validated again here: the record is data from Redis, not a promise.
        params = spec.validate_params(params)
        header = sniff(image, max_pixels=settings.EPHEMERA_MAX_PIXELS)
        array = _decode(image, header)
        del image
        if spec.downscale_input:
            array = imaging.fit_within(array, settings.EPHEMERA_MAX_SIDE)
        output = runtime.runner(task)(array, params)
        del array
        if spec.output == "json":
            return json.dumps(output, separators=(",", ":")).encode(), "application/json"
        fmt = cast(Literal["jpeg", "png", "webp"], header.format)
        return imaging.encode(cast(Any, output), fmt)
    except ImageRejected as exc:
        raise JobError(exc.code, exc.message) from None
    except TaskFailed as exc:
        raise JobError(exc.code, exc.message) from None
    except InvalidParams as exc:
        raise JobError("invalid_params", str(exc)) from None
    except SoftTimeLimitExceeded:
        raise JobError("time_limit", "The job ran out of time; try a smaller photo.") from None
    except MemoryError:
        raise JobError("out_of_memory", "The job ran out of memory; try a smaller photo.") from None
    except (RuntimeError, cv2.error) as exc:
        # torch and OpenCV report a failed allocation as their own error types.
        if _is_allocation_failure(exc):
            raise JobError(
                "out_of_memory", "The job ran out of memory; try a smaller photo."
            ) from None
        logger.error("job_internal_error", extra={"task": task, "error_type": type(exc).__name__})
        raise JobError("internal_error", "The job failed on our side.") from None
    except Exception as exc:
        # Log the type only: an exception's text can quote the data it choked on.
        logger.error("job_internal_error", extra={"task": task, "error_type": type(exc).__name__})
        raise JobError("internal_error", "The job failed on our side.") from None


_ALLOCATION_FAILURES = (
    "can't allocate memory",
    "insufficient memory",
    "out of memory",
    "bad_alloc",
)


def _is_allocation_failure(exc: Exception) -> bool:
    text = str(exc).lower()
    return any(marker in text for marker in _ALLOCATION_FAILURES)


def _decode(image: bytes, header: ImageHeader) -> np.ndarray:
    """Decode, telling a lack of memory apart from a broken file.

    OpenCV answers a failed allocation inside ``imdecode`` with "no image", the
    same answer it gives a corrupt file. When decoding fails, try to reserve the
    decoded frame ourselves: if even that fails, memory (the child's address
    space ceiling) is the cause, and the job says so.
    """
    try:
        return imaging.decode(image, header)
    except UndecodableImage:
        try:
            frame = np.empty((header.height, header.width, 4), dtype=np.uint8)
        except MemoryError:
            raise MemoryError("no room to decode the image") from None
        del frame
        raise
