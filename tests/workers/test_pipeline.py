"""One job through ``workers.pipeline.process_job``, in this process, on the session's Redis.

The pipeline as a job process runs it, without Celery around it: claim, open,
check, model, encode, seal, publish; and every way it ends without a result.
"""

from __future__ import annotations

import uuid
from typing import Any

import cv2
import numpy as np
import pytest
import redis

from backend import e2e as web_e2e
from backend.ephemeral import keys, store
from ephemera_client import envelope
from ephemera_client.envelope import KeyPair
from tests.conftest import jpeg_with_exif, png_claiming, portrait
from tests.factories import queued_job
from workers import e2e
from workers.pipeline import process_job

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("one_thread", "redis_conn")]

REPLY = KeyPair.generate()


def photo(canary: str = "holiday with bob") -> bytes:
    return jpeg_with_exif(portrait((256, 192)), canary)


def sealed(data: bytes, task: str = "cartoonize") -> bytes:
    """An envelope for the session's workers (the development key pair of its var dir)."""
    active = web_e2e.public_keys()[0]
    assert active.id in e2e.private_keys()
    return envelope.seal_upload(
        data, key_id=active.id, public_key=active.key, reply_key=REPLY.public,
        service="ephemera", task=task,
    )  # fmt: skip


def result_of(job_id: str) -> bytes:
    record = store.get_job(job_id)
    assert record is not None and record.status == "succeeded", record
    token = store.reveal_token(record)
    assert token is not None
    return store.take_result(token, owner=record.owner).data


def error_of(job_id: str) -> str | None:
    record = store.get_job(job_id)
    assert record is not None and record.status == "failed", record
    return record.error_code


def test_a_plain_job_succeeds_without_the_uploads_metadata(redis_conn: redis.Redis) -> None:
    job_id = queued_job(photo("canary-plain"))
    assert process_job(job_id).outcome == "succeeded"
    result = result_of(job_id)
    assert b"canary-plain" not in result
    decoded = cv2.imdecode(np.frombuffer(result, np.uint8), cv2.IMREAD_COLOR)
    assert decoded is not None and decoded.shape == (192, 256, 3)
    # The claim took the upload: nothing of it is left.
    assert not redis_conn.exists(keys.input_key(job_id))


def test_an_end_to_end_job_answers_to_the_reply_key_only(redis_conn: redis.Redis) -> None:
    job_id = queued_job(sealed(photo("canary-e2e")), e2e=True)
    assert process_job(job_id).outcome == "succeeded"
    result = result_of(job_id)
    assert result[:4] == envelope.RESULT_MAGIC
    opened = envelope.open_result(
        result, reply_private=REPLY.private, service="ephemera", task="cartoonize",
        job_id=job_id,
    )  # fmt: skip
    assert b"canary-e2e" not in opened
    assert cv2.imdecode(np.frombuffer(opened, np.uint8), cv2.IMREAD_COLOR) is not None


@pytest.mark.parametrize(
    ("upload", "code"),
    [
        (lambda: sealed(b"plain text, not a photo"), "unsupported_media_type"),
        (lambda: sealed(b"\xff\xd8\xff\xe0" + bytes(32)), "undecodable_image"),
        (lambda: sealed(png_claiming(20000, 20000)), "image_too_large"),
        (lambda: sealed(photo(), task="anonymize"), "envelope_rejected"),
        (lambda: sealed(photo())[:-1], "envelope_rejected"),
    ],
    ids=["no photo inside", "broken photo inside", "too many pixels", "another task", "truncated"],
)
def test_an_envelope_the_job_process_refuses_ends_with_the_webs_code(
    upload: object, code: str
) -> None:
    job_id = queued_job(upload(), e2e=True)  # type: ignore[operator]
    assert process_job(job_id).outcome == "failed"
    assert error_of(job_id) == code


def test_a_sealed_upload_that_does_not_open_is_an_integrity_error(
    redis_conn: redis.Redis,
) -> None:
    job_id = queued_job(photo())
    blob = bytearray(redis_conn.get(keys.input_key(job_id)) or b"")
    blob[-1] ^= 1
    redis_conn.set(keys.input_key(job_id), bytes(blob), keepttl=True)
    assert process_job(job_id).outcome == "failed"
    assert error_of(job_id) == "integrity_error"


def test_on_claimed_runs_once_the_claim_has_answered_whatever_it_found() -> None:
    seen: list[str | None] = []

    def run(job_id: str) -> str:
        def on_claimed() -> None:
            record = store.get_job(job_id)
            seen.append(record.status if record else None)

        return process_job(job_id, on_claimed=on_claimed).outcome

    job_id = queued_job(photo())
    assert [run(job_id), run(job_id), run(str(uuid.uuid4()))] == [
        "succeeded", "skipped", "skipped",
    ]  # fmt: skip
    assert seen == ["running", "succeeded", None]


def test_a_job_that_is_not_there_to_take_is_skipped(redis_conn: redis.Redis) -> None:
    job_id = queued_job(photo())
    assert process_job(job_id).outcome == "succeeded"
    # A second delivery of the same message finds it ended: it does nothing.
    assert process_job(job_id).outcome == "skipped"
    assert store.get_job(job_id).status == "succeeded"  # type: ignore[union-attr]


def test_a_broken_photo_fails_undecodable_and_a_bad_param_invalid_params(
    redis_conn: redis.Redis,
) -> None:
    broken = queued_job(photo()[:300])
    assert process_job(broken).outcome == "failed"
    assert error_of(broken) == "undecodable_image"
    job_id = queued_job(photo())
    redis_conn.hset(keys.job_key(job_id), "params", '{"smoothing": "lots"}')
    assert process_job(job_id).outcome == "failed"
    assert error_of(job_id) == "invalid_params"


def test_a_job_process_needs_no_database(django_assert_num_queries: Any) -> None:
    """Every end a job process reaches is a change in Redis; the accounting is its pool's."""
    endings = []
    with django_assert_num_queries(0):
        good, broken = queued_job(photo()), queued_job(photo()[:300])
        endings = [process_job(job_id) for job_id in (good, broken, good, str(uuid.uuid4()))]
    outcomes = [(ending.outcome, ending.found) for ending in endings]
    assert outcomes == [
        ("succeeded", ""),
        ("failed", ""),
        ("skipped", "succeeded"),
        ("skipped", "missing"),
    ]
