"""The webhook sender's tasks: ``bin/ephemera webhooks``.

A delivery waits on someone else's server for up to
``backend.webhooks.http.TOTAL_TIMEOUT``; in the job workers' pool, a client
whose receiver never answers would hold the pool processes other people's jobs
need. Here the deliveries have a process of their own, on Celery's threads pool
(they wait on sockets, not on the CPU), which loads no model and never sees a
photo, key or result. It is also the only workload allowed out to the internet.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import signals

from backend.jobs.queue import DELIVER_WEBHOOK
from backend.webhooks import events
from workers import health
from workers.celery_app import app

logger = logging.getLogger(__name__)

ROLE: health.Role = "webhooks"


@app.task(name=DELIVER_WEBHOOK, ignore_result=True)
def deliver_webhook(event_id: str, attempt: int = 0) -> None:
    tried = events.deliver(event_id, attempt=attempt)
    if tried.outcome == "retry":
        events.retry_later(event_id, attempt=attempt + 1, delay=tried.delay)


@app.task(name="workers.webhook_due", ignore_result=True)
def webhook_due() -> None:
    released = events.release_due()
    if released:
        logger.info("webhook_due_released", extra={"released": released})


@signals.worker_ready.connect
def _ready(**_: Any) -> None:
    health.mark_ready(ROLE)
    health.start_heartbeat(ROLE)
