"""Job services: what the API does, as plain keyword-only functions.

Views validate the HTTP shape and call exactly one of these; the functions own
the rules (which task, which params, which bytes, whose job) and raise
``ApiError``. State changes go through ``backend.jobs.lifecycle``.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass

from django.conf import settings

from backend import abuse, e2e
from backend.api.errors import ApiError
from backend.api.throttling import in_flight_cap, too_many_in_flight
from backend.audit.services import audit_record
from backend.catalogue import InvalidParams, TaskSpec, get_spec
from backend.clients.models import ApiClient
from backend.clients.webhook_secrets import has_webhook_secret
from backend.ephemeral import store
from backend.ephemeral.records import JobRecord
from backend.errors import CodedError
from backend.imaging import ImageHeader, ImageRejected, sniff
from backend.jobs import lifecycle, traces
from backend.pseudonyms import owner_hash
from backend.webhooks.targets import WebhookRefused, check_url
from ephemera_client import envelope


def _not_found() -> ApiError:
    return ApiError(404, "job_not_found", "No such job for this API key.")


def job_submit(
    *,
    client: ApiClient,
    task: str,
    params_text: str | None,
    image: bytes,
    reference: bytes | None = None,
    consent: str | None = None,
    webhook: str | None = None,
) -> JobRecord:
    """Check an upload (two for a two-image task), then hand it to the lifecycle."""
    spec = get_spec(task)
    if spec is None:
        raise ApiError(400, "unknown_task", f"Unknown task {task!r}; see GET /api/v1/tasks.")
    if spec.biometric:
        _check_biometric_allowed(client=client, task=task, consent=consent)
    try:
        raw_params = json.loads(params_text) if params_text else {}
    except ValueError:
        raise ApiError(400, "invalid_params", "params must be a JSON object.") from None
    try:
        params = spec.validate_params(raw_params)
    except InvalidParams as exc:
        raise ApiError(400, "invalid_params", str(exc)) from None
    _check_inputs(spec, task=task, reference=reference)
    header: ImageHeader | None = None
    if envelope.is_envelope(image) or (reference is not None and envelope.is_envelope(reference)):
        # End to end encrypted: the job process checks the bytes once it has opened them.
        _checked_envelopes(image, reference, client=client, task=task)
    else:
        header = _checked_upload(image, spec, client=client)
        if reference is not None:
            _checked_upload(reference, spec, client=client)
    if webhook is not None:
        # An empty value is a malformed URL, not "no webhook" (the schema says uri).
        _check_webhook(webhook, client=client)
    owner = owner_hash(client.pk)
    cap = in_flight_cap(client)

    def admit(job_id: str) -> None:
        if not abuse.admit_in_flight(owner=owner, job_id=job_id, cap=cap):
            raise too_many_in_flight(client.pk, cap)

    record = lifecycle.submit(
        client_id=client.pk,
        owner=owner,
        task=task,
        params=params,
        header=header,
        image=image,
        reference=reference,
        consent=spec.biometric,
        webhook=webhook,
        admit=admit,
    )
    return record


def _check_biometric_allowed(*, client: ApiClient, task: str, consent: str | None) -> None:
    """A face comparison needs the operator's leave for the client and consent on the job."""
    if not client.face_verify_enabled:
        audit_record(
            event="rejected", client_id=client.pk, task=task, outcome="face_verify_not_enabled"
        )
        raise ApiError(
            403,
            "face_verify_not_enabled",
            f"{task} compares faces, which this API key's client may not do. Ask the operator "
            f"to enable it (create_api_key --allow-face-verify).",
        )
    if consent != "true":
        audit_record(event="rejected", client_id=client.pk, task=task, outcome="consent_required")
        raise ApiError(
            403,
            "consent_required",
            f"{task} compares faces: send consent=true to state that the people in both "
            f"photos agreed to it.",
        )


def _check_inputs(spec: TaskSpec, *, task: str, reference: bytes | None) -> None:
    if "reference" in spec.inputs and reference is None:
        raise ApiError(
            400, "reference_required", f"{task} compares two photos: send the second as reference."
        )
    if "reference" not in spec.inputs and reference is not None:
        raise ApiError(
            400,
            "reference_not_accepted",
            f"{task} takes one photo; send it as image, without reference.",
        )


