"""One process per job, with the process ready before the job arrives.

Celery's pool processes live on and never touch job data. Each keeps one
*spare*: a process ready in advance (it inherits the models, loaded once in
the worker's parent, copy-on-write), connected to Redis, and blocked on a
pipe. A job's id goes down that pipe; the spare claims the job, decrypts, runs
the model, publishes, reports its ending up a second pipe and exits with
``os._exit``, its memory, with the photo in it, going with it. The ending is
metadata (``lifecycle.Ending``): the pool process accounts for it (metric,
audit row, trace, webhook) over its own long-lived connections, so a job
process never opens a database connection.

The spares are forked by a *fork server*: a process the pool process forks
once, at its start, which does nothing but fork. Forking from the pool
process itself made every page it wrote afterwards (Celery's bookkeeping, the
accounting) a copy-on-write fault, about 2,000 per job, on the job's critical
path; the fork server's memory stays as it was forked, so after its first
forks nothing is copied, and the fork itself (page tables) runs beside the
job, in the fork server. The next spare is asked for as soon as a job is
handed over, so neither a fork nor a job process's exit is on any job's
critical path. The fork server reaps the job processes and logs those that
died.

Measured on the 2-core machine (bench/isolation.py): replacing the Celery pool
child after every job cost ~230 ms per job; a fork on demand still put ~15 ms
of fork and ~17 ms of exit teardown in each job's path; the spare takes both
out.

Limits apply to the job process itself: its address space (``RLIMIT_AS``, set
once in the fork server and inherited), its soft time limit (a timer armed
when the job arrives, which raises ``SoftTimeLimitExceeded`` inside it, so the
pipeline ends the job ``time_limit``), and its life: it dies with the fork
server, which dies with its pool process (``PR_SET_PDEATHSIG`` both), so
Celery's hard time limit, which kills the pool process, also kills the job.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import NoReturn

from celery.exceptions import SoftTimeLimitExceeded
from django import db
from django.conf import settings

from backend.jobs.lifecycle import Ending
from workers import limits

logger = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
_PR_SET_NAME = 15
#: Process names (``/proc/<pid>/comm``, ``ps``), so operators and tests tell them apart.
FORK_SERVER_NAME = "ephemera-forks"
JOB_PROCESS_NAME = "ephemera-job"


@dataclass
class _ForkServer:
    pid: int
    #: The pool process's end of the socket the spares' pipe ends go down.
    requests: socket.socket

    def stop(self) -> None:
        self.requests.close()
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)


@dataclass
class _Spare:
    #: Write end: the job id goes down it.
    jobs: int
    #: Read end: the ending comes up it; EOF without one means the process died.
    outcomes: int


class JobProcesses:
    """This pool process's fork server and spare."""

    def __init__(self) -> None:
        self.forks: _ForkServer | None = None
        self.spare: _Spare | None = None

    def prepare(self) -> None:
        if self.spare is None:
            self.spare = self._new_spare()

    def run(self, job_id: str) -> Ending | None:
        spare = self._hand_over(job_id)
        # The next job's process, forked by the fork server while this one runs.
        self.spare = self._new_spare()
        with os.fdopen(spare.outcomes, "rb") as outcomes:
            reported = outcomes.read()
        # Nothing reported: the fork server logs how the process died.
        return Ending.from_json(reported) if reported else None

    def _hand_over(self, job_id: str) -> _Spare:
        """Give the job to the spare; a spare that died while idle is replaced first."""
        spare = self.spare or self._new_spare()
        self.spare = None
        try:
            os.write(spare.jobs, job_id.encode() + b"\n")
        except BrokenPipeError:
            logger.warning("job_process_spare_died")
            for pipe_end in (spare.jobs, spare.outcomes):
                os.close(pipe_end)
            spare = self._new_spare()
            os.write(spare.jobs, job_id.encode() + b"\n")
        os.close(spare.jobs)
        return spare

    def _new_spare(self) -> _Spare:
        """Ask the fork server for a spare; one that died (killed) is replaced, once."""
        try:
            return self._ask_for_spare()
        except OSError:
            logger.warning("job_fork_server_restarted")
            if self.forks is not None:
                self.forks.stop()
                self.forks = None
            return self._ask_for_spare()

    def _ask_for_spare(self) -> _Spare:
        """Send the fork server a spare's ends of two fresh pipes; it does not wait for it."""
        # Started before the pipes exist: a fork server holding a copy of a
        # spare's write end would keep this process from ever seeing EOF.
        if self.forks is None:
            self.forks = _start_fork_server()
        jobs_read, jobs_write = os.pipe()
        outcomes_read, outcomes_write = os.pipe()
        try:
            socket.send_fds(self.forks.requests, [b"f"], [jobs_read, outcomes_write])
        except OSError:
            os.close(jobs_write)
            os.close(outcomes_read)
            raise
        finally:
            os.close(jobs_read)
            os.close(outcomes_write)
        return _Spare(jobs=jobs_write, outcomes=outcomes_read)


