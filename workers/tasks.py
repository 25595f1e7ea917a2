"""The job worker's Celery tasks (``bin/ephemera worker``): thin
adapters that take an id, call a function and own retries. Webhook deliveries
have their own worker, ``workers.webhook_tasks``.

Messages carry the job id only; ``argsrepr`` shows a hashed id, so Flower and
the worker's own logs never display even that.
"""

from __future__ import annotations

import gc
import logging
import time
from typing import Any

import redis
from billiard.einfo import ExceptionInfo
from billiard.exceptions import TimeLimitExceeded, WorkerLostError
from celery import Task, signals
from django.conf import settings

from backend import metrics
from backend.audit.privacy import run_privacy_audit
from backend.audit.services import audit_purge
from backend.env import ConfigError
from backend.errors import job_error
from backend.jobs import lifecycle
from backend.pseudonyms import hashed_id
from workers import e2e, health, isolation, limits, registry, sweeper, warm_up
from workers.celery_app import app
from workers.model_files import ModelFileError
from workers.pipeline import process_job

logger = logging.getLogger(__name__)


class JobTask(Task):
    """Ends the job when the task itself fails, instead of the job process.

    A hard time limit or a killed pool process never returns from the task; the
    worker's parent calls ``on_failure`` and the job ends here, with a code. So
    does any error of the task's own, which would otherwise leave the job
    queued with its message acknowledged.
    """

    def on_failure(
        self, exc: Exception, task_id: str, args: Any, kwargs: Any, einfo: ExceptionInfo
    ) -> None:
        job_id = args[0] if args else None
        if not isinstance(job_id, str):
            return
        if isinstance(exc, TimeLimitExceeded):
            lifecycle.fail(job_id, job_error("time_limit"))
        elif isinstance(exc, WorkerLostError):
            lifecycle.lose(job_id)
        else:
            # Anything else is ours: the message is acknowledged, so a job left
            # queued or running here would never end by itself.
            lifecycle.fail(job_id, job_error("internal_error"), expected=("queued", "running"))
        logger.warning(
            "job_worker_failure", extra={"job": hashed_id(job_id), "error_type": type(exc).__name__}
        )


@app.task(name="workers.run_job", base=JobTask, ignore_result=True, acks_late=True)
def run_job(job_id: str) -> None:
    if not settings.EPHEMERA_ISOLATE_JOBS:
        lifecycle.account(process_job(job_id))
        return
    # A job process that died (killed, crashed) cannot end its job: end it here.
    # One that died before its claim leaves the job queued: run it again, as a
    # redelivery would; lifecycle.lose bounds how often.
    while (ending := isolation.run_isolated(job_id)) is None:
        if _lose_when_redis_answers(job_id) != "retry":
            return
    lifecycle.account(ending)


#: How long a pool process waits for Redis to answer again before it gives up
#: on a job whose process died: more than a Sentinel failover takes
#: (``down-after-milliseconds`` 5000 in ``infra/k8s``), less than a hard time limit.
REDIS_PATIENCE = 15.0


def _lose_when_redis_answers(job_id: str) -> lifecycle.Loss:
    """``lifecycle.lose``, once Redis answers again.

    A failover or a restart of Redis kills the job processes it catches in a
    command. Giving up at once failed the task on the same outage, and
    ``on_failure`` ended those jobs ``internal_error``, as if a bug had (2 of
    200 jobs in ``bench/chaos.py --mode failover``). Waiting, each ends as
    ``lose`` decides: run again if its process died before the claim,
    ``worker_lost`` if the claim had taken its upload.
    """
    deadline = time.monotonic() + REDIS_PATIENCE
    while True:
        try:
            return lifecycle.lose(job_id)
        except (redis.ConnectionError, redis.TimeoutError):
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.25)


@app.task(name="workers.sweep", ignore_result=True)
def sweep() -> None:
    logger.info("sweep_done", extra=sweeper.sweep())


@app.task(name="workers.privacy_audit", ignore_result=True)
def privacy_audit() -> None:
    # Every check is reported, zeros included, so a fixed finding resets its gauge.
    counts = run_privacy_audit(observe_keyring=True).counts()
    for check, count in counts.items():
        metrics.set_gauge("ephemera_audit_findings", count, check=check)
    logger.info("privacy_audit_done", extra=counts)


@app.task(name="workers.audit_purge", ignore_result=True)
def audit_log_purge() -> None:
    logger.info("audit_purge_done", extra={"deleted": audit_purge()})


@signals.worker_init.connect
def _load_models(**_: Any) -> None:
    # In the parent, before the pool forks: children inherit loaded weights.
    try:
        registry.load_all()
        e2e.private_keys()
    except ConfigError as exc:
        logger.critical("worker_not_started", extra={"reason": "e2e_keys", "detail": str(exc)})
        raise SystemExit(1) from None
    except ModelFileError:
        # The model loader already logged which file failed and what to do.
        # SystemExit passes through Celery's signal dispatch (which logs and
        # swallows ordinary exceptions), so the worker stops with status 1.
        logger.critical("worker_not_started", extra={"reason": "model_file"})
        raise SystemExit(1) from None
    warm_up.rehearse()
    # Everything alive now (Django, torch, the weights) lives as long as the
    # worker: move it out of the collector's sight, so no collection in a
    # forked process writes to (and so copies) the pages it shares with us.
    gc.freeze()
    if settings.EPHEMERA_ISOLATE_JOBS:
        isolation.start_node_fork_server()
    health.mark_ready("worker")


@signals.worker_ready.connect
def _start_heartbeat(sender: Any = None, **_: Any) -> None:
    health.start_heartbeat("worker", counted_as=getattr(sender, "hostname", None) or "worker")


@signals.worker_process_init.connect
def _prepare_pool_process(**_: Any) -> None:
    if settings.EPHEMERA_ISOLATE_JOBS:
        isolation.prepare()
    else:
        # Without job processes, the pool process runs the jobs and gets the limits.
        limits.apply_child_limits()
