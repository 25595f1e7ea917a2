"""Job services: what the API does, as plain keyword-only functions.

Views validate the HTTP shape and call exactly one of these; the functions own
the rules (which task, which params, which bytes) and speak ``ApiError``.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass

from django.conf import settings
from kombu.exceptions import OperationalError

from backend import abuse, metrics
from backend.api.errors import ApiError
from backend.audit.services import audit_record
from backend.clients.models import ApiClient
from backend.ephemeral import store
from backend.imaging import ImageRejected, sniff
from backend.logs import hashed_id
from workers.celery_app import enqueue_job
from workers.registry import InvalidParams, get_spec

logger = logging.getLogger(__name__)


def _not_found() -> ApiError:
    return ApiError(404, "job_not_found", "No such job for this API key.")


def job_submit(
    *, client: ApiClient, task: str, params_text: str | None, image: bytes
) -> store.JobRecord:
    """Check an upload, seal it into Redis and queue its id."""
    spec = get_spec(task)
    if spec is None:
        raise ApiError(400, "unknown_task", f"Unknown task {task!r}; see GET /api/v1/tasks.")
    try:
        raw_params = json.loads(params_text) if params_text else {}
    except ValueError:
        raise ApiError(400, "invalid_params", "params must be a JSON object.") from None
    try:
        params = spec.validate_params(raw_params)
    except InvalidParams as exc:
        raise ApiError(400, "invalid_params", str(exc)) from None
    try:
        header = sniff(image, max_pixels=settings.EPHEMERA_MAX_PIXELS)
    except ImageRejected as exc:
        audit_record(
            event="rejected", client_id=client.pk, task=task, byte_size=len(image), outcome=exc.code
        )
        raise ApiError(exc.status, exc.code, exc.message) from None
    if header.content_type not in spec.accepted_formats:
        raise ApiError(415, "unsupported_media_type", f"{task} accepts {spec.accepted_formats}.")

    job_id = str(uuid.uuid4())
    record = store.create_job(
        job_id=job_id,
        owner=store.owner_hash(client.pk),
        task=task,
        params=params,
        fmt=header.format,
        image=image,
    )
    try:
        enqueue_job(job_id)
    except OperationalError:
        store.discard_job(job_id)
        raise ApiError(
            503, "backend_unavailable", "The queue is unavailable; retry shortly."
        ) from None
    abuse.note_in_flight(owner=record.owner, job_id=job_id)
    audit_record(
        event="submitted", client_id=client.pk, job_id=job_id, task=task, byte_size=len(image)
    )
    metrics.inc("ephemera_jobs_submitted_total", task=task)
    logger.info(
        "job_submitted",
        extra={
            "job": hashed_id(job_id),
            "task": task,
            "bytes_in": len(image),
            "format": header.format,
        },
    )
    return record


def job_get(*, client: ApiClient, job_id: str, wait: float = 0) -> store.JobRecord:
    """The client's job, after waiting up to ``wait`` seconds for it to end."""
    if not _is_uuid(job_id):
        raise _not_found()
    record = store.get_job(job_id)
    if record is None or record.owner != store.owner_hash(client.pk):
        # Another client's job answers exactly like a job that does not exist.
        raise _not_found()
    if wait > 0 and not record.terminal:
        record = store.wait_for_end(job_id, timeout=wait) or record
    return record


def job_delete(*, client: ApiClient, job_id: str) -> None:
    """Purge the job's input, result and events now; a queued job will not run."""
    record = job_get(client=client, job_id=job_id)
    if store.cancel_job(job_id) and not record.terminal:
        metrics.inc(
            "ephemera_jobs_finished_total", task=record.task, status="cancelled", error_code=""
        )
    audit_record(event="deleted", client_id=client.pk, job_id=job_id)
    logger.info("job_deleted", extra={"job": hashed_id(job_id)})


@dataclass(frozen=True)
class Download:
    data: bytes
    content_type: str


def result_take(*, client: ApiClient, token: str) -> Download:
    """The result bytes, once, for the client that owns the job."""
    try:
        taken = store.take_result(token, owner=store.owner_hash(client.pk))
    except store.ResultUnknown:
        raise ApiError(404, "result_not_found", "No result for this token.") from None
    except store.ResultGone:
        audit_record(event="rejected", client_id=client.pk, outcome="result_gone")
        raise ApiError(
            410, "result_gone", "This result was already downloaded or has expired."
        ) from None
    audit_record(
        event="downloaded",
        client_id=client.pk,
        job_id=store.job_id_from_token(token),
        byte_size=len(taken.data),
    )
    return Download(data=taken.data, content_type=taken.content_type)


def _is_uuid(value: str) -> bool:
    try:
        return str(uuid.UUID(value)) == value.lower()
    except ValueError:
        return False
