"""Per-client abuse controls, composed on views as DRF throttle classes.

Per-IP limits run earlier, in ``backend.api.middleware``, so that they also
cover requests that fail authentication.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast

from django.conf import settings
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from backend import abuse, metrics
from backend.api.errors import ApiError
from backend.audit.services import audit_record
from backend.clients.models import ApiClient
from backend.errors import UPLOAD_REJECTIONS, CodedError
from backend.pseudonyms import client_subject, owner_hash, subject_hash


def api_client(request: Request) -> ApiClient:
    """The authenticated client: ``ApiKeyAuthentication`` puts it in ``request.user``."""
    return cast(ApiClient, request.user)


def client_subjects(request: Request) -> list[str]:
    """The client and the IP a request comes from, as the abuse module names them."""
    subjects = [subject_hash("ip", request.META.get("EPHEMERA_CLIENT_IP", ""))]
    if request.user is not None:
        subjects.insert(0, client_subject(owner_hash(request.user.pk)))
    return subjects


def rate_limited(client_id: int, message: str, retry_after: float, scope: str) -> ApiError:
    metrics.inc("ephemera_throttled_total", scope=scope)
    audit_record(event="throttled", client_id=client_id, outcome=scope)
    return ApiError(429, "rate_limited", message, retry_after=retry_after)


def too_many_in_flight(client_id: int, cap: int) -> ApiError:
    return rate_limited(
        client_id,
        f"You have {cap} jobs in flight, the most your tier allows; wait for one to end.",
        1.0,
        "in_flight",
    )


class BlockedClientThrottle(BaseThrottle):
    """A client blocked after repeated rejected uploads gets nothing.

    The block of the client's IP was checked already, before authentication,
    by ``ApiGuardMiddleware``; this checks the client itself.
    """

    def allow_request(self, request: Request, view: Any) -> bool:
        if request.user is None:
            return True
        left = abuse.blocked_for(subjects=[client_subject(owner_hash(request.user.pk))])
        if left > 0:
            metrics.inc("ephemera_blocked_total")
            audit_record(event="blocked", client_id=getattr(request.user, "pk", None))
            raise ApiError(
                429,
                "temporarily_blocked",
                "Too many rejected uploads in a row; this client is blocked for a while.",
                retry_after=left,
            )
        return True


class SubmitRateThrottle(BaseThrottle):
    """Submits per minute per client, by the client's tier."""

    timer = staticmethod(time.time)

    def allow_request(self, request: Request, view: Any) -> bool:
        if request.method != "POST":
            return True
        per_minute = settings.EPHEMERA_TIER_RATES.get(api_client(request).tier, 0)
        decision = abuse.rate_limit(
            scope="submit",
            subject=client_subject(owner_hash(request.user.pk)),
            per_minute=per_minute,
            now=self.timer(),
        )
        if not decision.allowed:
            raise rate_limited(
                api_client(request).pk,
                f"Your tier allows {per_minute} submits a minute.",
                decision.retry_after,
                "submit",
            )
        return True


class InFlightThrottle(BaseThrottle):
    """At most N jobs queued or running at once per client, by tier.

    Checked here before the body is read, so a client at its cap costs no
    upload; a burst of submits that all pass this check is held to the cap
    by ``abuse.admit_in_flight``, when each job is about to be queued.
    """

    def allow_request(self, request: Request, view: Any) -> bool:
        if request.method != "POST":
            return True
        client = api_client(request)
        cap = in_flight_cap(client)
        if cap and abuse.in_flight(owner=owner_hash(client.pk)) >= cap:
            raise too_many_in_flight(client.pk, cap)
        return True


def in_flight_cap(client: ApiClient) -> int:
    """Jobs the client may have queued or running at once; 0: no cap."""
    return int(settings.EPHEMERA_TIER_IN_FLIGHT.get(client.tier, 0))


@dataclass
class UploadVerdict:
    #: Whether the web saw the upload's bytes and found them valid. An end-to-end
    #: envelope is only ciphertext here: its job process judges it (and counts a
    #: bad one), so accepting the envelope must not wipe the count.
    checked: bool = True


@contextmanager
def counting_rejections(request: Request) -> Iterator[UploadVerdict]:
    """Count rejected uploads in a row; a valid one resets the count."""
    subjects = client_subjects(request)
    verdict = UploadVerdict()
    try:
        yield verdict
    except CodedError as exc:
        if exc.code in UPLOAD_REJECTIONS:
            abuse.note_rejected_upload(subjects=subjects)
        raise
    if verdict.checked:
        abuse.note_accepted_upload(subjects=subjects)
