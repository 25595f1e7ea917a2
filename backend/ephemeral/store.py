"""Job operations on the ephemeral store: every byte Ephemera keeps about a job.

Keys and statuses are in ``keys``, the record schema and lifetimes in
``records``, the atomic steps in ``scripts``. These functions are the only
writers of job data; ``backend.jobs.lifecycle`` decides which one to call and
counts what happened.
"""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from django.conf import settings

from backend.ephemeral import crypto, keys, scripts, tokens
from backend.ephemeral.connection import blocking_client, client
from backend.ephemeral.keys import EVENTS_MAXLEN, Status
from backend.ephemeral.records import ACCOUNTED, JobRecord, record_ttl
from backend.imaging import ImageHeader


def create_job(
    *,
    job_id: str,
    owner: str,
    task: str,
    params: Mapping[str, Any],
    header: ImageHeader | None,
    image: bytes,
    reference: bytes | None = None,
    webhook_sealed: str | None = None,
) -> JobRecord:
    """Seal the upload(s) and write them with the record, atomically, all with TTLs.

    Without a ``header`` the uploads are end-to-end envelopes (``backend.e2e``):
    already encrypted for the workers, they are stored as they came.
    """
    now = time.time()
    input_ttl = settings.EPHEMERA_INPUT_TTL
    ring = crypto.keyring()
    e2e = header is None
    record = JobRecord(
        id=job_id,
        owner=owner,
        task=task,
        status="queued",
        params=dict(params),
        format="" if header is None else header.format,
        created_at=now,
        expires_at=now + input_ttl,
        width=0 if header is None else header.width,
        height=0 if header is None else header.height,
        webhook_sealed=webhook_sealed,
        e2e=e2e,
    )

    def sealed(data: bytes, purpose: str) -> bytes:
        return data if e2e else crypto.seal(data, keyring=ring, purpose=purpose, subject=job_id)

    pipe = client().pipeline(transaction=True)
    pipe.set(keys.input_key(job_id), sealed(image, "in"), ex=input_ttl)
    if reference is not None:
        pipe.set(keys.reference_key(job_id), sealed(reference, "ref"), ex=input_ttl)
    fields: dict[str | bytes, bytes | float | int | str] = {
        "owner": owner,
        "task": task,
        "status": record.status,
        "params": json.dumps(record.params, sort_keys=True),
        "format": record.format,
        "width": record.width,
        "height": record.height,
        "created_at": repr(now),
        "expires_at": repr(record.expires_at),
    }
    if e2e:
        fields["e2e"] = 1
    pipe.hset(keys.job_key(job_id), mapping=fields)
    if webhook_sealed is not None:
        pipe.hset(keys.job_key(job_id), "webhook_sealed", webhook_sealed)
    pipe.expire(keys.job_key(job_id), record_ttl())
    pipe.xadd(keys.events_key(job_id), {"status": record.status}, maxlen=EVENTS_MAXLEN)
    pipe.expire(keys.events_key(job_id), record_ttl())
    pipe.execute()
    return record


def discard_job(job_id: str) -> None:
    """Remove every key of a job that never reached the queue."""
    client().delete(*_job_keys(job_id))


def _job_keys(job_id: str) -> list[str]:
    return [
        keys.job_key(job_id),
        keys.events_key(job_id),
        keys.input_key(job_id),
        keys.reference_key(job_id),
    ]


def get_job(job_id: str) -> JobRecord | None:
    raw = client().hgetall(keys.job_key(job_id))
    return JobRecord.from_redis(job_id, raw) if raw else None


@dataclass(frozen=True)
class Claim:
    """What a claim found: the job taken (with its sealed uploads), or why not.

    ``found`` is ``claimed``, a status other than ``queued`` (the job is not
    there to take), ``no_input`` (queued, but its upload expired) or
    ``missing`` (no record at all).
    """

    found: str
    record: JobRecord | None = None
    sealed_image: bytes | None = None
    sealed_reference: bytes | None = None

    def open_image(self) -> bytes:
        """The upload; for an end-to-end job, its envelope (``workers.e2e`` opens it)."""
        if self.record is None or self.sealed_image is None:
            raise LookupError("nothing was claimed")
        if self.record.e2e:
            return self.sealed_image
        return _open(self.sealed_image, purpose="in", job_id=self.record.id)

    def open_reference(self) -> bytes | None:
        if not self.sealed_reference or self.record is None:
            return None
        if self.record.e2e:
            return self.sealed_reference
        return _open(self.sealed_reference, purpose="ref", job_id=self.record.id)


