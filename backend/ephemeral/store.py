"""The ephemeral store: every byte Ephemera keeps about a job, all of it in Redis.

Keys (every one written with a TTL; a key of ours without one is a bug that the
sweeper deletes and counts):

- ``eph:job:{id}``    hash, non-identifying metadata only (owner as an HMAC,
                      task, status, timestamps, error code, result token hash)
- ``eph:in:{id}``     the sealed upload; taken with GETDEL by the claim
- ``eph:res:{sha256(token)}``  the sealed result; taken with GETDEL on download
- ``eph:evt:{id}``    a short stream of status changes that long polls block on

State changes that race (claim, finish, cancel) are single Lua scripts, so two
workers, or a worker and a DELETE, can never both win.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import secrets
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal, cast
from urllib.parse import urlsplit

import redis
from django.conf import settings
from redis.sentinel import Sentinel

from backend.ephemeral import crypto

PREFIX = "eph:"
TERMINAL = frozenset({"succeeded", "failed", "cancelled", "expired"})
Status = Literal["queued", "running", "succeeded", "failed", "cancelled", "expired"]
EVENTS_MAXLEN = 16


def job_key(job_id: str) -> str:
    return f"{PREFIX}job:{job_id}"


def input_key(job_id: str) -> str:
    return f"{PREFIX}in:{job_id}"


def result_key(token_hash: str) -> str:
    return f"{PREFIX}res:{token_hash}"


def events_key(job_id: str) -> str:
    return f"{PREFIX}evt:{job_id}"


@cache
def client() -> redis.Redis:
    """The process-wide Redis client for short commands."""
    return connect(socket_timeout=5)


@cache
def blocking_client() -> redis.Redis:
    """A client for long polls: its socket timeout outlasts the longest wait."""
    return connect(socket_timeout=settings.EPHEMERA_MAX_WAIT + 10)


def connect(*, socket_timeout: float) -> redis.Redis:
    """A client for ``REDIS_URL``: a plain ``redis://`` URL, or Sentinels to ask for the master."""
    url = settings.REDIS_URL
    options: dict[str, Any] = {
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": 3,
        "health_check_interval": 30,
    }
    if not url.startswith("sentinel://"):
        return redis.Redis.from_url(url, **options)
    sentinel = sentinel_config(url)
    return Sentinel(
        sentinel.hosts,
        sentinel_kwargs={"password": sentinel.password, "socket_timeout": 3},
        password=sentinel.password,
        db=sentinel.db,
    ).master_for(str(settings.REDIS_SENTINEL_MASTER), **options)


@dataclass(frozen=True)
class SentinelConfig:
    hosts: list[tuple[str, int]]
    password: str | None
    db: int


def sentinel_config(url: str) -> SentinelConfig:
    """Parse kombu's form: ``sentinel://:pw@h1:26379;sentinel://:pw@h2:26379/0``."""
    hosts: list[tuple[str, int]] = []
    password: str | None = None
    db = 0
    for part in url.split(";"):
        parsed = urlsplit(part.strip())
        hosts.append((parsed.hostname or "localhost", parsed.port or 26379))
        password = parsed.password or password
        if parsed.path.strip("/"):
            db = int(parsed.path.strip("/"))
    return SentinelConfig(hosts=hosts, password=password, db=db)


@cache
def keyring() -> crypto.Keyring:
    return crypto.Keyring.parse(settings.EPHEMERA_KEYS)


def owner_hash(client_id: object) -> str:
    """The owner of a job as stored in Redis: an HMAC, never the client's id."""
    key = hmac.new(settings.SECRET_KEY.encode(), b"ephemera/owner", hashlib.sha256).digest()
    return hmac.new(key, f"client:{client_id}".encode(), hashlib.sha256).hexdigest()


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_result_token(job_id: str) -> str:
    """A capability for one download: the job id (to find the record) and 256 random bits."""
    raw = uuid.UUID(job_id).bytes + secrets.token_bytes(32)
    return "rt_" + base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def job_id_from_token(token: str) -> str | None:
    if not token.startswith("rt_") or len(token) != 67:
        return None
    try:
        raw = base64.urlsafe_b64decode(token[3:] + "=")
    except ValueError:
        return None
    return str(uuid.UUID(bytes=raw[:16])) if len(raw) == 48 else None


