"""The workers' Celery app: the web's broker settings plus what only workers need.

Importing this module is cheap (no torch) and registers no task: each worker
role includes the module of its own tasks (``bin/ephemera``), ``workers.tasks``
(jobs and maintenance; it loads every model before it forks its pool) or
``workers.webhook_tasks`` (deliveries; no model, no photo). Beat and Flower
need none, as they only send or watch tasks by name.
"""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "backend.settings")

import django

django.setup()

from celery import Celery  # noqa: E402
from django.conf import settings  # noqa: E402

from backend.jobs.queue import (  # noqa: E402
    DELIVER_WEBHOOK,
    MAINTENANCE_QUEUE,
    WEBHOOKS_QUEUE,
    broker_settings,
)

app = Celery("ephemera")
app.conf.update(
    **broker_settings(),
    task_store_errors_even_if_ignored=False,
    # A job is acknowledged only when it ended; a worker that dies mid-job gives
    # the message back, and the claim in the job record decides what happens.
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    task_acks_on_failure_or_timeout=True,
    # With job processes (EPHEMERA_ISOLATE_JOBS), each one keeps its own soft
    # limit (workers.isolation); Celery's would interrupt the waiting pool child.
    task_soft_time_limit=None
    if settings.EPHEMERA_ISOLATE_JOBS
    else settings.EPHEMERA_TASK_SOFT_LIMIT,
    task_time_limit=settings.EPHEMERA_TASK_HARD_LIMIT,
    worker_concurrency=settings.WORKER_CONCURRENCY,
    worker_prefetch_multiplier=1,
    worker_hijack_root_logger=False,
    worker_redirect_stdouts=False,
    worker_send_task_events=True,
    task_send_sent_event=True,
    task_routes={
        **{
            name: {"queue": MAINTENANCE_QUEUE}
            for name in ("workers.sweep", "workers.privacy_audit", "workers.audit_purge")
        },
        **{name: {"queue": WEBHOOKS_QUEUE} for name in (DELIVER_WEBHOOK, "workers.webhook_due")},
    },
    beat_schedule={
        "sweep": {"task": "workers.sweep", "schedule": 60.0, "options": {"expires": 55}},
        "webhook-due": {
            "task": "workers.webhook_due",
            "schedule": 60.0,
            "options": {"expires": 55},
        },
        "privacy-audit": {
            "task": "workers.privacy_audit",
            "schedule": 300.0,
            "options": {"expires": 290},
        },
        "audit-purge": {
            "task": "workers.audit_purge",
            "schedule": 24 * 3600.0,
            "options": {"expires": 3600},
        },
    },
)
