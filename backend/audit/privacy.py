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
import re
import string
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, TypeVar

import redis
from django.conf import settings
from django.db import Error as DatabaseError
from django.utils import timezone

from backend.audit.services import keyring_observe
from backend.ephemeral import crypto, store

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

STATUSES = frozenset({"queued", "running", "succeeded", "failed", "cancelled", "expired"})
#: The fields a job hash may hold: the record's own, plus the Lua scripts' counter.
JOB_FIELDS = frozenset(f.name for f in fields(store.JobRecord)) - {"id"} | {"deliveries"}
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
#: Enough of a string payload to check the sealed-blob framing (magic, kid,
#: nonces, wrapped key) without reading megabytes of ciphertext.
_HEAD_BYTES = 512
_STREAM_ENTRIES = 256
_BATCH = 200

MIN_FLOWER_PASSWORD = 16
#: Defaults seen in tutorials and example files; compared case-insensitively.
_COMMON_PASSWORDS = frozenset(
    {
        "admin",
        "password",
        "changeme",
        "change_me",
        "secret",
        "flower",
        "letmein",
        "passwordpassword",
        "changemechangeme",
        "0123456789abcdef",
        "1234567890123456",
    }
)
_DEFAULT_MARKERS = ("changeme", "change_me", "change-me", "password", "example")
#: 32-byte test keys that appear in documentation and test suites.
_KNOWN_TEST_KEYS = frozenset(
    {
        bytes(range(32)),
        bytes(range(1, 33)),
        bytes(range(31, -1, -1)),
        b"0123456789abcdef0123456789abcdef",
        b"01234567890123456789012345678901",
    }
)
#: A uniformly random 32-byte key has about 30 distinct byte values; fewer than
#: this many happens by chance with probability far below 1e-15.
_MIN_DISTINCT_KEY_BYTES = 16
_PRINTABLE = frozenset(string.printable.encode())


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


def run_privacy_audit(
    *, conn: redis.Redis | None = None, now: datetime | None = None
) -> PrivacyReport:
    """Run every check against the live system and return findings and facts."""
    now = timezone.now() if now is None else now
    tally = _Tally()
    keyring = _audit_keyring(tally)
    kids = frozenset(keyring.keys) if keyring else None
    facts = _audit_redis(store.client() if conn is None else conn, kids, tally)
    _audit_debug(tally)
    _audit_flower(tally)
    _audit_secret_key(tally)
    return PrivacyReport(
        measured_at=now,
        findings=tally.findings(),
        redis=facts,
        input_ttl=settings.EPHEMERA_INPUT_TTL,
        result_ttl=settings.EPHEMERA_RESULT_TTL,
        record_ttl=store.record_ttl(),
        isolate_jobs=bool(settings.EPHEMERA_ISOLATE_JOBS),
        active_key_since=_active_key_since(keyring, now),
    )


# --- Redis ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Namespace:
    redis_type: bytes
    max_ttl: int
    name: re.Pattern[str]
    name_kind: str


def _namespaces() -> dict[str, _Namespace]:
    return {
        "job": _Namespace(b"hash", store.record_ttl(), _UUID, "a job id"),
        "evt": _Namespace(b"stream", store.record_ttl(), _UUID, "a job id"),
        "in": _Namespace(b"string", settings.EPHEMERA_INPUT_TTL, _UUID, "a job id"),
        "res": _Namespace(b"string", settings.EPHEMERA_RESULT_TTL, _HEX64, "a token hash"),
    }


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
    namespaces = _namespaces()
    max_seen: dict[str, int | None] = dict.fromkeys(namespaces)
    scanned = 0
    for batch in _batched(conn.scan_iter(match=f"{store.PREFIX}*", count=500), _BATCH):
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
                key, redis_type, ttl, namespaces=namespaces, max_seen=max_seen, tally=tally
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
    namespaces: dict[str, _Namespace],
    max_seen: dict[str, int | None],
    tally: _Tally,
) -> str | None:
    """Check a key's name, TTL and type; return its namespace if its value is to be read."""
    ns_name, _, suffix = key.decode(errors="replace").removeprefix(store.PREFIX).partition(":")
    namespace = namespaces.get(ns_name)
    where = f"eph:{ns_name}:" if namespace else "an unknown eph: namespace"
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
    if not namespace.name.match(suffix):
        tally.add(
            "redis_unknown_key",
            f"keys under {where} whose name is not {namespace.name_kind}: "
            "a key name may carry user data",
        )
    if ttl >= 0:
        seen = max_seen[ns_name]
        max_seen[ns_name] = ttl if seen is None else max(seen, ttl)
        if ttl > namespace.max_ttl:
            tally.add(
                "redis_ttl_too_long",
                f"keys under {where} have a TTL above the configured maximum of "
                f"{namespace.max_ttl}s",
            )
    if redis_type != namespace.redis_type:
        tally.add(
            "redis_value_format",
            f"keys under {where} are a Redis {redis_type.decode()}, "
            f"not a {namespace.redis_type.decode()}",
        )
        return None
    return ns_name


