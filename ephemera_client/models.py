"""What the API answers, as typed, immutable values."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

TERMINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled", "expired"})


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


@dataclass(frozen=True)
class JobError:
    code: str
    message: str


@dataclass(frozen=True)
class JobResult:
    #: The download path, ``/api/v1/results/<token>``: usable once, with the owner's key.
    #: Kept out of ``repr`` so a logged job does not carry its token.
    url: str = field(repr=False)
    content_type: str
    expires_at: datetime | None


@dataclass(frozen=True)
class Job:
    id: str
    task: str
    #: ``queued``, ``running``, ``succeeded``, ``failed``, ``cancelled`` or ``expired``.
    status: str
    created_at: datetime | None
    expires_at: datetime | None
    error: JobError | None
    result: JobResult | None
    queued_ms: int | None
    run_ms: int | None
    raw: dict[str, Any] = field(repr=False, compare=False)
    #: The uploads were end-to-end envelopes; the result downloads as one.
    e2e: bool = False
    #: Seconds to let pass before polling again: the service was too busy to
    #: wait for the job's end (``Retry-After``); None when it waited or was not asked.
    poll_after: float | None = None

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Job:
        error = body.get("error")
        result = body.get("result")
        metrics = body.get("metrics") or {}
        return cls(
            id=str(body["id"]),
            task=str(body["task"]),
            status=str(body["status"]),
            created_at=_time(body.get("created_at")),
            expires_at=_time(body.get("expires_at")),
            error=JobError(code=error["code"], message=error["message"]) if error else None,
            result=(
                JobResult(
                    url=result["url"],
                    content_type=result["content_type"],
                    expires_at=_time(result.get("expires_at")),
                )
                if result
                else None
            ),
            queued_ms=metrics.get("queued_ms"),
            run_ms=metrics.get("run_ms"),
            raw=body,
            e2e=bool(body.get("e2e")),
        )


@dataclass(frozen=True)
class Task:
    name: str
    description: str
    params_schema: dict[str, Any]
    #: ``image`` or ``application/json``.
    output: str
    accepted_formats: tuple[str, ...]
    max_bytes: int
    max_pixels: int
    max_side: int

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Task:
        return cls(
            name=body["name"],
            description=body["description"],
            params_schema=dict(body.get("params_schema") or {}),
            output=body["output"],
            accepted_formats=tuple(body.get("accepted_formats") or ()),
            max_bytes=int(body["max_bytes"]),
            max_pixels=int(body["max_pixels"]),
            max_side=int(body["max_side"]),
        )


@dataclass(frozen=True)
class Download:
    data: bytes
    content_type: str
