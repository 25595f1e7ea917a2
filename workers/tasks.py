"""Celery tasks: thin adapters that take an id, call a function and own retries.

Messages carry the job id only; ``argsrepr`` shows a hashed id, so Flower and
the worker's own logs never display even that.
"""

from __future__ import annotations

import gc
import logging
from typing import Any

from billiard.einfo import ExceptionInfo
from billiard.exceptions import TimeLimitExceeded, WorkerLostError
from celery import Task, signals

from backend import metrics
from backend.audit.privacy import run_privacy_audit
from backend.audit.services import audit_purge
from backend.ephemeral import store
from backend.logs import hashed_id
from workers import health, limits, runtime, sweeper
from workers.celery_app import app
from workers.model_files import ModelFileError
from workers.pipeline import process_job, record_end

logger = logging.getLogger(__name__)

#: A message whose worker died this many times before claiming it ends `failed`.
MAX_DELIVERIES = 3


class JobTask(Task):
    """Ends the job when the worker's parent sees the child fail from outside.

    A hard time limit or a killed child never returns from ``process_job``; the
    parent process calls ``on_failure`` and the job is failed here, with a code.
    """

    def on_failure(
        self, exc: Exception, task_id: str, args: Any, kwargs: Any, einfo: ExceptionInfo
    ) -> None:
        job_id = args[0] if args else None
        if not isinstance(job_id, str):
            return
        ended = False
        if isinstance(exc, TimeLimitExceeded):
            ended = store.fail_job(
                job_id, code="time_limit", message="The job ran out of time; try a smaller photo."
            )
            code = "time_limit"
        elif isinstance(exc, WorkerLostError):
            ended = store.record_lost_delivery(job_id, max_deliveries=MAX_DELIVERIES)
            code = "worker_lost"
        if ended:
            record_end(job_id, status="failed", code=code)
        logger.warning(
            "job_worker_failure", extra={"job": hashed_id(job_id), "error_type": type(exc).__name__}
        )


@app.task(name="workers.run_job", base=JobTask, ignore_result=True, acks_late=True)
def run_job(job_id: str) -> None:
    process_job(job_id)


@app.task(name="workers.sweep", ignore_result=True)
def sweep() -> None:
    counts = sweeper.sweep()
    for kind, count in counts.items():
        if count and kind != "live":
            metrics.inc("ephemera_sweeper_removed_total", count, kind=kind)
    logger.info("sweep_done", extra=counts)


@app.task(name="workers.privacy_audit", ignore_result=True)
def privacy_audit() -> None:
    # Every check is reported, zeros included, so a fixed finding resets its gauge.
    counts = run_privacy_audit().counts()
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
        runtime.load_all()
    except ModelFileError:
        # The model loader already logged which file failed and what to do.
        # SystemExit passes through Celery's signal dispatch (which logs and
        # swallows ordinary exceptions), so the worker stops with status 1.
        logger.critical("worker_not_started", extra={"reason": "model_file"})
        raise SystemExit(1) from None
    # Everything alive now (Django, torch, the weights) lives as long as the
    # worker: move it out of the collector's sight. The pool runs a full
    # gc.collect() before every fork, i.e. before every job with one job per
    # child (measured: ~250 ms each without this), and children inherit the
    # frozen objects without the collector dirtying their shared pages.
    gc.freeze()
    health.mark_ready()


@signals.worker_ready.connect
def _start_heartbeat(sender: Any = None, **_: Any) -> None:
    health.start_heartbeat(getattr(sender, "hostname", None) or "worker")


@signals.worker_process_init.connect
def _limit_child(**_: Any) -> None:
    # Each child gets an address-space ceiling: a job that tries to allocate past
    # it gets a MemoryError (the job fails `out_of_memory`), not the whole node
    # an OOM kill.
    limits.apply_child_limits()