def record_ttl() -> int:
    """How long a job record lives at most: queue time, run time, result time, grace."""
    return math.ceil(
        settings.EPHEMERA_INPUT_TTL
        + settings.EPHEMERA_TASK_HARD_LIMIT
        + settings.EPHEMERA_RESULT_TTL
        + settings.EPHEMERA_RECORD_GRACE
    )


@dataclass(frozen=True)
class JobRecord:
    id: str
    owner: str
    task: str
    status: Status
    params: dict[str, Any]
    format: str
    created_at: float
    expires_at: float
    started_at: float | None = None
    finished_at: float | None = None
    deadline: float | None = None
    error_code: str | None = None
    error_message: str | None = None
    result_token_hash: str | None = None
    result_content_type: str | None = None
    result_expires_at: float | None = None
    result_taken_at: float | None = None
    #: The token itself, sealed: only its owner, polling the job, gets to see it.
    result_token_sealed: str | None = None
    run_ms: int | None = None

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    @property
    def queued_ms(self) -> int | None:
        if self.started_at is None:
            return None
        return max(0, round((self.started_at - self.created_at) * 1000))

    @classmethod
    def from_redis(cls, job_id: str, raw: Mapping[bytes, bytes]) -> JobRecord:
        fields = {key.decode(): value.decode() for key, value in raw.items()}

        def number(name: str) -> float | None:
            value = fields.get(name)
            return float(value) if value else None

        return cls(
            id=job_id,
            owner=fields.get("owner", ""),
            task=fields.get("task", ""),
            status=cast(Status, fields.get("status", "expired")),
            params=json.loads(fields.get("params") or "{}"),
            format=fields.get("format", ""),
            created_at=number("created_at") or 0.0,
            expires_at=number("expires_at") or 0.0,
            started_at=number("started_at"),
            finished_at=number("finished_at"),
            deadline=number("deadline"),
            error_code=fields.get("error_code") or None,
            error_message=fields.get("error_message") or None,
            result_token_hash=fields.get("result_token_hash") or None,
            result_content_type=fields.get("result_content_type") or None,
            result_expires_at=number("result_expires_at"),
            result_taken_at=number("result_taken_at"),
            result_token_sealed=fields.get("result_token_sealed") or None,
            run_ms=int(fields["run_ms"]) if fields.get("run_ms") else None,
        )


# --- Lua: each state change is one atomic step --------------------------------

# KEYS: job, input, events. ARGV: now, deadline, record ttl.
# queued -> running and the input taken in the same step, so no other delivery
# can take it. A job found `running` means an earlier delivery took the input
# and its worker died: that job can no longer succeed, so it fails now.
_CLAIM = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return {'missing'} end
if status == 'queued' then
  local blob = redis.call('GETDEL', KEYS[2])
  if not blob then
    redis.call('HSET', KEYS[1], 'status', 'expired', 'finished_at', ARGV[1],
               'error_code', 'input_expired')
    redis.call('XADD', KEYS[3], 'MAXLEN', '~', 16, '*', 'status', 'expired')
    redis.call('EXPIRE', KEYS[3], ARGV[3])
    return {'input_expired'}
  end
  redis.call('HSET', KEYS[1], 'status', 'running', 'started_at', ARGV[1], 'deadline', ARGV[2])
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', 16, '*', 'status', 'running')
  redis.call('EXPIRE', KEYS[3], ARGV[3])
  return {'claimed', blob}
