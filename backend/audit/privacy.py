"""The privacy audit: measure on the running system what the design promises.

Every check reads live state (Redis's own configuration and keys, the settings
this process runs with) rather than what the code intends, so a Redis started
with snapshots on, or a stray writer putting plaintext under ``eph:``, shows up.
The command ``privacy_audit``, the beat task and ``GET /api/v1/privacy`` share
``run_privacy_audit``.

Findings are aggregated per check and kind, and their details are fixed texts:
never a key name, an id, a value or a secret, because the report is printed,
logged and counted. Payloads are never decrypted: the audit checks the framing
of sealed blobs, so it never holds a photo.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import redis
from django.conf import settings
from django.core.checks import Tags, run_checks
from django.db import Error as DatabaseError
from django.utils import timezone

from backend.audit import checks
from backend.audit.services import keyring_first_seen, keyring_observe
from backend.ephemeral import crypto, keys
from backend.ephemeral.connection import client
from backend.ephemeral.records import FIELDS, record_ttl, webhook_event_ttl
from ephemera_client import envelope

logger = logging.getLogger(__name__)

#: Every check, in report order; ``PrivacyReport.counts`` names each one.
CHECKS: tuple[str, ...] = (
    "redis_unreachable",
    "redis_config_unverifiable",
    "redis_persistence_on",
    "redis_key_without_ttl",
    "redis_ttl_too_long",
    "redis_unknown_key",
    "redis_value_format",
    "debug_on",
    "flower_auth_missing",
    "flower_auth_weak",
    "secret_key_weak",
    "keyring_weak",
)

#: Enough of a string payload to check the sealed-blob framing (magic, kid,
#: nonces, wrapped key) without reading megabytes of ciphertext.
_HEAD_BYTES = 512
_STREAM_ENTRIES = 256
_BATCH = 200


@dataclass(frozen=True)
class Finding:
    check: str
    #: What is wrong and what to do, in fixed words: no key, id, value or secret.
    detail: str
    #: How many keys (or settings) showed it.
    count: int = 1

    def as_dict(self) -> dict[str, Any]:
        return {"check": self.check, "detail": self.detail, "count": self.count}


@dataclass(frozen=True)
class RedisFacts:
    reachable: bool
    #: None when Redis refused ``CONFIG GET``.
    persistence_off: bool | None
    keys_scanned: int
    #: The largest TTL seen right now per namespace (``job``, ``evt``, ``in``,
    #: ``res``), None where no such key exists.
    max_ttl_seen: dict[str, int | None]


@dataclass(frozen=True)
class PrivacyReport:
    measured_at: datetime
    findings: tuple[Finding, ...]
    redis: RedisFacts
    input_ttl: int
    result_ttl: int
    record_ttl: int
    isolate_jobs: bool
    #: When the active key of EPHEMERA_KEYS was first seen active; None if unknown.
    active_key_since: datetime | None

    @property
    def ok(self) -> bool:
        return not self.findings

    @property
    def active_key_age_seconds(self) -> int | None:
        if self.active_key_since is None:
            return None
        return max(0, int((self.measured_at - self.active_key_since).total_seconds()))

    @property
    def finding_count(self) -> int:
        return sum(finding.count for finding in self.findings)

    def counts(self) -> dict[str, int]:
        """Findings per check, every check named (zero included) so gauges reset."""
        totals = dict.fromkeys(CHECKS, 0)
        for finding in self.findings:
            totals[finding.check] = totals.get(finding.check, 0) + finding.count
        return totals


class _Tally:
    """Counts findings by (check, detail); reports them in ``CHECKS`` order."""

    def __init__(self) -> None:
        self._counts: Counter[tuple[str, str]] = Counter()

    def add(self, check: str, detail: str, count: int = 1) -> None:
        self._counts[(check, detail)] += count

    def findings(self) -> tuple[Finding, ...]:
        order = {check: index for index, check in enumerate(CHECKS)}
        items = sorted(self._counts.items(), key=lambda item: order.get(item[0][0], len(order)))
        return tuple(Finding(check, detail, count) for (check, detail), count in items)


#: Deployment checks (Django's own and ``backend.audit.checks``) reported as
#: findings of the audit, by message id.
SETTINGS_CHECKS: dict[str, str] = {
    "security.W018": "debug_on",
    "security.W009": "secret_key_weak",
    checks.FLOWER_AUTH_MISSING: "flower_auth_missing",
    checks.FLOWER_AUTH_WEAK: "flower_auth_weak",
    checks.KEYRING_WEAK: "keyring_weak",
}


def run_privacy_audit(
    *, conn: redis.Redis | None = None, now: datetime | None = None, observe_keyring: bool = False
) -> PrivacyReport:
    """Run every check against the live system and return findings and facts.

    Reads only, unless ``observe_keyring``: then (the beat task) it also notes
    in the database that the active key is active now, which is what the key's
    age is measured from.
    """
    now = timezone.now() if now is None else now
    tally = _Tally()
    keyring = _keyring()
    kids = frozenset(keyring.keys) if keyring else None
    facts = _audit_redis(client() if conn is None else conn, kids, tally)
    for message in run_checks(include_deployment_checks=True, tags=[Tags.security]):
        check = SETTINGS_CHECKS.get(message.id or "")
        if check:
            tally.add(check, str(message.msg))
    return PrivacyReport(
        measured_at=now,
        findings=tally.findings(),
        redis=facts,
        input_ttl=settings.EPHEMERA_INPUT_TTL,
        result_ttl=settings.EPHEMERA_RESULT_TTL,
        record_ttl=record_ttl(),
        isolate_jobs=bool(settings.EPHEMERA_ISOLATE_JOBS),
        active_key_since=_active_key_since(keyring, now, observe=observe_keyring),
    )


def _keyring() -> crypto.Keyring | None:
    try:
        return crypto.Keyring.parse(settings.EPHEMERA_KEYS)
    except crypto.KeyringError:
        return None


# --- Redis ----------------------------------------------------------------------


def _max_ttls() -> dict[str, int]:
    """The largest TTL each namespace may have, from the settings that set it."""
    bounds = {
        "record": record_ttl(),
        "input": settings.EPHEMERA_INPUT_TTL,
        "result": settings.EPHEMERA_RESULT_TTL,
        "webhook": webhook_event_ttl(),
    }
    return {name: bounds[ns.ttl_bound] for name, ns in keys.NAMESPACES.items()}


def _audit_redis(conn: redis.Redis, kids: frozenset[str] | None, tally: _Tally) -> RedisFacts:
    try:
        persistence_off = _audit_persistence(conn, tally)
        keys_scanned, max_ttl_seen = _audit_keys(conn, kids, tally)
    except redis.RedisError as exc:
        logger.warning("privacy_audit_redis_error", extra={"error_type": type(exc).__name__})
        tally.add(
            "redis_unreachable",
            f"Redis failed the audit's commands ({type(exc).__name__}): nothing about its "
            "keys or persistence was measured; check REDIS_URL and the server",
        )
        return RedisFacts(reachable=False, persistence_off=None, keys_scanned=0, max_ttl_seen={})
    return RedisFacts(
        reachable=True,
        persistence_off=persistence_off,
        keys_scanned=keys_scanned,
        max_ttl_seen=max_ttl_seen,
    )


def _audit_persistence(conn: redis.Redis, tally: _Tally) -> bool | None:
    try:
        save = str(conn.config_get("save").get("save", "")).strip()
        appendonly = str(conn.config_get("appendonly").get("appendonly", "no")).strip().lower()
    except redis.ResponseError:
        # Managed Redis services often rename or forbid CONFIG: say so, do not guess.
        tally.add(
            "redis_config_unverifiable",
            "Redis refused CONFIG GET, so whether it writes snapshots or an AOF to disk "
            "cannot be measured; allow CONFIG GET to the audit or verify by hand",
        )
        return None
    if save:
        tally.add(
            "redis_persistence_on",
            "RDB snapshots are on (CONFIG GET save is not empty): sealed payloads can "
            "outlive their TTL on disk; run Redis with --save ''",
        )
    if appendonly == "yes":
        tally.add(
            "redis_persistence_on",
            "the append-only file is on: sealed payloads can outlive their TTL on disk; "
            "run Redis with --appendonly no",
        )
    return not save and appendonly != "yes"


_T = TypeVar("_T")


def _batched(items: Iterable[_T], size: int) -> Iterator[list[_T]]:
    batch: list[_T] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _audit_keys(
    conn: redis.Redis, kids: frozenset[str] | None, tally: _Tally
) -> tuple[int, dict[str, int | None]]:
    max_ttls = _max_ttls()
    max_seen: dict[str, int | None] = dict.fromkeys(keys.NAMESPACES)
    scanned = 0
    for batch in _batched(conn.scan_iter(match=f"{keys.JOB_TREE}*", count=500), _BATCH):
        # Two round trips per batch: type and TTL of every key, then the values.
        pipe = conn.pipeline(transaction=False)
        for key in batch:
            pipe.type(key)
            pipe.ttl(key)
        replies = pipe.execute()
        reads: list[tuple[str, bytes]] = []
        pipe = conn.pipeline(transaction=False)
        for index, key in enumerate(batch):
            redis_type, ttl = replies[2 * index], int(replies[2 * index + 1])
            if ttl == -2 or redis_type == b"none":
                continue  # expired or deleted since the scan listed it
            scanned += 1
            ns_name = _audit_key(
                key, redis_type, ttl, max_ttls=max_ttls, max_seen=max_seen, tally=tally
            )
            if ns_name is None:
                continue
            if redis_type == b"string":
                pipe.getrange(key, 0, _HEAD_BYTES - 1)
            elif redis_type == b"hash":
                pipe.hgetall(key)
            else:
                pipe.xrange(key, count=_STREAM_ENTRIES)
            reads.append((ns_name, redis_type))
        for (ns_name, redis_type), value in zip(reads, pipe.execute(), strict=True):
            _audit_value(ns_name, redis_type, value, kids, tally)
    return scanned, max_seen


def _audit_key(
    key: bytes,
    redis_type: bytes,
    ttl: int,
    *,
    max_ttls: dict[str, int],
    max_seen: dict[str, int | None],
    tally: _Tally,
) -> str | None:
    """Check a key's name, TTL and type; return its namespace if its value is to be read."""
    ns_name, _, suffix = key.decode(errors="replace").removeprefix(keys.JOB_TREE).partition(":")
    namespace = keys.NAMESPACES.get(ns_name)
    where = namespace.prefix if namespace else "an unknown eph: namespace"
    if ttl == -1:
        tally.add(
            "redis_key_without_ttl",
            f"keys under {where} have no TTL and would live forever; the sweeper "
            "deletes them within a minute, but find the writer",
        )
    if namespace is None:
        tally.add(
            "redis_unknown_key",
            "keys under an eph: namespace the service does not write; "
            "find the writer and move it out of eph:",
        )
        return None
    if not namespace.suffix.match(suffix):
        tally.add(
            "redis_unknown_key",
            f"keys under {where} whose name is not {namespace.suffix_kind}: "
            "a key name may carry user data",
        )
    if ttl >= 0:
        seen = max_seen[ns_name]
        max_seen[ns_name] = ttl if seen is None else max(seen, ttl)
        if ttl > max_ttls[ns_name]:
            tally.add(
                "redis_ttl_too_long",
                f"keys under {where} have a TTL above the configured maximum of "
                f"{max_ttls[ns_name]}s",
            )
    if redis_type.decode(errors="replace") != namespace.redis_type:
        tally.add(
            "redis_value_format",
            f"keys under {where} are a Redis {redis_type.decode()}, not a {namespace.redis_type}",
        )
        return None
    return ns_name