def _open(blob: bytes, *, purpose: str, job_id: str) -> bytes:
    return crypto.open_sealed(blob, keyring=crypto.keyring(), purpose=purpose, subject=job_id)


def claim_job(job_id: str, *, deadline: float) -> Claim:
    """Move a queued job to running and take its sealed upload(s), once across all workers."""
    reply = scripts.run(
        scripts.CLAIM,
        keys=_job_keys(job_id),
        args=["queued", "running", repr(time.time()), repr(deadline), record_ttl(), EVENTS_MAXLEN],
    )
    found = reply[0].decode() or "missing"
    if found != "claimed":
        return Claim(found)
    return Claim(
        "claimed",
        record=JobRecord.from_reply(job_id, reply[3]),
        sealed_image=reply[1],
        sealed_reference=reply[2] or None,
    )


def transition(
    job_id: str,
    *,
    expected: Sequence[Status],
    new: Status,
    fields: Mapping[str, str | int | float],
    ttl: int,
    result: tuple[str, bytes, int] | None = None,
    purge_inputs: bool = False,
    purge_result: str | None = None,
) -> JobRecord | None:
    """Change the job's status if it is one of ``expected``; the record after, or None."""
    pairs = _field_pairs(fields)
    result_key, blob, result_ttl = result if result else (keys.job_key(job_id), b"", 0)
    extra = [keys.input_key(job_id), keys.reference_key(job_id)] if purge_inputs else []
    if purge_result:
        extra.append(keys.result_key(purge_result))
    reply = scripts.run(
        scripts.TRANSITION,
        keys=[keys.job_key(job_id), keys.events_key(job_id), result_key, *extra],
        args=[",".join(expected), new, ttl, EVENTS_MAXLEN, blob, result_ttl, *pairs],
    )
    return JobRecord.from_reply(job_id, reply) if reply else None


def _field_pairs(fields: Mapping[str, str | int | float]) -> list[str | int]:
    """A hash's fields as a script's arguments; floats in full (``repr``)."""
    pairs: list[str | int] = []
    for name, value in fields.items():
        pairs.extend((name, repr(value) if isinstance(value, float) else value))
    return pairs


@dataclass(frozen=True)
class Published:
    record: JobRecord
    token: str


def publish_result(job_id: str, *, data: bytes, content_type: str, run_ms: int) -> Published | None:
    """Seal the result under a new data key, store it and mark the job succeeded.

    None when the job was cancelled or swept while it ran: then nothing is stored.
    """
    now = time.time()
    result_ttl = settings.EPHEMERA_RESULT_TTL
    token = tokens.new_token(job_id)
    hashed = tokens.token_hash(token)
    blob = crypto.seal(data, keyring=crypto.keyring(), purpose="res", subject=job_id)
    record = transition(
        job_id,
        expected=("running",),
        new="succeeded",
        fields={
            "finished_at": now,
            "run_ms": run_ms,
            "result_token_hash": hashed,
            "result_token_sealed": tokens.seal_token(token, job_id=job_id),
            "result_content_type": content_type,
            "result_expires_at": now + result_ttl,
            "expires_at": now + result_ttl,
        },
        ttl=result_ttl + settings.EPHEMERA_RECORD_GRACE,
        result=(keys.result_key(hashed), blob, result_ttl),
    )
    return Published(record, token) if record else None


def reveal_token(record: JobRecord) -> str | None:
    """The result token of a succeeded job, for its owner's poll."""
    if not record.result_token_sealed:
        return None
    return tokens.open_token(record.result_token_sealed, job_id=record.id)