end
if status == 'running' then
  redis.call('HSET', KEYS[1], 'status', 'failed', 'finished_at', ARGV[1],
             'error_code', 'worker_lost',
             'error_message', 'The worker processing this job stopped; submit it again.')
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', 16, '*', 'status', 'failed')
  redis.call('EXPIRE', KEYS[3], ARGV[3])
  return {'lost'}
end
return {'ended'}
"""

# KEYS: job, events, result (or the job key again when there is no result).
# ARGV: expected status, new status, record ttl, result blob or '', result ttl,
#       then field/value pairs. Applies only while the job is still in the
#       expected status: a job cancelled or swept meanwhile stays as it is, and
#       its result is never stored.
_TRANSITION = """
if redis.call('HGET', KEYS[1], 'status') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[2], unpack(ARGV, 6))
redis.call('EXPIRE', KEYS[1], ARGV[3])
if ARGV[4] ~= '' then redis.call('SET', KEYS[3], ARGV[4], 'EX', ARGV[5]) end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', 16, '*', 'status', ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[3])
return 1
"""

# KEYS: job, input, events. ARGV: tombstone ttl, now.
# DELETE: purge the payloads and leave only a tombstone saying `cancelled`, so a
# queued delivery finds nothing to run and a running one cannot publish.
_CANCEL = """
local token_hash = redis.call('HGET', KEYS[1], 'result_token_hash')
local owner = redis.call('HGET', KEYS[1], 'owner')
local task = redis.call('HGET', KEYS[1], 'task') or ''
local created = redis.call('HGET', KEYS[1], 'created_at') or ARGV[2]
if not owner then return 0 end
if token_hash then redis.call('DEL', 'eph:res:' .. token_hash) end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
redis.call('HSET', KEYS[1], 'status', 'cancelled', 'owner', owner, 'task', task,
           'created_at', created, 'expires_at', ARGV[2], 'finished_at', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[1])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', 16, '*', 'status', 'cancelled')
redis.call('EXPIRE', KEYS[3], ARGV[1])
return 1
"""


# KEYS: job, events. ARGV: max deliveries, now, record ttl.
# The worker holding this job died. A running job has lost its input with that
# worker and fails now; a queued one is given back to the queue, at most
# ARGV[1] times, so a message that kills workers cannot circulate forever.
_LOST = """
local status = redis.call('HGET', KEYS[1], 'status')
if status == 'queued' then
  local n = redis.call('HINCRBY', KEYS[1], 'deliveries', 1)
  if n < tonumber(ARGV[1]) then return 0 end
elseif status ~= 'running' then
  return 0
end
redis.call('HSET', KEYS[1], 'status', 'failed', 'finished_at', ARGV[2],
           'error_code', 'worker_lost',
           'error_message', 'The worker processing this job stopped; submit it again.')
redis.call('XADD', KEYS[2], 'MAXLEN', '~', 16, '*', 'status', 'failed')
redis.call('EXPIRE', KEYS[2], ARGV[3])
return 1
"""


# KEYS: result, job, events. ARGV: now. Take the result once and note it on the
# record (only if the record still exists: HSET on a missing key would create a
# key without a TTL). The job has ended, so its event stream has served.
_TAKE = """
local blob = redis.call('GETDEL', KEYS[1])
if blob and redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('HSET', KEYS[2], 'result_taken_at', ARGV[1])
  redis.call('DEL', KEYS[3])