def _checked_upload(data: bytes, spec: TaskSpec, *, client: ApiClient) -> ImageHeader:
    header = _checked_image(data, client=client, task=spec.name)
    spec.accept(header.content_type)
    return header


def _check_webhook(url: str, *, client: ApiClient) -> None:
    """Refuse at once a webhook that could never be delivered (or must never be)."""
    try:
        check_url(url)
    except WebhookRefused as exc:
        raise ApiError(400, exc.code, exc.message) from None
    if not has_webhook_secret(client_id=client.pk):
        raise ApiError(
            400,
            "invalid_webhook",
            "webhook: this API client has no webhook signing secret yet; ask the operator "
            "to run `manage.py webhook_secret --name <client>`.",
        )


def _checked_envelopes(
    image: bytes, reference: bytes | None, *, client: ApiClient, task: str
) -> None:
    try:
        e2e.checked_envelopes(image, reference)
    except CodedError as exc:
        size = len(image) + len(reference or b"")
        audit_record(
            event="rejected", client_id=client.pk, task=task, byte_size=size, outcome=exc.code
        )
        raise


def _checked_image(image: bytes, *, client: ApiClient, task: str) -> ImageHeader:
    try:
        return sniff(image, max_pixels=settings.EPHEMERA_MAX_PIXELS)
    except ImageRejected as exc:
        audit_record(
            event="rejected", client_id=client.pk, task=task, byte_size=len(image), outcome=exc.code
        )
        raise ApiError(exc.status, exc.code, exc.message) from None


def job_get(
    *, client: ApiClient, job_id: str, wait: float = 0, known: JobRecord | None = None
) -> JobRecord:
    """The client's job, after waiting up to ``wait`` seconds for it to end.

    ``known`` is a record the caller holds already (the one a submit returned).
    A job that Redis no longer has is answered from its durable trace.
    """
    if not _is_uuid(job_id):
        raise _not_found()
    owner = owner_hash(client.pk)
    record = known or store.get_job(job_id)
    if record is None:
        return _from_trace(job_id, owner=owner)
    if record.owner != owner:
        # Another client's job answers exactly like a job that does not exist.
        raise _not_found()
    if wait > 0 and not record.terminal:
        record = store.wait_for_end(job_id, timeout=wait, record=record) or _from_trace(
            job_id, owner=owner
        )
    return record


def _from_trace(job_id: str, *, owner: str) -> JobRecord:
    trace = lifecycle.reconcile(job_id)
    if trace is None or trace.owner != owner:
        raise _not_found()
    return traces.as_record(trace)


def job_delete(*, client: ApiClient, job_id: str) -> None:
    """Purge the job's input, result and events now; a queued job will not run."""
    record = job_get(client=client, job_id=job_id)
    lifecycle.cancel(record.id, client_id=client.pk)


@dataclass(frozen=True)
class Download:
    data: bytes
    content_type: str


def result_take(*, client: ApiClient, token: str) -> Download:
    """The result bytes, once, for the client that owns the job."""
    try:
        taken = store.take_result(token, owner=owner_hash(client.pk))
    except store.ResultUnknown:
        raise ApiError(404, "result_not_found", "No result for this token.") from None
    except store.ResultGone:
        audit_record(event="rejected", client_id=client.pk, outcome="result_gone")
        raise ApiError(
            410, "result_gone", "This result was already downloaded or has expired."
        ) from None
    audit_record(
        event="downloaded", client_id=client.pk, job_id=taken.job_id, byte_size=len(taken.data)
    )
    # An end-to-end result is an envelope; the job body names what it opens to.
    content_type = envelope.CONTENT_TYPE if taken.e2e else taken.content_type
    return Download(data=taken.data, content_type=content_type)


def _is_uuid(value: str) -> bool:
    try:
        return str(uuid.UUID(value)) == value.lower()
    except ValueError:
        return False
