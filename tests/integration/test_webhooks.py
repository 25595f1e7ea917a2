"""End to end: a job through the real web and worker ends with a signed POST to its
webhook, sent by the real webhook sender (``bin/ephemera webhooks``)."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import cv2
import httpx
import pytest
import redis
from standardwebhooks.webhooks import Webhook

from backend.jobs.queue import JOBS_QUEUE, MAINTENANCE_QUEUE, WEBHOOKS_QUEUE
from ephemera_client import Client, InvalidRequest
from tests.conftest import portrait
from tests.harness import Process, manage, start_worker, wait_until
from tests.integration.helpers import pause_consumers, resume_consumers
from tests.integration.live_stack import LiveStack, live_stack
from tests.webhook_receiver import Receiver, receiver
from workers.celery_app import app

__all__ = ["live_stack"]


def start_sender(live_stack: LiveStack, log_dir: Path) -> Process:
    env = {
        **live_stack.env,
        "WEBHOOK_HOSTNAME": f"hooks-{uuid.uuid4().hex[:6]}@{socket.gethostname()}",
        # Given to it on purpose: bin/ephemera must drop it.
        "EPHEMERA_E2E_PRIVATE_KEYS": "w1:" + "A" * 43,
    }
    return start_worker(env, log_dir=log_dir, role="webhooks")


@pytest.fixture
def webhook_sender(live_stack: LiveStack, tmp_path: Path) -> Iterator[Process]:
    """A webhook sender of the test's own (it starts in about a second)."""
    sender = start_sender(live_stack, tmp_path)
    yield sender
    sender.stop()


@pytest.fixture
def hooked_client(
    live_stack: LiveStack, webhook_sender: Process, redis_conn: redis.Redis
) -> tuple[str, str]:
    """A client of the live stack with a webhook secret: its API key and the secret."""
    name = f"hooks-{uuid.uuid4().hex[:8]}"
    key = manage(live_stack.env, "create_api_key", "--name", name, "--tier", "standard").strip()
    secret = manage(live_stack.env, "webhook_secret", "--name", name).strip()
    return key, secret


def jpeg_bytes() -> bytes:
    ok, jpeg = cv2.imencode(".jpg", portrait((256, 256)))
    assert ok
    return bytes(jpeg.tobytes())


def test_a_job_ends_with_a_signed_post_retried_after_a_500(
    live_stack: LiveStack, hooked_client: tuple[str, str]
) -> None:
    key, secret = hooked_client
    jpeg = jpeg_bytes()
    with receiver(answers=[500]) as hook:
        answer = httpx.post(
            f"{live_stack.url}/api/v1/jobs",
            headers={"Authorization": f"Bearer {key}", "Prefer": "wait=60"},
            files={"image": ("photo.jpg", jpeg, "image/jpeg")},
            data={"task": "detect", "webhook": hook.url("/ephemera")},
            timeout=90,
        )
        assert answer.status_code == 201, answer.text
        job = answer.json()
        assert job["status"] == "succeeded"
        # The 500 is retried by the worker after EPHEMERA_WEBHOOK_FIRST_RETRY (1 s here).
        first, second = hook.wait_for(2, timeout=60)

    assert first.path == second.path == "/ephemera"
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    body = Webhook(secret).verify(second.body, second.headers)
    assert body == {
        "id": job["id"],
        "status": "succeeded",
        "error": None,
        "expires_at": job["expires_at"],
    }
    token = job["result"]["url"].rsplit("/", 1)[1]
    assert token.encode() not in second.body
    assert jpeg[:64] not in second.body


@contextmanager
def queued_with_webhook(live_stack: LiveStack, key: str) -> Iterator[tuple[Receiver, str]]:
    """A job held queued (the worker does not consume) with a webhook: the receiver and id."""
    pause_consumers(live_stack.worker)
    try:
        with receiver() as hook:
            answer = httpx.post(
                f"{live_stack.url}/api/v1/jobs",
                headers={"Authorization": f"Bearer {key}"},
                files={"image": ("photo.jpg", jpeg_bytes(), "image/jpeg")},
                data={"task": "detect", "webhook": hook.url()},
                timeout=30,
            )
            assert answer.status_code == 202, answer.text
            yield hook, answer.json()["id"]
    finally:
        resume_consumers(live_stack.worker)


def test_a_deleted_queued_job_posts_cancelled(
    live_stack: LiveStack, hooked_client: tuple[str, str]
) -> None:
    key, secret = hooked_client
    with queued_with_webhook(live_stack, key) as (hook, job_id):
        deleted = httpx.delete(
            f"{live_stack.url}/api/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {key}"}
        )
        assert deleted.status_code == 204
        (post,) = hook.wait_for(1, timeout=30)
    body = Webhook(secret).verify(post.body, post.headers)
    assert (body["id"], body["status"], body["error"]) == (job_id, "cancelled", None)


