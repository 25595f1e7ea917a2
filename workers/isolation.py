"""One process per job, with the process ready before the job arrives.

Celery's pool processes live on and never touch job data. Each keeps one
*spare*: a process forked from it in advance (it inherits the models, loaded
once in the worker's parent, copy-on-write), connected to Redis, and blocked
on a pipe. A job's id goes down that pipe; the spare
claims the job, decrypts, runs the model, publishes, reports its ending up a
second pipe and exits with ``os._exit``, its memory, with the photo in it,
going with it. The ending is metadata (``lifecycle.Ending``): the pool process
accounts for it (metric, audit row, trace, webhook) over its own, long-lived
connections, so a job process never opens a database connection. The pool
process forks the next spare while the job runs, and reaps the finished one
later, so neither the fork nor the exit of a job process is on any job's
critical path.

Measured on the 2-core machine (bench/isolation.py): replacing the Celery pool
child after every job cost ~230 ms per job; a fork on demand still put ~15 ms
of fork and ~17 ms of exit teardown in each job's path; the spare takes both
out.

Limits apply to the job process itself: its address space (``RLIMIT_AS``), its
soft time limit (a timer armed when the job arrives, which raises
``SoftTimeLimitExceeded`` inside it, so the pipeline ends the job
``time_limit``), and its life: it dies with its pool process
(``PR_SET_PDEATHSIG``), so Celery's hard time limit, which kills the pool
process, also kills the job.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import logging
import os
import signal
import sys
from dataclasses import dataclass

from celery.exceptions import SoftTimeLimitExceeded
from django import db
from django.conf import settings

from backend.jobs.lifecycle import Ending
from workers import limits

logger = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


@dataclass
class _Spare:
    pid: int
    #: Write end: the job id goes down it.
    jobs: int
    #: Read end: the ending comes up it; EOF without one means the process died.
    outcomes: int


class JobProcesses:
    """This pool process's spare, and the job processes it still has to reap."""

    def __init__(self) -> None:
        self.spare: _Spare | None = None
        self.finished: list[int] = []

    def prepare(self) -> None:
        if self.spare is None:
            self.spare = _fork_spare(self)

    def run(self, job_id: str) -> Ending | None:
        self._reap_finished()
        spare = self._hand_over(job_id)
        # The next job's process, forked while this one runs.
        self.spare = _fork_spare(self)
        with os.fdopen(spare.outcomes, "rb") as outcomes:
            reported = outcomes.read()
        if reported:
            self.finished.append(spare.pid)
            return Ending.from_json(reported)
        _, status = os.waitpid(spare.pid, 0)
        logger.warning(
            "job_process_died",
            extra={
                "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
                "exit_status": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
            },
        )
        return None

    def _hand_over(self, job_id: str) -> _Spare:
        """Give the job to the spare; a spare that died while idle is replaced first."""
        spare = self.spare or _fork_spare(self)
        self.spare = None
        try:
            os.write(spare.jobs, job_id.encode() + b"\n")
        except BrokenPipeError:
            logger.warning("job_process_spare_died")
            for pipe_end in (spare.jobs, spare.outcomes):
                os.close(pipe_end)
            os.waitpid(spare.pid, 0)
            spare = _fork_spare(self)
            os.write(spare.jobs, job_id.encode() + b"\n")
        os.close(spare.jobs)
        return spare

    def _reap_finished(self) -> None:
        """Collect the job processes that reported and exited since."""
        for pid in list(self.finished):
            with contextlib.suppress(ChildProcessError):
                if os.waitpid(pid, os.WNOHANG)[0] == 0:
                    continue
            self.finished.remove(pid)


_processes = JobProcesses()


def prepare() -> None:
    """Fork the first spare, so even the first job finds one (pool process start)."""
    _processes.prepare()


def run_isolated(job_id: str) -> Ending | None:
    """Run ``process_job(job_id)`` in a process of its own; its ending.

    None means the job process ended without reporting (killed, crashed,
    out of memory): the caller ends the job for it.
    """
    return _processes.run(job_id)


def _fork_spare(owner: JobProcesses) -> _Spare:
    sys.stdout.flush()
    sys.stderr.flush()
    jobs_read, jobs_write = os.pipe()
    outcomes_read, outcomes_write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child, which exits through os._exit
        os.close(jobs_write)
        os.close(outcomes_read)
        _serve(jobs_read, outcomes_write, inherited=owner.spare)
    os.close(jobs_read)
    os.close(outcomes_write)
    return _Spare(pid=pid, jobs=jobs_write, outcomes=outcomes_read)


def _serve(jobs: int, outcomes: int, *, inherited: _Spare | None) -> None:
    """The spare's whole life: get ready, wait for one job id, run it, report, exit."""
    code = 1
    try:
        _die_with_parent()
        _leave_database_connections()
        # What the pool process allocated since the parent's freeze: out of the
        # collector's sight too, so no collection here dirties shared pages.
        gc.freeze()
        if inherited is not None:
            # The pool process's ends of the other spare: not this process's business.
            for pipe_end in (inherited.jobs, inherited.outcomes):
                with contextlib.suppress(OSError):
                    os.close(pipe_end)
        limits.apply_child_limits()
        _connect()
        with os.fdopen(jobs, "rb") as stream:
            job_id = stream.readline().decode().strip()
        if not job_id:  # the pool process went away before giving a job
            code = 0
            return
        _arm_soft_time_limit()
        from workers.pipeline import process_job

        ending = process_job(job_id)
        signal.setitimer(signal.ITIMER_REAL, 0)
        with os.fdopen(outcomes, "wb") as stream:
            stream.write(ending.to_json())
        code = 0
    except BaseException as exc:
        logger.error("job_process_error", extra={"error_type": type(exc).__name__})
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    # The parent may have died between the fork and the prctl.
    if os.getppid() == 1:
        os._exit(1)


#: The pool process's database connections, as this process inherited them.
_inherited_connections: list[object] = []


def _leave_database_connections() -> None:
    """Never touch the pool process's database sessions, not even to close them.

    Closing an inherited connection would end the pool process's session on
    the server (a terminate message on the shared socket); the objects stay
    referenced until ``os._exit``, which runs no finaliser. A job process needs
    no database: if anything ever asks, Django opens a connection of its own.
    """
    for connection in db.connections.all(initialized_only=True):
        _inherited_connections.append(connection.connection)
        connection.connection = None


def _connect() -> None:
    """Open the Redis connection before the job, off its critical path."""
    from backend.ephemeral.connection import client

    with contextlib.suppress(Exception):
        client().ping()


def _arm_soft_time_limit() -> None:
    def expired(signum: int, frame: object) -> None:
        raise SoftTimeLimitExceeded

    # Celery's own soft limit would signal the pool process, not this one; the
    # job process keeps its own clock, so the limit interrupts the model itself.
    signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, float(settings.EPHEMERA_TASK_SOFT_LIMIT))
