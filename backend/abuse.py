"""Rate limits, in-flight caps and temporary blocks, kept in Redis.

All keys live under ``ephops:`` (operational state, never job data), carry a
TTL, and name clients and IPs only by HMAC, so Redis never holds an address.
Time is passed in (``now``), so tests can step it instead of sleeping.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import cast

from django.conf import settings
from redis.exceptions import WatchError

from backend.ephemeral import keys, scripts
from backend.ephemeral.connection import client
from backend.ephemeral.records import record_ttl

# GCRA (the generic cell rate algorithm): one key per subject holding the
# "theoretical arrival time"; a request is allowed while it would not push that
# time more than `burst` intervals into the future. Exact, O(1), one key.
_GCRA = """
local now = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local burst = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or ARGV[1])
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - burst * interval
if now < allow_at then return {0, allow_at - now} end
redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil(new_tat - now) + 1)
return {1, 0}
"""

# KEYS: counter, block. ARGV: threshold, window seconds, block seconds.
_REJECT = """
local n = redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
if n >= tonumber(ARGV[1]) then
  redis.call('SET', KEYS[2], '1', 'EX', ARGV[3])
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"""


@dataclass(frozen=True)
class Decision:
    allowed: bool
    retry_after: float = 0.0


def rate_limit(*, scope: str, subject: str, per_minute: int, now: float) -> Decision:
    """Allow ``per_minute`` requests a minute, in bursts of at most that many."""
    if per_minute <= 0:
        return Decision(True)
    interval_ms = 60_000 / per_minute
    allowed, wait_ms = scripts.run(
        _GCRA, keys=[keys.rate_key(scope, subject)], args=[now * 1000, interval_ms, per_minute]
    )
    return Decision(bool(allowed), float(wait_ms) / 1000)


def blocked_for(*, subjects: list[str]) -> float:
    """Seconds left on the longest block among ``subjects``; 0 when none."""
    conn = client()
    ttls = [conn.ttl(keys.block_key(subject)) for subject in subjects]
    return float(max([ttl for ttl in ttls if ttl > 0], default=0))


def note_rejected_upload(*, subjects: list[str]) -> bool:
    """Count a rejected upload for each subject; True when that blocked one of them."""
    blocked = False
    for subject in subjects:
        blocked |= bool(
            scripts.run(
                _REJECT,
                keys=[keys.rejections_key(subject), keys.block_key(subject)],
                args=[
                    settings.EPHEMERA_BLOCK_AFTER,
                    settings.EPHEMERA_BLOCK_SECONDS,
                    settings.EPHEMERA_BLOCK_SECONDS,
                ],
            )
        )
    return blocked


def note_accepted_upload(*, subjects: list[str]) -> None:
    """A valid upload resets the count of rejections in a row."""
    client().delete(*(keys.rejections_key(subject) for subject in subjects))


def in_flight(*, owner: str) -> int:
    """Jobs of this owner that are queued or running now.

    The set is cleaned lazily: members whose job ended or vanished are dropped
    here, so no state change elsewhere has to remember to update it.
    """
    key = keys.active_key(owner)
    members = client().smembers(key)
    ended = _ended(members)
    if ended:
        client().srem(key, *ended)
    return len(members) - len(ended)


def admit_in_flight(*, owner: str, job_id: str, cap: int) -> bool:
    """Count ``job_id`` (already in Redis) in flight, unless ``cap`` (0: none) is reached.

    Atomic, unlike a count then an add: concurrent submits of one client all
    counted the same jobs before any was added, and a burst of them got past
    the cap. The set is watched; a submit that added meanwhile makes this one
    count again.
    """
    key = keys.active_key(owner)
    with client().pipeline() as pipe:
        while True:
            try:
                pipe.watch(key)
                # A watching pipeline answers at once, until ``multi``.
                members = cast(set[bytes], pipe.smembers(key))
                ended = _ended(members)
                if cap and len(members) - len(ended) >= cap:
                    pipe.unwatch()
                    return False
                pipe.multi()
                if ended:
                    pipe.srem(key, *ended)
                pipe.sadd(key, job_id)
                pipe.expire(key, record_ttl())
                pipe.execute()
                return True
            except WatchError:
                continue


def _ended(members: set[bytes]) -> list[bytes]:
    """The members of an in-flight set whose job ended or vanished."""
    ids = list(members)
    reads = client().pipeline(transaction=False)
    for job_id in ids:
        reads.hget(keys.job_key(job_id.decode()), "status")
    statuses = reads.execute()
    return [
        job_id
        for job_id, status in zip(ids, statuses, strict=True)
        if status is None or status.decode() in keys.TERMINAL
    ]


def client_ip(remote_addr: str, forwarded_for: str) -> str:
    """The caller's address: X-Forwarded-For is believed only from trusted proxies.

    Walks the chain from the right (the hop nearest to us) while the current hop
    is a trusted proxy; the first untrusted address is the client. Anything
    further left was written by the client and may be forged.
    """
    trusted = _trusted_networks()
    address = remote_addr
    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    while hops and _is_trusted(address, trusted):
        candidate = hops.pop()
        if not _is_address(candidate):
            break  # garbage beyond our proxy: the proxy is the best we know
        address = candidate
    return address


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _trusted_networks() -> list[Network]:
    return [
        ipaddress.ip_network(entry, strict=False) for entry in settings.EPHEMERA_TRUSTED_PROXIES
    ]


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _is_trusted(text: str, trusted: list[Network]) -> bool:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return False
    return any(address in network for network in trusted)
