"""Webhook events: one per job end, sealed in Redis until delivered or out of time.

The job record keeps the URL and the client sealed (``webhook_sealed``): the
URL is the client's, may carry a secret of theirs in its path, and so is kept
like one (never in a log line, never in a queue message). When the job ends,
``job_ended`` seals the event (URL, client, the fixed payload, its creation
time) under ``eph:hook:{event id}`` and queues its id; the event id is derived
from the job's, so an end accounted for twice (a process killed while it
accounted) queues one event. Every attempt sends the same ``webhook-id`` (the
event id) and the same body, with a fresh timestamp; a delivered event is
deleted, so a duplicate message finds nothing to send.
"""

from __future__ import annotations

import base64
import json
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any, Literal

from django.conf import settings
from kombu.exceptions import OperationalError
from redis.exceptions import RedisError

from backend.clients.webhook_secrets import webhook_secrets
from backend.ephemeral import crypto, keys, scripts
from backend.ephemeral.connection import client as redis_client
from backend.ephemeral.records import JobRecord, webhook_event_ttl
from backend.isotime import iso_utc
from backend.jobs.queue import enqueue_webhook
from backend.pseudonyms import hashed_id
from backend.webhooks import signing
from backend.webhooks.http import DeliveryFailed, post
from backend.webhooks.targets import WebhookRefused, WebhookUnresolvable, check_url

logger = logging.getLogger(__name__)

#: The longest single wait between two attempts.
MAX_DELAY = 3600.0


def seal_target(*, job_id: str, url: str, client_id: int) -> str:
    """The URL and client, sealed for the job record (base64 text)."""
    plain = json.dumps({"url": url, "client": client_id}).encode()
    blob = crypto.seal(plain, keyring=crypto.keyring(), purpose="hookurl", subject=job_id)
    return base64.b64encode(blob).decode()


def _open_target(record: JobRecord) -> dict[str, Any]:
    blob = base64.b64decode(record.webhook_sealed or "")
    opened = crypto.open_sealed(
        blob, keyring=crypto.keyring(), purpose="hookurl", subject=record.id
    )
    return dict(json.loads(opened))


def payload(record: JobRecord, *, status: str) -> dict[str, Any]:
    """What the receiver learns: the job's id, end, error and expiry; never a token or byte."""
    error = None
    if record.error_code and status in {"failed", "expired"}:
        error = {"code": record.error_code, "message": record.error_message or ""}
    return {
        "id": record.id,
        "status": status,
        "error": error,
        "expires_at": iso_utc(record.expires_at),
    }


def job_ended(record: JobRecord) -> str | None:
    """Queue the webhook of a job that ended, once; the event id, or None without a
    webhook or when the job's event was created already.

    Called by the lifecycle's end hook only. It never raises: a job's end must
    not fail because its notice could not be queued (that is logged instead).
    """
    if not record.webhook_sealed:
        return None
    try:
        event_id = create_event(record, status=record.status)
        if event_id is None:
            return None
        enqueue_webhook(event_id)
        # Queued: the safety copy in the due set is no longer needed.
        redis_client().zrem(keys.WEBHOOK_DUE_KEY, _due_member(event_id, 0))
    except (RedisError, OperationalError, crypto.DecryptionError, ValueError) as exc:
        logger.error(
            "webhook_not_queued",
            extra={"job": hashed_id(record.id), "error_type": type(exc).__name__},
        )
        return None
    return event_id


#: Event ids are derived from job ids in this namespace: one event per job.
_EVENT_IDS = uuid.UUID("0b7ca93f-298b-4288-996a-c381672cad8b")
#: How long a new event's safety copy waits in the due set: longer than it takes
#: to queue the event, after which the beat queues it if its creator died first.
_QUEUE_GRACE = 60.0

# KEYS: event, due set. ARGV: sealed event, event ttl, due member, due time.
# Creates the event only if the job has none yet, with its safety copy in the
# due set, in one step.
_CREATE = """
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[2])
return 1
"""


def event_id_of(job_id: str) -> str:
    """The id of a job's webhook event (its ``webhook-id``), the same however often
    the end is accounted for, so a receiver can tell a repeat by it."""
    return str(uuid.uuid5(_EVENT_IDS, job_id))


def create_event(record: JobRecord, *, status: str, now: float | None = None) -> str | None:
    """Seal the event of a job's end (URL, client, payload, time) in Redis; its id, or
    None when the job's event exists already.

    A process that dies between this and queueing the event leaves its copy in
    the due set, which the beat's ``webhook_due`` queues after ``_QUEUE_GRACE``.
    """
    event_id = event_id_of(record.id)
    now = time.time() if now is None else now
    event = {
        **_open_target(record),
        "payload": payload(record, status=status),
        "created_at": now,
    }
    blob = crypto.seal(
        json.dumps(event).encode(), keyring=crypto.keyring(), purpose="hook", subject=event_id
    )
    created = scripts.run(
        _CREATE,
        keys=[keys.webhook_key(event_id), keys.WEBHOOK_DUE_KEY],
        args=[blob, webhook_event_ttl(), _due_member(event_id, 0), now + _QUEUE_GRACE],
    )
    return event_id if created else None