def _audit_value(
    ns_name: str, redis_type: bytes, value: Any, kids: frozenset[str] | None, tally: _Tally
) -> None:
    where = keys.NAMESPACES[ns_name].prefix
    if redis_type == b"string":
        if not value:
            return  # deleted between the listing and the read
        upload = ns_name in (keys.INPUT.name, keys.REFERENCE.name)
        problem = _blob_problem(value, kids, upload=upload)
        if problem:
            tally.add("redis_value_format", f"values under {where} {problem}")
    elif redis_type == b"hash":
        for problem in _job_problems(value):
            tally.add("redis_value_format", f"job records {problem}")
    elif any(
        set(entry) != {b"status"} or entry[b"status"].decode(errors="replace") not in keys.STATUSES
        for _, entry in value
    ):
        tally.add("redis_value_format", f"streams under {where} hold entries other than a status")


NOT_SEALED = "are not sealed blobs (plaintext or a foreign format); find the writer"


def _blob_problem(blob: bytes, kids: frozenset[str] | None, *, upload: bool) -> str | None:
    if upload and envelope.is_envelope(blob):
        # An end-to-end upload is stored as it came: HPKE ciphertext for the workers.
        try:
            envelope.parse_upload(blob)
        except envelope.EnvelopeMalformed:
            return NOT_SEALED
        return None
    try:
        parsed = crypto.parse(blob)
    except crypto.DecryptionError:
        return NOT_SEALED
    if kids is not None and parsed.kid not in kids:
        return "are sealed under a key id missing from EPHEMERA_KEYS and can never open"
    return None


