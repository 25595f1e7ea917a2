"""``Prefer: wait=N`` (RFC 7240): how long a request may wait for a job to end."""

from __future__ import annotations

import re

from django.conf import settings
from rest_framework.request import Request

_WAIT = re.compile(r"(?:^|[,;\s])wait\s*=\s*\"?(\d{1,6})\"?", re.IGNORECASE)


def requested_wait(request: Request) -> int:
    """Seconds to wait, capped at ``EPHEMERA_MAX_WAIT``; 0 when not asked.

    A preference is a hint, so a value over the cap is honoured up to the cap
    rather than refused.
    """
    match = _WAIT.search(request.META.get("HTTP_PREFER", ""))
    if match is None:
        return 0
    return min(int(match.group(1)), settings.EPHEMERA_MAX_WAIT)
