"""One process per job, without paying for a new pool child per job.

Celery's pool children live on and never touch job data: for each job, the
pool child forks a *job process* from itself (it already holds the models,
inherited copy-on-write from the worker's parent), and that process claims the
job, decrypts, runs the model, publishes and exits with ``os._exit``. Its
memory, with the photo in it, goes with it. The pool child only waits and
reads an exit status.

Measured on the 2-core machine (bench/isolation.py): replacing a Celery pool
child after every job cost ~230 ms per job (a fork of the whole worker, the
pool's child set-up, first-touch page faults) while a fork of a warm pool child
and ``os._exit`` cost a few milliseconds.

Limits apply to the job process itself: its address space (``RLIMIT_AS``), its
soft time limit (a timer that raises ``SoftTimeLimitExceeded`` inside it, so
the pipeline ends the job ``time_limit``), and its life: it dies with its pool
child (``PR_SET_PDEATHSIG``), so Celery's hard time limit, which kills the pool
child, also kills the job.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
from typing import Literal

from celery.exceptions import SoftTimeLimitExceeded
from django import db
from django.conf import settings

from workers import limits

logger = logging.getLogger(__name__)

#: Exit statuses of a job process: the pipeline's outcome, as a number.
EXIT_CODES: dict[str, int] = {"succeeded": 0, "failed": 10, "cancelled": 11, "skipped": 12}
_OUTCOMES = {code: outcome for outcome, code in EXIT_CODES.items()}
Outcome = Literal["succeeded", "failed", "cancelled", "skipped", "died"]

_PR_SET_PDEATHSIG = 1


def run_isolated(job_id: str) -> Outcome:
    """Run ``process_job(job_id)`` in a fresh process forked from this one; its outcome.

    ``died`` means the job process ended by a signal or an unexpected status
    (killed, crashed, out of memory): the caller ends the job for it.
    """
    # The job process must not share this process's database socket.
    db.connections.close_all()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child, which exits through os._exit
        _run_child(job_id)
    _, status = os.waitpid(pid, 0)
    if os.WIFEXITED(status) and os.WEXITSTATUS(status) in _OUTCOMES:
        return _OUTCOMES[os.WEXITSTATUS(status)]  # type: ignore[return-value]
    logger.warning(
        "job_process_died",
        extra={
            "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
            "exit_status": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
        },
    )
    return "died"


def _run_child(job_id: str) -> None:
    code = 1
    try:
        _die_with_parent()
        limits.apply_child_limits()
        _arm_soft_time_limit()
        from workers.pipeline import process_job

        code = EXIT_CODES[process_job(job_id)]
    except BaseException as exc:
        logger.error("job_process_error", extra={"error_type": type(exc).__name__})
    finally:
        db.connections.close_all()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    # The parent may have died between the fork and the prctl.
    if os.getppid() == 1:
        os._exit(1)


def _arm_soft_time_limit() -> None:
    def expired(signum: int, frame: object) -> None:
        raise SoftTimeLimitExceeded

    # Celery's own soft limit signals the pool child, not this process; the job
    # process keeps its own clock, so the limit interrupts the model itself.
    signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, float(settings.EPHEMERA_TASK_SOFT_LIMIT))
