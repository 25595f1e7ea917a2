"""The suite's one job factory: jobs as the web leaves them, in the session's real Redis.

``queued_job`` writes what ``lifecycle.submit`` writes to Redis (record, sealed
upload, event stream) without a durable trace or a queue message, so store,
sweeper and pipeline tests can drive each step themselves; ``traced=True``
adds the trace too. ``running_job`` and ``succeeded_job`` take it further with
the real store operations. ``hooked_job`` is the one job that goes through
``lifecycle.submit`` itself, for the webhook target it seals.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from django.conf import settings

from backend.catalogue import get_spec
from backend.ephemeral import store
from backend.ephemeral.records import record_ttl
from backend.imaging import ImageHeader, ImageRejected, sniff

#: An owner hash of no client (64 hex digits, like ``owner_hash``'s output).
NOBODY = "0" * 64


def queued_job(
    image: bytes = b"\xff\xd8\xff\xe0 a photo",
    *,
    task: str = "cartoonize",
    params: dict[str, Any] | None = None,
    owner: str = NOBODY,
    reference: bytes | None = None,
    traced: bool = False,
    e2e: bool = False,
) -> str:
    """A queued job; bytes that are no image get a 1x1 JPEG header (they are sealed anyway).

    With ``e2e`` the uploads are taken for end-to-end envelopes: stored as given.
    """
    spec = get_spec(task)
    assert spec is not None, task
    header: ImageHeader | None = None
    if not e2e:
        try:
            header = sniff(image, max_pixels=settings.EPHEMERA_MAX_PIXELS)
        except ImageRejected:
            header = ImageHeader.of("jpeg", width=1, height=1)
    job_id = str(uuid.uuid4())
    if traced:
        from backend.jobs import traces

        traces.trace_open(
            job_id=job_id, owner=owner, task=task, created_at=time.time(), lives=record_ttl()
        )
    store.create_job(
        job_id=job_id,
        owner=owner,
        task=task,
        params=spec.validate_params(params or {}),
        header=header,
        image=image,
        reference=reference,
    )
    return job_id


def hooked_job(url: str, *, client: str = "hooked") -> tuple[str, str]:
    """A job submitted through ``lifecycle.submit`` (traced, its message queued)
    by a new client with a webhook secret, with a webhook to ``url``; the job's
    id and that secret."""
    from backend.clients.models import ApiClient
    from backend.clients.services import api_key_create
    from backend.clients.webhook_secrets import webhook_secret_issue
    from backend.jobs import lifecycle

    api_key_create(name=client)
    secret = webhook_secret_issue(name=client)
    record = lifecycle.submit(
        client_id=ApiClient.objects.get(name=client).pk,
        owner=NOBODY,
        task="cartoonize",
        params={},
        header=ImageHeader.of("jpeg", width=1, height=1),
        image=b"\xff\xd8\xff a photo",
        webhook=url,
    )
    return record.id, secret


def running_job(**kwargs: Any) -> str:
    """A job a worker claimed (its upload taken), and then nothing more."""
    job_id = queued_job(**kwargs)
    claimed = store.claim_job(job_id, deadline=time.time() + settings.EPHEMERA_TASK_HARD_LIMIT)
    assert claimed.found == "claimed"
    return job_id


def succeeded_job(**kwargs: Any) -> str:
    """A job a worker took and finished: a sealed result and a sealed token."""
    job_id = running_job(**kwargs)
    assert store.publish_result(job_id, data=b"result", content_type="image/png", run_ms=5)
    return job_id