def _due_member(event_id: str, attempt: int) -> str:
    return f"{event_id}:{attempt}"


Outcome = Literal["delivered", "gone", "given_up", "retry"]


@dataclass(frozen=True)
class Attempt:
    outcome: Outcome
    #: Seconds until the next attempt (``retry``).
    delay: float = 0.0
    status_code: int | None = None


def next_delay(attempt: int) -> float:
    """Exponential backoff: the first retry after EPHEMERA_WEBHOOK_FIRST_RETRY, doubling."""
    return min(MAX_DELAY, settings.EPHEMERA_WEBHOOK_FIRST_RETRY * 2.0 ** min(attempt, 20))


def deliver(event_id: str, *, attempt: int = 0, now: float | None = None) -> Attempt:
    """One attempt to POST the event; what happened and, to retry, after how long."""
    key = keys.webhook_key(event_id)
    blob = redis_client().get(key)
    if blob is None:
        return Attempt("gone")
    event = json.loads(
        crypto.open_sealed(blob, keyring=crypto.keyring(), purpose="hook", subject=event_id)
    )
    now = time.time() if now is None else now
    log = {"hook": hashed_id(event_id), "attempt": attempt}
    secrets_ = webhook_secrets(client_id=int(event["client"]))
    if not secrets_:
        redis_client().delete(key)
        logger.warning("webhook_given_up", extra={**log, "reason": "no_secret"})
        return Attempt("given_up")
    status_code: int | None = None
    try:
        # Resolved and checked again at every attempt: the answer of the submit's
        # check may have changed, and only the address checked now is called.
        target = check_url(event["url"])
        body = json.dumps(event["payload"], separators=(",", ":")).encode()
        headers = signing.headers(msg_id=event_id, timestamp=int(now), body=body, secrets_=secrets_)
        headers["content-type"] = "application/json"
        headers["user-agent"] = "Ephemera-Webhooks/1"
        status_code = post(target, body=body, headers=headers)
    except WebhookUnresolvable:
        reason = "unresolvable"
    except WebhookRefused:
        redis_client().delete(key)
        logger.warning("webhook_given_up", extra={**log, "reason": "refused_target"})
        return Attempt("given_up")
    except DeliveryFailed as exc:
        reason = str(exc)
    else:
        if 200 <= status_code < 300:
            redis_client().delete(key)
            logger.info("webhook_delivered", extra={**log, "status_code": status_code})
            return Attempt("delivered", status_code=status_code)
        reason = "status"
    delay = next_delay(attempt)
    if now + delay > float(event["created_at"]) + settings.EPHEMERA_WEBHOOK_WINDOW:
        redis_client().delete(key)
        logger.warning("webhook_given_up", extra={**log, "reason": "window_over"})
        return Attempt("given_up", status_code=status_code)
    logger.info(
        "webhook_retry",
        extra={**log, "reason": reason, "status_code": status_code, "delay": delay},
    )
    return Attempt("retry", delay=delay, status_code=status_code)


def retry_later(event_id: str, *, attempt: int, delay: float, now: float | None = None) -> None:
    """Send attempt number ``attempt`` after ``delay`` seconds.

    A Celery countdown is held by a worker as an unacknowledged message, which
    the broker hands out again after its visibility timeout: a longer wait would
    send the event twice. Those retries wait in a sorted set instead, which the
    beat's ``workers.webhook_due`` task releases every minute.
    """
    if delay <= settings.EPHEMERA_TASK_HARD_LIMIT:
        enqueue_webhook(event_id, attempt=attempt, countdown=delay)
        return
    now = time.time() if now is None else now
    conn = redis_client()
    conn.zadd(keys.WEBHOOK_DUE_KEY, {_due_member(event_id, attempt): now + delay})
    conn.expire(keys.WEBHOOK_DUE_KEY, webhook_event_ttl())


def release_due(*, now: float | None = None) -> int:
    """Queue every held retry whose time has come; how many were queued."""
    now = time.time() if now is None else now
    conn = redis_client()
    released = 0
    for raw in conn.zrangebyscore(keys.WEBHOOK_DUE_KEY, "-inf", now):
        member = raw.decode() if isinstance(raw, bytes) else str(raw)
        # ZREM decides who sends it when two beats race: only one removes it.
        if conn.zrem(keys.WEBHOOK_DUE_KEY, member):
            event_id, _, attempt = member.partition(":")
            enqueue_webhook(event_id, attempt=int(attempt or 0))
            released += 1
    return released
