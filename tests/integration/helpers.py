"""Small helpers for tests that drive the real API and the real worker."""

from __future__ import annotations

import dataclasses
import itertools
import re
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import redis
from rest_framework.test import APIClient

from backend.ephemeral import connection
from backend.jobs.queue import JOBS_QUEUE, enqueue_job
from tests.harness import wait_until
from workers.celery_app import app

if TYPE_CHECKING:
    from tests.conftest import Worker


def submit(api: APIClient, data: bytes, task: str = "cartoonize", **extra: Any) -> Any:
    from django.core.files.uploadedfile import SimpleUploadedFile

    payload: dict[str, Any] = {"image": SimpleUploadedFile("photo.jpg", data), "task": task}
    payload.update(extra.pop("form", {}))
    return api.post("/api/v1/jobs", payload, format="multipart", **extra)


def wait_for(api: APIClient, job_id: str, timeout: int = 60) -> dict[str, Any]:
    response = api.get(f"/api/v1/jobs/{job_id}", HTTP_PREFER=f"wait={timeout}")
    assert response.status_code == 200, response.content
    return response.json()


def redis_values(conn: redis.Redis) -> list[bytes]:
    values: list[bytes] = []
    for key in conn.scan_iter(count=1000):
        kind = conn.type(key).decode()
        if kind == "string":
            values.append(conn.get(key) or b"")
        elif kind == "hash":
            values.extend(b"".join(item) for item in conn.hgetall(key).items())
        elif kind == "list":
            values.extend(conn.lrange(key, 0, -1))
        elif kind == "stream":
            values.extend(repr(entry).encode() for entry in conn.xrange(key))
        elif kind == "set":
            values.extend(conn.smembers(key))
    return values


def _until_confirmed(command: Callable[..., Any], worker: Worker, *, message: str) -> None:
    """Send an idempotent remote-control command for the jobs queue until the worker answers.

    Remote control rides Redis pub/sub, which drops a broadcast that no worker has
    subscribed for yet: a worker that just said "ready" may miss the first one.
    """
    wait_until(
        lambda: command(JOBS_QUEUE, reply=True, timeout=1, destination=[worker.hostname]),
        timeout=15,
        message=message,
        interval=0,
    )


def pause_consumers(worker: Worker) -> None:
    """Stop the worker taking jobs, so a job stays queued (remote control, for real)."""
    _until_confirmed(
        app.control.cancel_consumer,
        worker,
        message="the worker did not confirm it stopped consuming",
    )
    # A BRPOP the idle worker had in flight when its consumer was cancelled
    # still takes the next message: feed it a harmless one (an id no job has),
    # then drop whatever is left, so the queue holds only what the test puts in.
    enqueue_job(str(uuid.uuid4()))
    time.sleep(1.0)
    connection.client().delete(JOBS_QUEUE)


def resume_consumers(worker: Worker) -> None:
    _until_confirmed(
        app.control.add_consumer, worker, message="the worker did not confirm it consumes again"
    )


def allow_face_verify(persona_name: str) -> None:
    """The operator's leave for one client to run face_verify (as create_api_key gives it)."""
    from backend.clients.models import ApiClient

    assert ApiClient.objects.filter(name=persona_name).update(face_verify_enabled=True) == 1


def pair_form(reference: bytes, consent: str | None = "true") -> dict[str, Any]:
    """The extra form fields of a face_verify job: the reference photo and the consent."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    form: dict[str, Any] = {"reference": SimpleUploadedFile("reference.jpg", reference)}
    if consent is not None:
        form["consent"] = consent
    return form


def face_descriptors(image: bytes, reference: bytes) -> np.ndarray:
    """The two face descriptors face_verify computes in the worker, recomputed here alike."""
    import cv2

    from backend.catalogue import CATALOGUE
    from workers.models.align import align
    from workers.models.face_embed import SIZE, chip_points
    from workers.models.faces import DetectOptions, load_from_settings
    from workers.models.learned import face_embedder_from_settings

    detector = load_from_settings()
    params = CATALOGUE["face_verify"].validate_params({})
    options = dataclasses.replace(DetectOptions.from_params(params), detectors=("mtcnn",))
    chips = []
    for data in (image, reference):
        photo = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        faces = detector.detect(photo, options).faces
        chip = align(photo, faces.landmarks[0], size=SIZE, padding=0.0, points=chip_points(SIZE))
        chips.append(cv2.cvtColor(chip, cv2.COLOR_BGR2RGB))
    return face_embedder_from_settings().embed(np.stack(chips))


def _prefix(text: str) -> str:
    return text[: 7 + text.startswith("-")]


def assert_no_descriptor_in(blobs: list[bytes], descriptors: np.ndarray) -> None:
    """No 16-byte run of the float32 descriptors, and no two of their values in a row as text.

    As text: two numbers one after the other (five decimals, as any float
    formatting prints at least) that start like two neighbouring components
    of a descriptor. One number alone matches a timing in a log now and then;
    a printed descriptor, as a list, array or JSON, matches pair after pair.
    """
    raw = [row.tobytes() for row in descriptors.astype(np.float32)]
    pairs = {
        (_prefix(f"{a:.9f}"), _prefix(f"{b:.9f}"))
        for row in descriptors
        for a, b in itertools.pairwise(row.tolist())
        if min(abs(a), abs(b)) >= 0.01
    }
    for blob in blobs:
        for row in raw:
            for start in range(0, len(row) - 16, 16):
                assert row[start : start + 16] not in blob
        numbers = [_prefix(n.decode()) for n in re.findall(rb"-?\d+\.\d{5}", blob)]
        shown = [pair for pair in itertools.pairwise(numbers) if pair in pairs]
        assert not shown, f"face descriptor values, in order: {shown}"