def _audit_value(
    ns_name: str, redis_type: bytes, value: Any, kids: frozenset[str] | None, tally: _Tally
) -> None:
    where = f"eph:{ns_name}:"
    if redis_type == b"string":
        if not value:
            return  # deleted between the listing and the read
        problem = _blob_problem(value, kids)
        if problem:
            tally.add("redis_value_format", f"values under {where} {problem}")
    elif redis_type == b"hash":
        for problem in _job_problems(value):
            tally.add("redis_value_format", f"job records {problem}")
    elif any(
        set(entry) != {b"status"} or entry[b"status"].decode(errors="replace") not in STATUSES
        for _, entry in value
    ):
        tally.add("redis_value_format", f"streams under {where} hold entries other than a status")


def _blob_problem(blob: bytes, kids: frozenset[str] | None) -> str | None:
    try:
        parsed = crypto.parse(blob)
    except crypto.DecryptionError:
        return "are not sealed blobs (plaintext or a foreign format); find the writer"
    if kids is not None and parsed.kid not in kids:
        return "are sealed under a key id missing from EPHEMERA_KEYS and can never open"
    return None


def _job_problems(raw: dict[bytes, bytes]) -> Iterator[str]:
    if not raw:
        return
    values = {key.decode(errors="replace"): value for key, value in raw.items()}
    if set(values) - JOB_FIELDS:
        yield "hold fields outside the record schema; find the writer"
    if not _HEX64.match(values.get("owner", b"").decode(errors="replace")):
        yield "name their owner by something other than an HMAC"
    if values.get("status", b"").decode(errors="replace") not in STATUSES:
        yield "hold an unknown status"
    token_hash = values.get("result_token_hash")
    if token_hash and not _HEX64.match(token_hash.decode(errors="replace")):
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


# --- Settings ---------------------------------------------------------------------


def _audit_debug(tally: _Tally) -> None:
    if settings.DEBUG:
        tally.add(
            "debug_on",
            "DEBUG is on: error pages show settings, paths and request data; unset DJANGO_DEBUG",
        )


def _audit_flower(tally: _Tally) -> None:
    value = settings.FLOWER_BASIC_AUTH or ""
    credentials = [part.strip() for part in value.split(",") if part.strip()]
    pairs = [credential.partition(":") for credential in credentials]
    if not pairs or any(not user or not sep or not password for user, sep, password in pairs):
        tally.add(
            "flower_auth_missing",
            "FLOWER_BASIC_AUTH is unset or not user:password: Flower would show task "
            "history to anyone who reaches it; set it",
        )
        return
    for user, _, password in pairs:
        if _weak_password(user, password):
            tally.add(
                "flower_auth_weak",
                f"a FLOWER_BASIC_AUTH password is weak (shorter than {MIN_FLOWER_PASSWORD}, "
                "a common default or the user name); generate one with "
                "`python -c 'import secrets; print(secrets.token_urlsafe(24))'`",
            )


def _weak_password(user: str, password: str) -> bool:
    lowered = password.lower()
    return (
        len(password) < MIN_FLOWER_PASSWORD
        or lowered in _COMMON_PASSWORDS
        or any(marker in lowered for marker in _DEFAULT_MARKERS)
        or lowered == user.lower()
        or len(set(password)) < 8
    )


def _audit_secret_key(tally: _Tally) -> None:
    # Django's own bar (security.W009): 50 characters, 5 distinct, not a template's.
    key = str(settings.SECRET_KEY)
    if len(key) < 50 or len(set(key)) < 5 or key.startswith("django-insecure"):
        tally.add(
            "secret_key_weak",
            "SECRET_KEY is short, repetitive or Django's insecure template default; it keys "
            "every HMAC of ids: set DJANGO_SECRET_KEY to `openssl rand -base64 48`",
        )


def _audit_keyring(tally: _Tally) -> crypto.Keyring | None:
    try:
        keyring = crypto.Keyring.parse(settings.EPHEMERA_KEYS)
    except crypto.KeyringError:
        tally.add("keyring_weak", "EPHEMERA_KEYS does not parse as kid:base64-32-bytes entries")
        return None
    advice = "replace it with `openssl rand -base64 32` under a new key id"
    keys = list(keyring.keys.values())
    repeated = len(keys) - len(set(keys))
    if repeated:
        tally.add(
            "keyring_weak",
            f"EPHEMERA_KEYS holds the same key under several key ids; {advice}",
            repeated,
        )
    for key in keys:
        if len(set(key)) == 1:
            tally.add("keyring_weak", f"an EPHEMERA_KEYS key is one byte repeated; {advice}")
        elif key in _KNOWN_TEST_KEYS:
            tally.add("keyring_weak", f"an EPHEMERA_KEYS key is a well-known test value; {advice}")
        elif set(key) <= _PRINTABLE:
            tally.add(
                "keyring_weak",
                f"an EPHEMERA_KEYS key is text (a password?), not random bytes; {advice}",
            )
        elif len(set(key)) < _MIN_DISTINCT_KEY_BYTES:
            tally.add("keyring_weak", f"an EPHEMERA_KEYS key is far from random; {advice}")
    return keyring


def _active_key_since(keyring: crypto.Keyring | None, now: datetime) -> datetime | None:
    if keyring is None:
        return None
    try:
        return keyring_observe(kid=keyring.active, key=keyring.keys[keyring.active], now=now)
    except DatabaseError as exc:
        # The age is a fact of the report, not a check: report it unknown.
        logger.warning("privacy_audit_keyring_unrecorded", extra={"error_type": type(exc).__name__})
        return None