def cancel_job(job_id: str, *, tombstone_ttl: int) -> JobRecord | None:
    """Purge uploads, result and events now; leave a tombstone: `cancelled` for an
    active job, its own end for one that had ended.

    Returns the record as it was before, or None when there was no job.
    """
    reply = scripts.run(
        scripts.CANCEL,
        keys=_job_keys(job_id),
        args=[
            "cancelled",
            tombstone_ttl,
            repr(time.time()),
            keys.RESULT.prefix,
            EVENTS_MAXLEN,
            ",".join(sorted(keys.TERMINAL)),
            ACCOUNTED,
        ],
    )
    return JobRecord.from_reply(job_id, reply) if reply else None


def record_lost(record: JobRecord, *, ttl: int) -> bool:
    """Write back the record of a job Redis lost, as ``reconcile`` ended it, unless
    Redis has one again; True when written. Not ``accounted`` until its end is counted."""
    fields: dict[str, str | float] = {
        "owner": record.owner,
        "task": record.task,
        "status": record.status,
        "params": "{}",
        "created_at": record.created_at,
        "expires_at": record.expires_at,
        "finished_at": record.finished_at or time.time(),
        "error_code": record.error_code or "",
        "error_message": record.error_message or "",
    }
    if record.webhook_sealed:
        fields["webhook_sealed"] = record.webhook_sealed
    pairs = _field_pairs(fields)
    written = scripts.run(
        scripts.RECORD_LOST,
        keys=[keys.job_key(record.id), keys.events_key(record.id)],
        args=[ttl, EVENTS_MAXLEN, *pairs],
    )
    return bool(written)


def count_delivery(job_id: str) -> int:
    """Count a delivery that died before claiming; -1 when the job is not queued."""
    return int(scripts.run(scripts.COUNT_DELIVERY, keys=[keys.job_key(job_id)], args=["queued"]))


@dataclass(frozen=True)
class TakenResult:
    job_id: str
    data: bytes
    content_type: str
    #: The data is an end-to-end result envelope that only the client opens.
    e2e: bool = False


class ResultUnknown(LookupError):
    """No job has ever issued this token (or it was never valid)."""


class ResultGone(LookupError):
    """The token was valid, but its result was downloaded already or expired."""


def take_result(token: str, *, owner: str) -> TakenResult:
    """Download a result once: GETDEL, then decrypt in memory.

    The token alone is not enough: the record must belong to ``owner``, so a
    leaked result URL is useless without its owner's API key, and another
    client's attempt does not burn the single use.
    """
    job_id = tokens.job_id_from_token(token)
    record = get_job(job_id) if job_id else None
    hashed = tokens.token_hash(token)
    if record is None or not hmac.compare_digest(record.owner, owner):
        raise ResultUnknown
    if not record.result_token_hash or not hmac.compare_digest(record.result_token_hash, hashed):
        raise ResultUnknown
    blob = scripts.run(
        scripts.TAKE,
        keys=[keys.result_key(hashed), keys.job_key(record.id), keys.events_key(record.id)],
        args=[repr(time.time())],
    )
    if blob is None:
        raise ResultGone
    data = _open(blob, purpose="res", job_id=record.id)
    return TakenResult(
        job_id=record.id,
        data=data,
        content_type=record.result_content_type or "",
        e2e=record.e2e,
    )


def wait_for_end(
    job_id: str, *, timeout: float, record: JobRecord | None = None
) -> JobRecord | None:
    """Block until the job ends or ``timeout`` passes, without polling.

    Reads the job's event stream from its start and blocks for the next entry;
    an event written between reading the record and blocking is still seen,
    because the read position only moves past events already read. ``record``
    is the caller's fresh copy, which saves the first read.
    """
    deadline = time.monotonic() + timeout
    last_id = "0-0"
    blocking = blocking_client()
    while True:
        if record is None:
            record = get_job(job_id)
        remaining = deadline - time.monotonic()
        if record is None or record.terminal or remaining <= 0:
            return record
        reply = blocking.xread(
            {keys.events_key(job_id): last_id},
            block=max(1, int(remaining * 1000)),
            count=EVENTS_MAXLEN,
        )
        if reply:
            last_id = reply[0][1][-1][0].decode()
        record = None


def scan_keys(pattern: str) -> Iterator[bytes]:
    return cast(Iterator[bytes], client().scan_iter(match=pattern, count=500))
