"""The job queue as the web sees it: publish a job id, by task name, and nothing else.

The web never imports the workers: it publishes ``workers.run_job`` by name on
a producer app that shares its broker settings with the worker's Celery app
(``broker_settings``), so both always talk to the same broker the same way.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from celery import Celery
from django.conf import settings

from backend.ephemeral.connection import sentinel_config
from backend.pseudonyms import hashed_id

RUN_JOB = "workers.run_job"
DELIVER_WEBHOOK = "workers.deliver_webhook"
JOBS_QUEUE = "jobs"
MAINTENANCE_QUEUE = "maintenance"
#: Deliveries wait on the client's server (up to ``backend.webhooks.http``'s
#: timeout), so their own process (``bin/ephemera webhooks``) takes them: a slow
#: receiver never holds a job's pool process, and the job workers need no egress.
WEBHOOKS_QUEUE = "webhooks"
QUEUES = (JOBS_QUEUE, MAINTENANCE_QUEUE, WEBHOOKS_QUEUE)


def broker_settings() -> dict[str, Any]:
    """Celery settings every process that talks to the broker shares."""
    # Kombu re-delivers a message whose worker vanished after the visibility
    # timeout; it must outlast the hard time limit, or a live job would run twice.
    transport: dict[str, Any] = {
        "visibility_timeout": settings.EPHEMERA_TASK_HARD_LIMIT + 60,
        # Messages a dead worker node held come back once their visibility
        # timeout passed, found by a sweep every 10 s (kombu's default sweeps
        # every 10th tick, i.e. ~100 s): one cheap sorted-set read per tick.
        "unacked_restore_throttle": 1,
    }
    if settings.REDIS_URL.startswith("sentinel://"):
        transport["master_name"] = settings.REDIS_SENTINEL_MASTER
        transport["sentinel_kwargs"] = {"password": sentinel_config(settings.REDIS_URL).password}
    return {
        "broker_url": settings.REDIS_URL,
        "broker_connection_retry_on_startup": True,
        "broker_connection_timeout": 3,
        "broker_transport_options": transport,
        # No result backend: the job's outcome lives in the job record, and a
        # task result would be one more copy of something about the job.
        "result_backend": None,
        "task_ignore_result": True,
        "task_serializer": "json",
        "accept_content": ["json"],
        "task_default_queue": JOBS_QUEUE,
    }


@cache
def producer() -> Celery:
    app = Celery("ephemera-web", set_as_current=False)
    app.conf.update(broker_settings())
    return app


def enqueue_job(job_id: str) -> None:
    """Publish a job; the message holds its id and nothing else.

    ``argsrepr`` is what Flower and the worker's logs show: a hashed id, not even
    the job id itself. Publishing retries briefly and then raises
    ``kombu.exceptions.OperationalError``, so the web can answer 503 instead of
    hanging on a broker that is down.
    """
    producer().send_task(
        RUN_JOB,
        args=[job_id],
        queue=JOBS_QUEUE,
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


def enqueue_webhook(event_id: str, *, attempt: int = 0, countdown: float | None = None) -> None:
    """Publish one attempt of a webhook event: its id and attempt number, nothing else."""
    producer().send_task(
        DELIVER_WEBHOOK,
        args=[event_id, attempt],
        queue=WEBHOOKS_QUEUE,
        countdown=countdown,
        argsrepr=f"(hook:{hashed_id(event_id)}, {attempt})",
        kwargsrepr="{}",
        retry=True,
        retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.2},
    )