end
return blob
"""


@cache
def _scripts() -> dict[str, Any]:
    conn = client()
    return {
        "claim": conn.register_script(_CLAIM),
        "transition": conn.register_script(_TRANSITION),
        "cancel": conn.register_script(_CANCEL),
        "lost": conn.register_script(_LOST),
        "take": conn.register_script(_TAKE),
    }


# --- Operations ------------------------------------------------------------------


def create_job(
    *, job_id: str, owner: str, task: str, params: Mapping[str, Any], fmt: str, image: bytes
) -> JobRecord:
    """Seal the upload and write it with its record, atomically, both with TTLs."""
    now = time.time()
    input_ttl = settings.EPHEMERA_INPUT_TTL
    blob = crypto.seal(image, keyring=keyring(), purpose="in", subject=job_id)
    fields: dict[str | bytes, str] = {
        "owner": owner,
        "task": task,
        "status": "queued",
        "params": json.dumps(dict(params), sort_keys=True),
        "format": fmt,
        "created_at": repr(now),
        "expires_at": repr(now + input_ttl),
    }
    pipe = client().pipeline(transaction=True)
    pipe.set(input_key(job_id), blob, ex=input_ttl)
    pipe.hset(job_key(job_id), mapping=fields)
    pipe.expire(job_key(job_id), record_ttl())
    pipe.xadd(events_key(job_id), {"status": "queued"}, maxlen=EVENTS_MAXLEN)
    pipe.expire(events_key(job_id), record_ttl())
    pipe.execute()
    return JobRecord(
        id=job_id,
        owner=owner,
        task=task,
        status="queued",
        params=dict(params),
        format=fmt,
        created_at=now,
        expires_at=now + input_ttl,
    )


def discard_job(job_id: str) -> None:
    """Remove every key of a job that never reached the queue."""
    client().delete(job_key(job_id), input_key(job_id), events_key(job_id))


def get_job(job_id: str) -> JobRecord | None:
    raw = client().hgetall(job_key(job_id))
    return JobRecord.from_redis(job_id, raw) if raw else None


@dataclass(frozen=True)
class Claim:
    #: claimed; missing (no record: deleted); input_expired (queued too long);
    #: lost (an earlier delivery died holding it); ended (already terminal).
    outcome: Literal["claimed", "missing", "input_expired", "lost", "ended"]
    image: bytes | None = None


def claim_job(job_id: str) -> Claim:
    """Take a queued job and its decrypted upload, once across all workers."""
    now = time.time()
    deadline = now + settings.EPHEMERA_TASK_HARD_LIMIT + 30
    reply = _scripts()["claim"](
        keys=[job_key(job_id), input_key(job_id), events_key(job_id)],
        args=[repr(now), repr(deadline), record_ttl()],
    )
    outcome = reply[0].decode()
    if outcome != "claimed":
        return Claim(cast(Any, outcome))
    image = crypto.open_sealed(reply[1], keyring=keyring(), purpose="in", subject=job_id)
    return Claim("claimed", image)


def _transition(
    job_id: str,
    *,
    expected: Status,
    new: Status,
    fields: Mapping[str, str | int | float],
    ttl: int,
    result: tuple[str, bytes, int] | None = None,
) -> bool:
    pairs: list[str | bytes | int | float] = []
    for name, value in fields.items():
        pairs.extend((name, repr(value) if isinstance(value, float) else value))
    res_key, blob, res_ttl = result if result else (job_key(job_id), b"", 0)
    applied = _scripts()["transition"](
        keys=[job_key(job_id), events_key(job_id), res_key],
        args=[expected, new, ttl, blob, res_ttl, *pairs],
    )
    return bool(applied)


def publish_result(job_id: str, *, data: bytes, content_type: str, run_ms: int) -> str | None:
    """Seal the result under a new data key, store it and mark the job succeeded.

    Returns the single-use token, or None when the job was cancelled or swept
    while it ran (then nothing is stored).
    """
    now = time.time()
    result_ttl = settings.EPHEMERA_RESULT_TTL
    token = new_result_token(job_id)
    hashed = token_hash(token)
    blob = crypto.seal(data, keyring=keyring(), purpose="res", subject=job_id)
    applied = _transition(
        job_id,
        expected="running",
        new="succeeded",
        fields={
            "finished_at": now,
            "run_ms": run_ms,
            "result_token_hash": hashed,
            "result_token_sealed": base64.b64encode(
                crypto.seal(token.encode(), keyring=keyring(), purpose="tok", subject=job_id)
            ).decode(),
            "result_content_type": content_type,
            "result_expires_at": now + result_ttl,
            "expires_at": now + result_ttl,
        },
        ttl=result_ttl + settings.EPHEMERA_RECORD_GRACE,
        result=(result_key(hashed), blob, result_ttl),
    )
    return token if applied else None


def reveal_token(record: JobRecord) -> str | None:
    """The result token of a succeeded job, for its owner's poll."""
    if not record.result_token_sealed:
        return None
    blob = base64.b64decode(record.result_token_sealed)
    return crypto.open_sealed(blob, keyring=keyring(), purpose="tok", subject=record.id).decode()


