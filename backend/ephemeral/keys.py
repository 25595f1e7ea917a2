"""The key schema of Redis: every prefix, status and namespace, defined once.

Two trees, each key with a TTL (a key of ours without one is a bug that the
sweeper deletes and counts):

- ``eph:``    job data: the record, the sealed upload(s), the sealed result,
              the event stream. Everything here is ciphertext or non-identifying
              metadata.
- ``ephops:`` operational state: rate limits, blocks, in-flight sets, metrics,
              worker heartbeats. Clients and IPs appear only as HMACs.

The store, the Lua scripts (which get prefixes as arguments), the sweeper, the
privacy audit and the serializers all read these names from here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, get_args

JOB_TREE = "eph:"
OPS_TREE = "ephops:"

Status = Literal["queued", "running", "succeeded", "failed", "cancelled", "expired"]
STATUSES: tuple[Status, ...] = get_args(Status)
TERMINAL: frozenset[str] = frozenset({"succeeded", "failed", "cancelled", "expired"})
ACTIVE: frozenset[str] = frozenset(STATUSES) - TERMINAL

#: Entries kept in a job's event stream: a job changes status a handful of times.
EVENTS_MAXLEN = 16

UUID_PATTERN = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
HEX64_PATTERN = re.compile(r"^[0-9a-f]{64}$")

RedisType = Literal["hash", "string", "stream"]
#: What a TTL of a namespace is bounded by (the settings the store computes it from).
TtlBound = Literal["record", "input", "result", "webhook"]


@dataclass(frozen=True)
class Namespace:
    """One kind of key under ``eph:``: its prefix, Redis type, name and TTL bound."""

    name: str
    redis_type: RedisType
    suffix: re.Pattern[str]
    suffix_kind: str
    ttl_bound: TtlBound
    #: Whether the value is a sealed blob (payloads) or metadata.
    sealed: bool

    @property
    def prefix(self) -> str:
        return f"{JOB_TREE}{self.name}:"

    def key(self, suffix: str) -> str:
        return self.prefix + suffix


JOB = Namespace("job", "hash", UUID_PATTERN, "a job id", "record", sealed=False)
EVENTS = Namespace("evt", "stream", UUID_PATTERN, "a job id", "record", sealed=False)
INPUT = Namespace("in", "string", UUID_PATTERN, "a job id", "input", sealed=True)
#: A second upload of a two-image task (``reference``), sealed like ``INPUT``.
REFERENCE = Namespace("ref", "string", UUID_PATTERN, "a job id", "input", sealed=True)
RESULT = Namespace("res", "string", HEX64_PATTERN, "a token hash", "result", sealed=True)
#: One job end on its way to the client's webhook (URL, client, payload), sealed;
#: it lives until it is delivered or its retry window is over.
WEBHOOK = Namespace("hook", "string", UUID_PATTERN, "a webhook event id", "webhook", sealed=True)

NAMESPACES: dict[str, Namespace] = {
    ns.name: ns for ns in (JOB, EVENTS, INPUT, REFERENCE, RESULT, WEBHOOK)
}
#: Keys that hold a payload (sealed bytes) or a stream, removed when their job is gone.
PAYLOADS: tuple[Namespace, ...] = (INPUT, REFERENCE, RESULT, EVENTS)


def job_key(job_id: str) -> str:
    return JOB.key(job_id)


def input_key(job_id: str) -> str:
    return INPUT.key(job_id)


def reference_key(job_id: str) -> str:
    return REFERENCE.key(job_id)


def result_key(token_hash: str) -> str:
    return RESULT.key(token_hash)


def events_key(job_id: str) -> str:
    return EVENTS.key(job_id)


def webhook_key(event_id: str) -> str:
    return WEBHOOK.key(event_id)


def job_id_of(key: bytes | str) -> str:
    """The suffix of a job-data key: a job id, or a token hash for results."""
    text = key.decode() if isinstance(key, bytes) else key
    return text.split(":", 2)[2]


# --- Operational state (ephops:) -----------------------------------------------------


def rate_key(scope: str, subject: str) -> str:
    return f"{OPS_TREE}rl:{scope}:{subject}"


def rejections_key(subject: str) -> str:
    return f"{OPS_TREE}rej:{subject}"


def block_key(subject: str) -> str:
    return f"{OPS_TREE}block:{subject}"


def active_key(owner: str) -> str:
    return f"{OPS_TREE}active:{owner}"


def worker_key(hostname: str) -> str:
    return f"{OPS_TREE}worker:{hostname}"


#: Webhook events waiting for a retry too far ahead for a Celery countdown, by due time.
WEBHOOK_DUE_KEY = f"{OPS_TREE}hookdue"
METRICS_KEY = f"{OPS_TREE}metrics"
GAUGES_KEY = f"{OPS_TREE}gauges"
WORKER_PATTERN = f"{OPS_TREE}worker:*"
