"""The job record: the non-identifying metadata of one job, and how long it lives.

It is a Redis hash under ``eph:job:{id}``; every field is listed here, and the
privacy audit checks live records against this list.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, cast

from django.conf import settings

from backend.ephemeral.keys import TERMINAL, Status


def record_ttl() -> int:
    """How long a job record lives at most: queue time, run time, result time, grace."""
    return math.ceil(
        settings.EPHEMERA_INPUT_TTL
        + settings.EPHEMERA_TASK_HARD_LIMIT
        + settings.EPHEMERA_RESULT_TTL
        + settings.EPHEMERA_RECORD_GRACE
    )


def ended_ttl() -> int:
    """How long the record of a job that ended without a result stays readable."""
    return math.ceil(settings.EPHEMERA_RECORD_GRACE + 60)


def cancelled_ttl() -> int:
    """A cancelled job's tombstone outlives a delivery that may still be running."""
    return math.ceil(settings.EPHEMERA_TASK_HARD_LIMIT + 60)


def webhook_event_ttl() -> int:
    """A webhook event lives through its retry window, and a little beyond."""
    return math.ceil(settings.EPHEMERA_WEBHOOK_WINDOW + 3600)


#: The record's flag that its end is counted in the metrics.
ACCOUNTED = "accounted"


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
    #: The upload's size as its header declared it (checked by the web's sniff).
    width: int = 0
    height: int = 0
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
    #: Deliveries whose worker died before claiming the job (a poison-message guard).
    deliveries: int = 0
    #: The webhook URL and the client it signs for, sealed (``backend.webhooks.events``).
    webhook_sealed: str | None = None
    #: The uploads are end-to-end envelopes, and the result is sealed to the client.
    e2e: bool = False
    #: The job's end is counted in the metrics: set in the same step as the count,
    #: so whichever process accounts for the end counts it once (``lifecycle``).
    accounted: bool = False

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
        values = {key.decode(): value.decode() for key, value in raw.items()}

        def number(name: str) -> float | None:
            value = values.get(name)
            return float(value) if value else None

        return cls(
            id=job_id,
            owner=values.get("owner", ""),
            task=values.get("task", ""),
            status=cast(Status, values.get("status", "expired")),
            params=json.loads(values.get("params") or "{}"),
            format=values.get("format", ""),
            created_at=number("created_at") or 0.0,
            expires_at=number("expires_at") or 0.0,
            width=int(values.get("width") or 0),
            height=int(values.get("height") or 0),
            started_at=number("started_at"),
            finished_at=number("finished_at"),
            deadline=number("deadline"),
            error_code=values.get("error_code") or None,
            error_message=values.get("error_message") or None,
            result_token_hash=values.get("result_token_hash") or None,
            result_content_type=values.get("result_content_type") or None,
            result_expires_at=number("result_expires_at"),
            result_taken_at=number("result_taken_at"),
            result_token_sealed=values.get("result_token_sealed") or None,
            run_ms=int(values["run_ms"]) if values.get("run_ms") else None,
            deliveries=int(values.get("deliveries") or 0),
            webhook_sealed=values.get("webhook_sealed") or None,
            e2e=values.get("e2e") == "1",
            accounted=values.get("accounted") == "1",
        )

    @classmethod
    def from_reply(cls, job_id: str, flat: list[bytes]) -> JobRecord:
        """A record from a Lua script's ``HGETALL`` reply (a flat list of pairs)."""
        return cls.from_redis(job_id, dict(zip(flat[::2], flat[1::2], strict=True)))


#: The fields a job hash may hold.
FIELDS: frozenset[str] = frozenset(f.name for f in fields(JobRecord)) - {"id"}
