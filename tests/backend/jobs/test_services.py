"""The job services the views call: the rules of a submit, a poll, a download."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator

import pytest
import redis
from django.test import override_settings

from backend import e2e
from backend.audit.models import AuditEvent
from backend.clients.models import ApiClient
from backend.clients.services import api_key_create
from backend.ephemeral import keys, store
from backend.errors import CodedError
from backend.jobs import lifecycle, services
from backend.pseudonyms import owner_hash
from ephemera_client import envelope
from ephemera_client.envelope import KeyPair
from tests.conftest import jpeg_with_exif, portrait

pytestmark = pytest.mark.django_db

WORKER, REPLY = KeyPair.generate(), KeyPair.generate()


@pytest.fixture
def client(redis_conn: redis.Redis) -> ApiClient:
    key, _ = api_key_create(name=f"svc-{uuid.uuid4().hex[:6]}", tier="standard")
    return key.client


@pytest.fixture
def published() -> Iterator[None]:
    e2e.public_keys.cache_clear()
    line = f"w1:{base64.b64encode(WORKER.public).decode()}"
    with override_settings(EPHEMERA_E2E_PUBLIC_KEYS=line):
        yield
    e2e.public_keys.cache_clear()


def photo() -> bytes:
    return jpeg_with_exif(portrait((320, 240)), "holiday")


def sealed(data: bytes, task: str = "cartoonize") -> bytes:
    return envelope.seal_upload(
        data, key_id="w1", public_key=WORKER.public, reply_key=REPLY.public,
        service="ephemera", task=task,
    )  # fmt: skip


def submit(client: ApiClient, image: bytes, task: str = "cartoonize", **extra: object) -> str:
    record = services.job_submit(client=client, task=task, params_text=None, image=image, **extra)
    return record.id


def refusal(client: ApiClient, image: bytes, task: str = "cartoonize", **extra: object) -> str:
    with pytest.raises(CodedError) as caught:
        submit(client, image, task, **extra)
    return caught.value.code


def rejected_outcomes(client: ApiClient) -> list[str]:
    return list(AuditEvent.objects.filter(event="rejected").values_list("outcome", flat=True))


def test_a_plain_upload_is_sniffed_and_sealed(client: ApiClient, redis_conn: redis.Redis) -> None:
    job_id = submit(client, photo())
    record = store.get_job(job_id)
    assert record is not None
    assert (record.format, record.width, record.height, record.e2e) == ("jpeg", 320, 240, False)
    assert redis_conn.get(keys.input_key(job_id))[:4] == b"EPH1"  # type: ignore[index]


def test_an_envelope_is_stored_as_it_came(
    client: ApiClient, redis_conn: redis.Redis, published: None
) -> None:
    upload = sealed(photo())
    job_id = submit(client, upload)
    record = store.get_job(job_id)
    assert record is not None
    assert (record.format, record.width, record.e2e) == ("", 0, True)
    assert redis_conn.get(keys.input_key(job_id)) == upload


def test_refusals_carry_their_code_and_leave_an_audit_row(
    client: ApiClient, published: None
) -> None:
    assert refusal(client, photo(), "no_such_task") == "unknown_task"
    assert refusal(client, b"plain text, no photo") == "unsupported_media_type"
    assert refusal(client, sealed(photo())[:40]) == "invalid_envelope"
    assert refusal(client, photo(), reference=photo()) == "reference_not_accepted"
    assert sorted(rejected_outcomes(client)) == ["invalid_envelope", "unsupported_media_type"]


def test_another_clients_job_answers_like_no_job(client: ApiClient) -> None:
    job_id = submit(client, photo())
    stranger = api_key_create(name=f"svc-{uuid.uuid4().hex[:6]}", tier="standard")[0].client
    assert services.job_get(client=client, job_id=job_id).id == job_id
    with pytest.raises(CodedError) as caught:
        services.job_get(client=stranger, job_id=job_id)
    assert caught.value.code == "job_not_found"
    with pytest.raises(CodedError):
        services.job_delete(client=stranger, job_id=job_id)
    assert store.get_job(job_id) is not None


def test_an_end_to_end_result_downloads_as_an_envelope(client: ApiClient, published: None) -> None:
    job_id = submit(client, sealed(photo()))
    claimed = lifecycle.claim(job_id)
    reply = envelope.parse_upload(claimed.open_image()).reply_key
    result = envelope.seal_result(
        b"{}", reply_key=reply, service="ephemera", task="cartoonize", job_id=job_id
    )
    published_result = lifecycle.succeed(
        job_id, data=result, content_type="application/json", run_ms=1
    )
    assert published_result is not None
    token = store.reveal_token(published_result)
    assert token is not None
    download = services.result_take(client=client, token=token)
    assert (download.content_type, download.data) == (envelope.CONTENT_TYPE, result)
    assert owner_hash(client.pk) == published_result.owner