_processes = JobProcesses()


def prepare() -> None:
    """Start the fork server and the first spare, so even the first job finds one."""
    _processes.prepare()


def run_isolated(job_id: str) -> Ending | None:
    """Run ``process_job(job_id)`` in a process of its own; its ending.

    None means the job process ended without reporting (killed, crashed,
    out of memory): the caller ends the job for it.
    """
    return _processes.run(job_id)


def _start_fork_server() -> _ForkServer:
    _flush_output()
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    pool_process = os.getpid()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the fork server, which exits through os._exit
        ours.close()
        serve = partial(_serve_forks, theirs)
        _live(FORK_SERVER_NAME, "job_fork_server_error", pool_process, serve)
    theirs.close()
    return _ForkServer(pid=pid, requests=ours)


def _live(name: str, error_event: str, parent: int, life: Callable[[], None]) -> NoReturn:
    """A forked process's whole life: tied to its parent, named, and ended with ``os._exit``.

    ``os._exit`` runs no finaliser and no ``atexit`` hook of the inherited
    interpreter; the exit status is 0 when ``life`` returns, 1 when it raises.
    """
    code = 1
    try:
        _die_with_parent(parent)
        _name_process(name)
        life()
        code = 0
    except BaseException as exc:
        logger.error(error_event, extra={"error_type": type(exc).__name__})
    finally:
        _flush_output()
        os._exit(code)


def _serve_forks(requests: socket.socket) -> None:
    """The fork server's work: fork a spare on each pair of pipe ends it is sent."""
    _leave_database_connections()
    # Inherited by every job process, which so starts under its ceiling.
    limits.apply_child_limits()
    # What the pool process allocated since the parent's freeze: out of the
    # collector's sight too, so no collection dirties the pages it shares.
    gc.freeze()
    signal.signal(signal.SIGCHLD, _reap_job_processes)
    server = os.getpid()
    while True:
        message, pipe_ends, _, _ = socket.recv_fds(requests, 1, 2)
        if not message:  # the pool process closed its end or exited
            return
        _flush_output()
        if os.fork() == 0:  # pragma: no cover - the spare, which exits through os._exit
            requests.close()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            _live(JOB_PROCESS_NAME, "job_process_error", server, partial(_serve, *pipe_ends))
        for pipe_end in pipe_ends:
            os.close(pipe_end)


def _reap_job_processes(signum: int, frame: object) -> None:
    """Collect the job processes that ended; log those that did not end on their own."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        if os.WIFSIGNALED(status) or os.WEXITSTATUS(status) != 0:
            logger.warning(
                "job_process_died",
                extra={
                    "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
                    "exit_status": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
                },
            )


def _serve(jobs: int, outcomes: int) -> None:
    """The spare's work: get ready, wait for one job id, run it, report."""
    _connect()
    with os.fdopen(jobs, "rb") as stream:
        job_id = stream.readline().decode().strip()
    if not job_id:  # the pool process went away before giving a job
        return
    _arm_soft_time_limit()
    from workers.pipeline import process_job

    ending = process_job(job_id)
    signal.setitimer(signal.ITIMER_REAL, 0)
    with os.fdopen(outcomes, "wb") as stream:
        stream.write(ending.to_json())


def _flush_output() -> None:
    """Flush what this process buffered, so no fork copies it and no exit drops it."""
    sys.stdout.flush()
    sys.stderr.flush()


def _die_with_parent(parent: int) -> None:
    _libc().prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    # The parent may have died between the fork and the prctl.
    if os.getppid() != parent:
        os._exit(1)


def _name_process(name: str) -> None:
    _libc().prctl(_PR_SET_NAME, ctypes.c_char_p(name.encode()), 0, 0, 0)


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


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
