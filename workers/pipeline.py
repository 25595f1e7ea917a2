"""What a job process does with one job id, as a plain function.

claim (queued -> running, the sealed upload taken with GETDEL) -> decrypt ->
decode -> model -> encode without metadata -> seal under a new data key ->
publish a single-use token. Every failure ends the job ``failed`` with a code
(``backend.errors``); the upload is already gone by then, because the claim
took it. State changes go through ``backend.jobs.lifecycle``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any, Literal, cast

import numpy as np
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings

from backend.catalogue import InvalidParams, TaskSpec, get_spec
from backend.ephemeral.crypto import DecryptionError
from backend.ephemeral.records import JobRecord
from backend.errors import CodedError, job_error
from backend.imaging import ImageHeader, ImageRejected, UndecodableImage, sniff
from backend.jobs import lifecycle
from workers import e2e, imaging, registry
from workers.imaging import cv2  # imported there after OpenCV's own pixel limits are set

logger = logging.getLogger(__name__)


def process_job(job_id: str, *, on_claimed: Callable[[], object] | None = None) -> lifecycle.Ending:
    """Run one job end to end. Safe to call for any id, any number of times.

    Only the job's state changes here; its ending goes to ``lifecycle.account``,
    which the caller runs (in the pool process, for a job process).
    ``on_claimed`` runs once the claim has answered, whatever it found: a job
    process tells its pool process there that the job has started.
    """
    claimed = lifecycle.claim(job_id)
    if on_claimed is not None:
        on_claimed()
    if claimed.record is None:
        return lifecycle.Ending(job_id, "skipped", found=claimed.found)
    record = claimed.record
    started = time.perf_counter()
    try:
        try:
            image = claimed.open_image()
            reference = claimed.open_reference()
        except DecryptionError:
            raise job_error("integrity_error") from None
        if record.e2e:
            opened = e2e.open_uploads(record, image, reference)
            data, content_type = transform(opened.image, record, reference=opened.reference)
            data = e2e.seal_result(data, record, reply_key=opened.reply_key)
        else:
            data, content_type = transform(image, record, reference=reference)
    except CodedError as exc:
        return lifecycle.reject(job_id, exc)
    run_ms = round((time.perf_counter() - started) * 1000)
    return lifecycle.publish(job_id, data=data, content_type=content_type, run_ms=run_ms)


def transform(
    image: bytes, record: JobRecord, *, reference: bytes | None = None
) -> tuple[bytes, str]:
    """The task's output for one upload (two for a two-image task), encoded.

    Any failure comes out as a ``CodedError``.
    """
    spec = get_spec(record.task)
    if spec is None:
        raise job_error("unknown_task")
    try:
        # Validated again here: the record is data from Redis, not a promise.
        params = spec.validate_params(record.params)
        header = _header(image, record, spec)
        output = _run(spec, params, _decode(image, header), reference, e2e=record.e2e)
        del image, reference
        if spec.output == "json":
            return json.dumps(output, separators=(",", ":")).encode(), "application/json"
        fmt = cast(Literal["jpeg", "png", "webp"], header.format)
        return imaging.encode(cast(Any, output), fmt)
    except CodedError:
        raise
    except InvalidParams as exc:
        raise CodedError("invalid_params", str(exc)) from None
    except SoftTimeLimitExceeded:
        raise job_error("time_limit") from None
    except MemoryError:
        raise job_error("out_of_memory") from None
    except (RuntimeError, cv2.error) as exc:
        # torch and OpenCV report a failed allocation as their own error types.
        if _is_allocation_failure(exc):
            raise job_error("out_of_memory") from None
        logger.error(
            "job_internal_error", extra={"task": record.task, "error_type": type(exc).__name__}
        )
        raise job_error("internal_error") from None
    except Exception as exc:
        # Log the type only: an exception's text can quote the data it choked on.
        logger.error(
            "job_internal_error", extra={"task": record.task, "error_type": type(exc).__name__}
        )
        raise job_error("internal_error") from None


def _header(image: bytes, record: JobRecord, spec: TaskSpec) -> ImageHeader:
    """The upload's header: as the web's sniff read it, or read here for an envelope.

    A sealed upload is authenticated, so its bytes are still the ones the web
    checked. The web never saw inside an envelope: this process does every
    check the web does for a plain upload, with the same codes.
    """
    if not record.e2e:
        return ImageHeader.of(record.format, width=record.width, height=record.height)
    header = sniff(image, max_pixels=settings.EPHEMERA_MAX_PIXELS)
    spec.accept(header.content_type)
    return header


_ALLOCATION_FAILURES = (
    "can't allocate memory",
    "insufficient memory",
    "out of memory",
    "bad_alloc",
)


def _is_allocation_failure(exc: Exception) -> bool:
    text = str(exc).lower()
    return any(marker in text for marker in _ALLOCATION_FAILURES)


def _run(
    spec: TaskSpec,
    params: dict[str, Any],
    array: np.ndarray,
    reference: bytes | None,
    *,
    e2e: bool = False,
) -> np.ndarray | dict[str, Any]:
    """The runner's answer for the decoded photo (and the reference, for two-image tasks)."""
    if spec.downscale_input:
        array = imaging.fit_within(array, settings.EPHEMERA_MAX_SIDE)
    run = registry.runner(spec.name)
    if "reference" not in spec.inputs:
        return cast(registry.Runner, run)(array, params)
    if reference is None:
        # The web refuses such a job; a record without its reference is broken.
        raise job_error("integrity_error")
    second = _decode_reference(reference, spec, e2e=e2e)
    # The answer is the verdict only: what the runner computes from the faces
    # stays in its locals and is gone when it returns.
    return cast(registry.PairRunner, run)(array, second, params)


def _decode_reference(reference: bytes, spec: TaskSpec, *, e2e: bool) -> np.ndarray:
    """The second upload, decoded like the first; its header is read again here.

    The record keeps only the first upload's header. A sealed reference is
    authenticated, so these are the bytes the web's sniff accepted, and the
    same sniff, with the same pixel limit, reads their header again; a refusal
    then means a broken record. From an envelope, a refusal is the upload's.
    """
    try:
        header = sniff(reference, max_pixels=settings.EPHEMERA_MAX_PIXELS)
        if e2e:
            spec.accept(header.content_type)
    except ImageRejected:
        if e2e:
            raise
        raise job_error("integrity_error") from None
    array = _decode(reference, header)
    return imaging.fit_within(array, settings.EPHEMERA_MAX_SIDE) if spec.downscale_input else array


def _decode(image: bytes, header: ImageHeader) -> np.ndarray:
    """Decode, telling a lack of memory apart from a broken file.

    OpenCV answers a failed allocation inside ``imdecode`` with "no image", the
    same answer it gives a corrupt file. When decoding fails, try to reserve the
    decoded frame ourselves: if even that fails, memory (the job process's
    address space ceiling) is the cause, and the job says so.
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
