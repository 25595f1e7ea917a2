"""Audit services: record one event, purge old ones, note the active key id.

``audit_record`` never raises a database error into its caller. The audit log
describes jobs; it does not protect them (TTLs and encryption do). Failing a
request after its photo was accepted, or a worker after its job finished, would
make the client submit the photo again, which puts one more copy in flight: the
opposite of what the log is for. So a failed write is logged by type at ERROR
(``audit_write_failed``, for alerting) and reported by the return value.
Only database errors are swallowed: a bug, or Celery's soft time limit (an
``Exception`` subclass) still propagates.
"""

from __future__ import annotations

import hashlib
import logging
import re
from datetime import datetime, timedelta
from typing import Literal

from django.conf import settings
from django.db import Error as DatabaseError
from django.db import transaction
from django.utils import timezone

from backend.audit.models import AuditEvent, EventKind, KeyringObservation
from backend.pseudonyms import hashed_id

logger = logging.getLogger(__name__)

EventName = Literal[
    "submitted",
    "succeeded",
    "failed",
    "expired",
    "cancelled",
    "downloaded",
    "deleted",
    "rejected",
    "throttled",
    "blocked",
]

#: Task names and outcome codes are identifiers from closed sets; anything else
#: (a message, a filename) is replaced, so free text can never reach the table.
_CODE = re.compile(r"^[a-z][a-z0-9_]*$")
INVALID = "invalid"
#: The largest value a ``PositiveIntegerField`` holds on every supported database.
_MAX_INT = 2**31 - 1
PURGE_BATCH = 5000


def audit_record(
    *,
    event: EventName,
    client_id: int | str | None = None,
    job_id: str | None = None,
    task: str = "",
    byte_size: int | None = None,
    queued_ms: int | None = None,
    run_ms: int | None = None,
    outcome: str = "",
) -> bool:
    """Append one event; True when it was written. Never raises a database error.

    ``client_id`` is the API client's primary key and ``job_id`` the job's uuid:
    both are stored only as ``hashed_id`` values, the ones the logs show. The
    worker knows no client: its events join the ``submitted`` one on ``job``.
    """
    if event not in EventKind.values:
        logger.error("audit_event_unknown")
        return False
    row = AuditEvent(
        event=event,
        client=hashed_id(f"client:{client_id}") if client_id not in (None, "") else "",
        # Lower-cased like ``backend.logs.redact`` does, so both name a job alike.
        job=hashed_id(job_id.lower()) if job_id else "",
        task=_code("task", task, max_length=40),
        byte_size=_count(byte_size, maximum=2**63 - 1),
        queued_ms=_count(queued_ms, maximum=_MAX_INT),
        run_ms=_count(run_ms, maximum=_MAX_INT),
        outcome=_code("outcome", outcome, max_length=64),
    )
    try:
        # A savepoint: a failed insert must not break a transaction the caller holds.
        with transaction.atomic():
            row.save(force_insert=True)
    except DatabaseError as exc:
        logger.error(
            "audit_write_failed", extra={"audit_event": event, "error_type": type(exc).__name__}
        )
        return False
    return True


def _code(field: str, value: str, *, max_length: int) -> str:
    if value == "" or (len(value) <= max_length and _CODE.match(value)):
        return value
    # Never log the value itself: it is exactly what must not be kept.
    logger.warning("audit_field_replaced", extra={"field": field})
    return INVALID


def _count(value: int | None, *, maximum: int) -> int | None:
    if value is None or isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return min(value, maximum)


def audit_purge(*, now: datetime | None = None) -> int:
    """Delete events older than ``EPHEMERA_AUDIT_RETENTION_DAYS``; return how many.

    Deletes in batches by primary key, so a large backlog never holds one long
    lock on the table that the API and the workers append to.
    """
    now = timezone.now() if now is None else now
    cutoff = now - timedelta(days=settings.EPHEMERA_AUDIT_RETENTION_DAYS)
    total = 0
    while True:
        batch = list(
            AuditEvent.objects.filter(created_at__lt=cutoff)
            .order_by()
            .values_list("pk", flat=True)[:PURGE_BATCH]
        )
        if not batch:
            return total
        deleted, _ = AuditEvent.objects.filter(pk__in=batch).delete()
        total += deleted
        if len(batch) < PURGE_BATCH:
            return total


def key_fingerprint(key: bytes) -> str:
    """A stable name for a 256-bit key, so a kid reused for a new key counts as new.

    Unsalted SHA-256 is safe here: a random 256-bit key cannot be guessed from
    it, and a guessable key is a finding of the privacy audit anyway.
    """
    return hashlib.sha256(b"ephemera/kek-fingerprint|" + key).hexdigest()[:32]


def keyring_observe(*, kid: str, key: bytes, now: datetime | None = None) -> datetime:
    """Note that ``kid`` (with this key) is active now; return since when it has been."""
    now = timezone.now() if now is None else now
    observation, created = KeyringObservation.objects.get_or_create(
        kid=kid,
        fingerprint=key_fingerprint(key),
        defaults={"first_seen": now, "last_seen": now},
    )
    if not created and observation.last_seen < now:
        KeyringObservation.objects.filter(pk=observation.pk).update(last_seen=now)
    return observation.first_seen


def keyring_first_seen(*, kid: str, key: bytes) -> datetime | None:
    """Since when ``kid`` (with this key) has been seen active; None if never noted."""
    observation = KeyringObservation.objects.filter(
        kid=kid, fingerprint=key_fingerprint(key)
    ).first()
    return observation.first_seen if observation else None