def _job_problems(raw: dict[bytes, bytes]) -> Iterator[str]:
    if not raw:
        return
    values = {key.decode(errors="replace"): value for key, value in raw.items()}
    if set(values) - FIELDS:
        yield "hold fields outside the record schema; find the writer"
    if not keys.HEX64_PATTERN.match(values.get("owner", b"").decode(errors="replace")):
        yield "name their owner by something other than an HMAC"
    if values.get("status", b"").decode(errors="replace") not in keys.STATUSES:
        yield "hold an unknown status"
    token_hash = values.get("result_token_hash")
    if token_hash and not keys.HEX64_PATTERN.match(token_hash.decode(errors="replace")):
        yield "hold a result token hash that is not a SHA-256"
    sealed = values.get("result_token_sealed")
    if sealed and not _is_sealed_base64(sealed):
        yield "hold a result token that is not sealed"


def _is_sealed_base64(text: bytes) -> bool:
    try:
        crypto.parse(base64.b64decode(text, validate=True))
    except (binascii.Error, ValueError, crypto.DecryptionError):
        return False
    return True


# --- Keys -------------------------------------------------------------------------


def _active_key_since(
    keyring: crypto.Keyring | None, now: datetime, *, observe: bool
) -> datetime | None:
    if keyring is None:
        return None
    key = keyring.keys[keyring.active]
    try:
        if observe:
            return keyring_observe(kid=keyring.active, key=key, now=now)
        return keyring_first_seen(kid=keyring.active, key=key)
    except DatabaseError as exc:
        # The age is a fact of the report, not a check: report it unknown.
        logger.warning("privacy_audit_keyring_unrecorded", extra={"error_type": type(exc).__name__})
        return None
