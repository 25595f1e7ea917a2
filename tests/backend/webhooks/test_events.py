"""Webhook delivery to a real receiver on loopback, verified by the reference verifier."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator

import pytest
import redis
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from backend.clients.services import api_key_create
from backend.clients.webhook_secrets import webhook_secret_issue
from backend.ephemeral import keys, tokens
from backend.ephemeral.records import JobRecord
from backend.isotime import iso_utc
from backend.pseudonyms import hashed_id
from backend.webhooks import events
from tests.webhook_receiver import Receiver, receiver


@pytest.fixture
def client_name(db: None, redis_conn: redis.Redis) -> str:
    name = f"hooks-{uuid.uuid4().hex[:8]}"
    api_key_create(name=name)
    return name


@pytest.fixture
def hook() -> Iterator[Receiver]:
    with receiver() as running:
        yield running


def ended_job(url: str, client_name: str, **fields: object) -> JobRecord:
    from backend.clients.models import ApiClient

    job_id = str(uuid.uuid4())
    now = time.time()
    values: dict[str, object] = {
        "id": job_id,
        "owner": "owner-hash",
        "task": "anonymize",
        "status": "succeeded",
        "params": {},
        "format": "jpeg",
        "created_at": now - 2,
        "expires_at": now + 600,
        "result_token_sealed": tokens.seal_token(tokens.new_token(job_id), job_id=job_id),
        "webhook_sealed": events.seal_target(
            job_id=job_id, url=url, client_id=ApiClient.objects.get(name=client_name).pk
        ),
    }
    values.update(fields)
    return JobRecord(**values)  # type: ignore[arg-type]


def test_it_posts_the_end_signed_so_the_reference_verifier_accepts_it(
    client_name: str, hook: Receiver, redis_conn: redis.Redis
) -> None:
    secret = webhook_secret_issue(name=client_name)
    record = ended_job(hook.url(), client_name)
    event_id = events.create_event(record, status="succeeded")

    assert events.deliver(event_id).outcome == "delivered"

    (post,) = hook.received
    assert post.path == "/hook"
    assert post.headers["webhook-id"] == event_id
    body = Webhook(secret).verify(post.body, post.headers)
    assert body == {
        "id": record.id,
        "status": "succeeded",
        "error": None,
        "expires_at": iso_utc(record.expires_at),
    }
    # Delivered: the sealed event is gone, a duplicate message finds nothing.
    assert redis_conn.exists(keys.webhook_key(event_id)) == 0
    assert events.deliver(event_id).outcome == "gone"


def test_a_wrong_secret_does_not_verify(client_name: str, hook: Receiver) -> None:
    webhook_secret_issue(name=client_name)
    event_id = events.create_event(ended_job(hook.url(), client_name), status="succeeded")
    events.deliver(event_id)
    other = Webhook("whsec_" + "A" * 43 + "=")
    with pytest.raises(WebhookVerificationError):
        other.verify(hook.received[0].body, hook.received[0].headers)


def test_the_payload_has_no_token_and_no_image(client_name: str, hook: Receiver) -> None:
    webhook_secret_issue(name=client_name)
    record = ended_job(hook.url(), client_name)
    event_id = events.create_event(record, status="succeeded")
    events.deliver(event_id)

    body = hook.received[0].body
    token = tokens.open_token(record.result_token_sealed or "", job_id=record.id)
    assert token.encode() not in body
    assert b"rt_" not in body and b"/results/" not in body
    assert set(json.loads(body)) == {"id", "status", "error", "expires_at"}
    assert len(body) < 300


def test_a_failed_job_carries_its_error(client_name: str, hook: Receiver) -> None:
    secret = webhook_secret_issue(name=client_name)
    record = ended_job(
        hook.url(),
        client_name,
        status="failed",
        error_code="time_limit",
        error_message="The job ran out of time.",
        result_token_sealed=None,
    )
    events.deliver(events.create_event(record, status="failed"))
    body = Webhook(secret).verify(hook.received[0].body, hook.received[0].headers)
    assert body["error"] == {"code": "time_limit", "message": "The job ran out of time."}


def test_it_retries_after_a_500_with_the_same_webhook_id(
    client_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    secret = webhook_secret_issue(name=client_name)
    with receiver(answers=[500]) as hook:
        event_id = events.create_event(ended_job(hook.url(), client_name), status="succeeded")

        first = events.deliver(event_id, attempt=0)
        assert (first.outcome, first.status_code) == ("retry", 500)
        assert first.delay == 1  # EPHEMERA_WEBHOOK_FIRST_RETRY in the tests
        assert events.deliver(event_id, attempt=1).outcome == "delivered"

    one, two = hook.received
    assert one.headers["webhook-id"] == two.headers["webhook-id"] == event_id
    assert one.body == two.body
    Webhook(secret).verify(two.body, two.headers)
    logged = [
        (r.getMessage(), getattr(r, "hook", None), getattr(r, "attempt", None))
        for r in caplog.records
        if r.name == events.logger.name
    ]
    hook_id = hashed_id(event_id)
    assert logged == [("webhook_retry", hook_id, 0), ("webhook_delivered", hook_id, 1)]


def test_backoff_doubles_up_to_an_hour() -> None:
    assert [events.next_delay(n) for n in range(4)] == [1, 2, 4, 8]
    assert events.next_delay(30) == events.MAX_DELAY == 3600


def test_it_gives_up_when_the_window_is_over(client_name: str, redis_conn: redis.Redis) -> None:
    webhook_secret_issue(name=client_name)
    with receiver(answers=[500]) as hook:
        event_id = events.create_event(ended_job(hook.url(), client_name), status="succeeded")
        late = time.time() + 24 * 3600
        assert events.deliver(event_id, attempt=12, now=late).outcome == "given_up"
    assert redis_conn.exists(keys.webhook_key(event_id)) == 0


def test_a_long_retry_waits_in_the_due_set_not_in_a_countdown(
    client_name: str, redis_conn: redis.Redis
) -> None:
    webhook_secret_issue(name=client_name)
    event_id = events.create_event(ended_job("http://127.0.0.1:9/x", client_name), status="failed")
    now = time.time()
    events.retry_later(event_id, attempt=9, delay=3600, now=now)
    assert redis_conn.zscore(keys.WEBHOOK_DUE_KEY, f"{event_id}:9") == pytest.approx(now + 3600)
    assert redis_conn.ttl(keys.WEBHOOK_DUE_KEY) > 0
    assert events.release_due(now=now + 30) == 0
    redis_conn.zadd(keys.WEBHOOK_DUE_KEY, {f"{event_id}:9": now - 1})
    # Released once: a second beat finds nothing.
    assert events.release_due(now=now) == 1
    assert events.release_due(now=now) == 0
    redis_conn.delete(keys.WEBHOOK_DUE_KEY)


def test_an_event_whose_creator_died_before_queueing_it_is_queued_by_the_beat(
    client_name: str, redis_conn: redis.Redis
) -> None:
    webhook_secret_issue(name=client_name)
    now = time.time()
    event_id = events.create_event(
        ended_job("http://127.0.0.1:9/x", client_name), status="failed", now=now
    )
    # ... and then the process that created it was killed.

    assert events.release_due(now=now + 30) == 0  # its creator may still queue it
    assert events.release_due(now=now + 61) == 1
    assert redis_conn.zscore(keys.WEBHOOK_DUE_KEY, f"{event_id}:0") is None


def test_a_job_has_one_event_however_often_its_end_is_reported(
    client_name: str, redis_conn: redis.Redis
) -> None:
    webhook_secret_issue(name=client_name)
    record = ended_job("http://127.0.0.1:9/x", client_name)

    first = events.job_ended(record)

    assert first == events.event_id_of(record.id)
    assert events.job_ended(record) is None
    assert events.create_event(record, status="succeeded") is None
    assert redis_conn.exists(keys.webhook_key(first)) == 1
    # Queued at once: no safety copy is left for the beat to queue again.
    assert redis_conn.zcard(keys.WEBHOOK_DUE_KEY) == 0


def test_rotation_signs_with_both_secrets(client_name: str, hook: Receiver) -> None:
    old = webhook_secret_issue(name=client_name)
    new = webhook_secret_issue(name=client_name, rotate=True)
    events.deliver(events.create_event(ended_job(hook.url(), client_name), status="succeeded"))

    post = hook.received[0]
    assert len(post.headers["webhook-signature"].split(" ")) == 2
    Webhook(old).verify(post.body, post.headers)
    Webhook(new).verify(post.body, post.headers)

    # The next rotation retires the oldest: two secrets valid at once, never three.
    newest = webhook_secret_issue(name=client_name, rotate=True)
    events.deliver(events.create_event(ended_job(hook.url(), client_name), status="succeeded"))
    post = hook.received[1]
    Webhook(new).verify(post.body, post.headers)
    Webhook(newest).verify(post.body, post.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(old).verify(post.body, post.headers)


def test_a_redirect_is_not_followed(client_name: str) -> None:
    webhook_secret_issue(name=client_name)
    with receiver() as elsewhere, receiver(answers=[302], location=elsewhere.url()) as hook:
        event_id = events.create_event(ended_job(hook.url(), client_name), status="succeeded")
        attempt = events.deliver(event_id)
    assert (attempt.outcome, attempt.status_code) == ("retry", 302)
    assert len(hook.received) == 1
    assert elsewhere.received == []


def test_a_loopback_name_that_is_not_allow_listed_is_never_contacted(
    client_name: str, hook: Receiver, redis_conn: redis.Redis
) -> None:
    webhook_secret_issue(name=client_name)
    # Same receiver, but by a name (localhost) the allow-list does not hold.
    url = f"http://localhost:{hook.port}/hook"
    event_id = events.create_event(ended_job(url, client_name), status="succeeded")
    assert events.deliver(event_id).outcome == "given_up"
    assert hook.received == []
    assert redis_conn.exists(keys.webhook_key(event_id)) == 0


def test_an_event_is_sealed_in_redis(
    client_name: str, hook: Receiver, redis_conn: redis.Redis
) -> None:
    webhook_secret_issue(name=client_name)
    record = ended_job(hook.url(), client_name)
    event_id = events.create_event(record, status="succeeded")
    raw = redis_conn.get(keys.webhook_key(event_id)) or b""
    assert hook.url().encode() not in raw and record.id.encode() not in raw
    assert 0 < redis_conn.ttl(keys.webhook_key(event_id)) <= 24 * 3600 + 3600
    assert hook.url() not in (record.webhook_sealed or "")