def test_a_job_redis_lost_posts_failed_lost(
    live_stack: LiveStack, hooked_client: tuple[str, str], redis_conn: redis.Redis
) -> None:
    key, secret = hooked_client
    with queued_with_webhook(live_stack, key) as (hook, job_id):
        # Redis loses everything about the job; only its durable trace is left.
        for found in redis_conn.scan_iter(match=f"eph:*{job_id}*"):
            redis_conn.delete(found)
        polled = httpx.get(
            f"{live_stack.url}/api/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {key}"}
        )
        assert polled.json()["error"]["code"] == "lost"
        (post,) = hook.wait_for(1, timeout=30)
    body = Webhook(secret).verify(post.body, post.headers)
    assert (body["id"], body["status"]) == (job_id, "failed")
    assert body["error"]["code"] == "lost"


def _submit(live_stack: LiveStack, key: str, **data: str) -> httpx.Response:
    return httpx.post(
        f"{live_stack.url}/api/v1/jobs",
        headers={"Authorization": f"Bearer {key}", "Prefer": "wait=60"},
        files={"image": ("photo.jpg", jpeg_bytes(), "image/jpeg")},
        data={"task": "detect", **data},
        timeout=90,
    )


def test_a_receiver_that_never_answers_holds_up_no_job(
    live_stack: LiveStack, hooked_client: tuple[str, str]
) -> None:
    # The session's worker has one pool process: were deliveries its work, a
    # tarpit would keep the next job waiting until the delivery gave up.
    key, _ = hooked_client
    with receiver(hold=True) as tarpit:
        first = _submit(live_stack, key, webhook=tarpit.url())
        assert first.json()["status"] == "succeeded"
        tarpit.wait_for(1)
        second = _submit(live_stack, key)
        assert second.json()["status"] == "succeeded"
        assert tarpit.abandoned == 0, "the next job waited for the delivery to give up"


def _inspect(command: str, process: Process) -> Any:
    """What a running Celery worker answers to a remote-control inspection."""

    def answer() -> Any:
        inspect = app.control.inspect(destination=[process.hostname], timeout=1)
        return (getattr(inspect, command)() or {}).get(process.hostname)

    return wait_until(answer, timeout=15, message=f"no answer to {command}", interval=0)


def test_deliveries_and_jobs_run_in_separate_processes(
    live_stack: LiveStack, webhook_sender: Process
) -> None:
    def queues(process: Process) -> set[str]:
        return {queue["name"] for queue in _inspect("active_queues", process)}

    assert queues(webhook_sender) == {WEBHOOKS_QUEUE}
    assert set(_inspect("registered", webhook_sender)) == {
        "workers.deliver_webhook",
        "workers.webhook_due",
    }
    assert queues(live_stack.worker) == {JOBS_QUEUE, MAINTENANCE_QUEUE}
    assert "workers.deliver_webhook" not in _inspect("registered", live_stack.worker)
    # The sender never loads a model and never holds a key that opens a photo.
    maps = Path(f"/proc/{webhook_sender.pid}/maps").read_text()
    assert "libtorch" not in maps
    assert "opencv" not in maps.lower()
    environ = Path(f"/proc/{webhook_sender.pid}/environ").read_bytes()
    assert b"E2E_PRIVATE" not in environ


def test_a_sender_stopped_mid_delivery_hands_it_on(
    live_stack: LiveStack, hooked_client: tuple[str, str], webhook_sender: Process, tmp_path: Path
) -> None:
    # A rolling update sends SIGTERM while a receiver is slow: the delivery in
    # flight ends (at its timeout), is queued again, and the next sender sends it.
    key, secret = hooked_client
    with receiver(hold=True) as hook:
        assert _submit(live_stack, key, webhook=hook.url()).json()["status"] == "succeeded"
        hook.wait_for(1)
        webhook_sender.terminate()
        assert webhook_sender.wait_exit(timeout=30) == 0
        assert hook.abandoned == 1
        hook.hold = False
        (tmp_path / "successor").mkdir()
        successor = start_sender(live_stack, tmp_path / "successor")
        try:
            first, second = hook.wait_for(2, timeout=60)
        finally:
            successor.stop()
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    Webhook(secret).verify(second.body, second.headers)


def test_the_python_client_submits_with_a_webhook(
    live_stack: LiveStack, hooked_client: tuple[str, str]
) -> None:
    key, secret = hooked_client
    with Client(url=live_stack.url, api_key=key) as client, receiver() as hook:
        job = client.submit("detect", jpeg_bytes(), webhook=hook.url("/from-client"), wait=30)
        (post,) = hook.wait_for(1, timeout=30)
        with pytest.raises(InvalidRequest) as refused:
            client.submit("detect", jpeg_bytes(), webhook="ftp://example.com/hook")
    assert post.path == "/from-client"
    assert Webhook(secret).verify(post.body, post.headers)["id"] == job.id
    assert refused.value.code == "invalid_webhook"
