"""The Celery app: Redis broker, JSON messages that carry a job id and nothing else.

Importing this module is cheap (no torch): the web imports it to enqueue. The
worker loads every model once, in its parent process, before it forks children
(see ``workers.runtime``).
"""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "backend.settings")

import django

django.setup()

from celery import Celery, bootsteps  # noqa: E402
from django.conf import settings  # noqa: E402

from backend.ephemeral.store import sentinel_config  # noqa: E402
from backend.logs import hashed_id  # noqa: E402


def _transport_options() -> dict[str, object]:
    # Kombu re-delivers a message whose worker vanished after the visibility
    # timeout; it must outlast the hard time limit, or a live job would run twice.
    options: dict[str, object] = {"visibility_timeout": settings.EPHEMERA_TASK_HARD_LIMIT + 60}
    if settings.REDIS_URL.startswith("sentinel://"):
        options["master_name"] = settings.REDIS_SENTINEL_MASTER
        options["sentinel_kwargs"] = {"password": sentinel_config(settings.REDIS_URL).password}
    return options


app = Celery("ephemera")
app.conf.update(
    broker_url=settings.REDIS_URL,
    broker_connection_retry_on_startup=True,
    broker_connection_timeout=3,
    broker_transport_options=_transport_options(),
    # No result backend: the job's outcome lives in the job record, and a task
    # result would be one more copy of something about the job.
    result_backend=None,
    task_ignore_result=True,
    task_store_errors_even_if_ignored=False,
    task_serializer="json",
    accept_content=["json"],
    # A job is acknowledged only when it ended; a worker that dies mid-job gives
    # the message back, and the claim in the job record decides what happens.
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    task_acks_on_failure_or_timeout=True,
    task_soft_time_limit=settings.EPHEMERA_TASK_SOFT_LIMIT,
    task_time_limit=settings.EPHEMERA_TASK_HARD_LIMIT,
    worker_prefetch_multiplier=1,
    # A fresh child per job: no child ever holds two people's photos.
    worker_max_tasks_per_child=1 if settings.EPHEMERA_ISOLATE_JOBS else None,
    worker_hijack_root_logger=False,
    worker_redirect_stdouts=False,
    worker_send_task_events=True,
    task_send_sent_event=True,
    task_default_queue="jobs",
    task_routes={
        "workers.sweep": {"queue": "maintenance"},
        "workers.privacy_audit": {"queue": "maintenance"},
        "workers.audit_purge": {"queue": "maintenance"},
    },
    beat_schedule={
        "sweep": {"task": "workers.sweep", "schedule": 60.0, "options": {"expires": 55}},
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
    include=["workers.tasks"],
)


class ReplaceChildrenPromptly(bootsteps.StartStopStep):
    """Replace a pool child as soon as it exits, not on the pool's 5 s timer.

    With one job per child, every job ends in a child exit. The pool notices an
    exit through the child's sentinel pipe, which can become readable a moment
    before the child is reapable; the pool then finds nothing to replace and
    waits for its 5-second maintenance timer, and the next job waits with it
    (measured: ~5 s of queue time per job). Checking every 100 ms costs a
    `waitpid` and closes that gap.
    """

    requires = ("celery.worker.components:Pool",)

    def register_with_event_loop(self, worker: object, hub: object) -> None:
        pool = getattr(worker, "pool", None)
        maintain = getattr(pool, "maintain_pool", None)
        if maintain is not None and settings.EPHEMERA_ISOLATE_JOBS:
            hub.call_repeatedly(0.1, maintain)  # type: ignore[attr-defined]


app.steps["worker"].add(ReplaceChildrenPromptly)


def enqueue_job(job_id: str) -> None:
    """Publish a job; the message holds its id and nothing else.

    ``argsrepr`` is what Flower and the worker's logs show: a hashed id, not even
    the job id itself. Publishing retries briefly and then raises, so the web
    can answer 503 instead of hanging on a broker that is down.
    """
    app.send_task(
        "workers.run_job",
        args=[job_id],
        queue="jobs",
        argsrepr=f"(job:{hashed_id(job_id)})",
        kwargsrepr="{}",
        retry=True,
        retry_policy={
            "max_retries": 2,
            "interval_start": 0,
            "interval_step": 0.2,
            "interval_max": 0.5,
        },
    )