def fail_job(job_id: str, *, code: str, message: str, expected: Status = "running") -> bool:
    return _transition(
        job_id,
        expected=expected,
        new="failed",
        fields={"finished_at": time.time(), "error_code": code, "error_message": message},
        ttl=settings.EPHEMERA_RECORD_GRACE + 60,
    )


def expire_job(job_id: str, *, expected: Status) -> bool:
    return _transition(
        job_id,
        expected=expected,
        new="expired",
        fields={"finished_at": time.time(), "error_code": "expired"},
        ttl=settings.EPHEMERA_RECORD_GRACE + 60,
    )


def record_lost_delivery(job_id: str, *, max_deliveries: int) -> bool:
    """The worker holding this job died; True when that ended the job ``failed``."""
    return bool(
        _scripts()["lost"](
            keys=[job_key(job_id), events_key(job_id)],
            args=[max_deliveries, repr(time.time()), record_ttl()],
        )
    )


def cancel_job(job_id: str) -> bool:
    """Purge input, result and events now; leave only a `cancelled` tombstone."""
    tombstone_ttl = math.ceil(settings.EPHEMERA_TASK_HARD_LIMIT + 60)
    return bool(
        _scripts()["cancel"](
            keys=[job_key(job_id), input_key(job_id), events_key(job_id)],
            args=[tombstone_ttl, repr(time.time())],
        )
    )


@dataclass(frozen=True)
class TakenResult:
    data: bytes
    content_type: str


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
    job_id = job_id_from_token(token)
    record = get_job(job_id) if job_id else None
    hashed = token_hash(token)
    if record is None or job_id is None or not hmac.compare_digest(record.owner, owner):
        raise ResultUnknown
    if not record.result_token_hash or not hmac.compare_digest(record.result_token_hash, hashed):
        raise ResultUnknown
    blob = _scripts()["take"](
        keys=[result_key(hashed), job_key(job_id), events_key(job_id)], args=[repr(time.time())]
    )
    if blob is None:
        raise ResultGone
    data = crypto.open_sealed(blob, keyring=keyring(), purpose="res", subject=job_id)
    return TakenResult(data=data, content_type=record.result_content_type or "")


def wait_for_end(job_id: str, *, timeout: float) -> JobRecord | None:
    """Block until the job ends or ``timeout`` passes, without polling.

    Reads the job's event stream from its start and blocks for the next entry;
    an event written between reading the record and blocking is still seen,
    because the read position only moves past events already read.
    """
    deadline = time.monotonic() + timeout
    last_id = "0-0"
    blocking = blocking_client()
    while True:
        record = get_job(job_id)
        remaining = deadline - time.monotonic()
        if record is None or record.terminal or remaining <= 0:
            return record
        reply = blocking.xread(
            {events_key(job_id): last_id}, block=max(1, int(remaining * 1000)), count=EVENTS_MAXLEN
        )
        if reply:
            last_id = reply[0][1][-1][0].decode()


def scan_keys(pattern: str) -> Iterator[bytes]:
    return cast(Iterator[bytes], client().scan_iter(match=pattern, count=500))
