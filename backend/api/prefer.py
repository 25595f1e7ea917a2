"""``Prefer: wait=N`` (RFC 7240): how long a request may wait for a job to end.

A long poll holds one of the web process's threads for up to a minute. With
every thread waiting, nothing else got an answer, not even ``/healthz``: a
pod whose clients all waited failed its liveness probe and was restarted,
long polls and all (8 waits on 4 threads: ``/healthz`` silent for 30 s). So
at most all threads but ``KEPT_THREADS`` wait at once; a request beyond them
is answered at once, without ``Preference-Applied`` and with ``Retry-After``,
which a preference allows.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from django.conf import settings
from rest_framework.request import Request

#: RFC 7240's delta-seconds: digits only, up to the preference's end ("1e9" or
#: "2.5" are not a wait, rather than a wait of 1 or 2 seconds).
_WAIT = re.compile(r"(?:^|[,;\s])wait\s*=\s*(\"?)(\d+)\1\s*(?:[,;]|$)", re.IGNORECASE)

#: Threads of a web process that never wait: health checks, submits, downloads.
KEPT_THREADS = 2
#: Seconds a client whose wait was declined should let pass before it polls again.
DECLINED_RETRY_AFTER = 1


class _Slots:
    """The process's wait slots; None until gunicorn says how many threads it has."""

    semaphore: threading.BoundedSemaphore | None = None


_slots = _Slots()


def requested_wait(request: Request) -> int:
    """Seconds to wait, capped at ``EPHEMERA_MAX_WAIT``; 0 when not asked.

    A preference is a hint, so a value over the cap is honoured up to the cap
    rather than refused.
    """
    match = _WAIT.search(request.META.get("HTTP_PREFER", ""))
    if match is None:
        return 0
    digits = match.group(2)
    # Python refuses to read a number of thousands of digits; any long one is over the cap.
    seconds = int(digits) if len(digits) <= 6 else settings.EPHEMERA_MAX_WAIT
    return min(seconds, settings.EPHEMERA_MAX_WAIT)


def share_threads(threads: int) -> None:
    """This process serves requests on ``threads`` threads (``backend.web_server``)."""
    # Two threads or fewer: no request waits, and polls come back each second.
    _slots.semaphore = threading.BoundedSemaphore(max(0, threads - KEPT_THREADS))


@contextmanager
def granted_wait(wait: int) -> Iterator[int]:
    """The seconds this request may wait: ``wait``, or 0 while the slots are all taken."""
    slots = _slots.semaphore
    if wait <= 0 or slots is None:
        yield wait
        return
    if not slots.acquire(blocking=False):
        yield 0
        return
    try:
        yield wait
    finally:
        slots.release()
