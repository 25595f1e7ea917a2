"""One process per job, with the process ready before the job arrives.

Celery's pool processes live on and never touch job data. Each keeps one
*spare*: a process ready in advance (it inherits the models, loaded once in
the worker's parent, copy-on-write, and the code every job runs, rehearsed
there by ``workers.warm_up``), connected to Redis (``_get_ready``), with the
heap it shares out of its allocations' way (``workers.heap``), and blocked
on a pipe. A job's id goes down that pipe; the spare claims the job,
decrypts, runs the model, publishes, reports its ending up a second pipe and
exits with ``os._exit``, its memory, with the photo in it, going with it.
The ending is metadata (``lifecycle.Ending``): the pool process accounts
for it (metric, audit row, trace, webhook) over its own long-lived
connections, so a job process never opens a database connection.

The spares are forked by the node's *fork server*: a process the worker's
parent forks once, after the models are loaded and before the pool starts,
which does nothing but fork. Its memory stays as the parent left it, in
transparent huge pages (``_map_in_huge_pages``), so a fork copies one
page-table entry per 2 MiB of models instead of 512, and the job process's
exit tears down as few. A fork server forked from a pool process instead
inherits the pool process's page tables, which Celery's own writes had split
back into 4 KiB entries: a fork cost 7.0-7.7 ms of kernel time instead of
4.3-5.2 (512 px jobs, one after another). The fork runs beside the job, in
the fork server, and the next spare is asked for as soon as the job's claim
has answered, so neither a fork nor a job process's exit is on any job's
critical path. Asked for at the hand-over instead, the fork and the new
spare's start competed with the job's claim and first steps: 3-6 ms more
between submit and result (``bench/pipeline.py``, a 2-core node). The fork
server reaps the job processes and logs those that died. Should it die, each
pool process starts a fork server of its own and goes on.

Limits apply to the job process itself: its address space (``RLIMIT_AS``, set
once in the fork server and inherited), its soft time limit (a timer armed
when the job arrives, which raises ``SoftTimeLimitExceeded`` inside it, so the
pipeline ends the job ``time_limit``), and its life: the pool process holds
the write end of the job's pipe until the job has ended, and the kernel sends
the job process SIGKILL the moment that end closes (``O_ASYNC`` with
``F_SETSIG``), so Celery's hard time limit, which kills the pool process,
also kills the job.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import gc
import logging
import os
import select
import signal
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, partial
from pathlib import Path
from typing import NoReturn

from celery.exceptions import SoftTimeLimitExceeded
from django import db
from django.conf import settings

from backend.ephemeral.connection import client
from backend.jobs import lifecycle
from workers import heap, limits, warm_up
from workers.process_names import FORK_SERVER_NAME, JOB_PROCESS_NAME

logger = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
_PR_SET_NAME = 15
_MADV_HUGEPAGE = 14
_MADV_COLLAPSE = 25
_MADV_DONTNEED = 4
_HUGE_PAGE = 2 * 1024 * 1024
#: A request to the fork server: this byte, with the spare's ends of its two pipes.
_FORK = b"f"
#: What a job process writes up its outcome pipe once its claim has answered,
#: before its ending (JSON, so never this byte).
_CLAIMED = b"c"
_FDS_PER_REQUEST = 2


@dataclass
class _ForkServer:
    pid: int
    #: The pool processes' end of the socket the requests go down.
    requests: socket.socket

    def stop(self) -> None:
        self.requests.close()
        # Only the process that forked it can reap it; the node's fork server
        # is the worker parent's child, not a pool process's.
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)


@dataclass
class _Spare:
    #: Write end: the job id goes down it. Held open until the job has ended:
    #: closing it (this process's death included) kills the job process.
    jobs: int
    #: Read end: the ending comes up it; EOF without one means the process died.
    outcomes: int


class JobProcesses:
    """This pool process's fork server and spare."""

    def __init__(self) -> None:
        #: The node's fork server until it fails; then one of this pool process's own.
        self.forks: _ForkServer | None = None
        self.spare: _Spare | None = None

    def prepare(self) -> None:
        if self.spare is None:
            self.spare = self._new_spare()

    def run(self, job_id: str) -> lifecycle.Ending | None:
        spare = self._hand_over(job_id)
        try:
            with os.fdopen(spare.outcomes, "rb") as outcomes:
                started = outcomes.read(len(_CLAIMED))
                # The next job's process, forked by the fork server while this
                # one runs: after its claim, so that the fork and the new
                # spare's start do not compete with the job's own start.
                self.spare = self._new_spare()
                reported = outcomes.read()
            if started != _CLAIMED:  # died before its claim answered, or never wrote it
                reported = started + reported
        finally:
            # The job process has reported or died; or this process gave up on
            # it, and closing this end kills it.
            os.close(spare.jobs)
        # Nothing reported: the fork server logs how the process died.
        return lifecycle.Ending.from_json(reported) if reported else None

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
            socket.send_fds(self.forks.requests, [_FORK], [jobs_read, outcomes_write])
        except OSError:
            os.close(jobs_write)
            os.close(outcomes_read)
            raise
        finally:
            os.close(jobs_read)
            os.close(outcomes_write)
        return _Spare(jobs=jobs_write, outcomes=outcomes_read)


_processes = JobProcesses()


def start_node_fork_server() -> None:
    """In the worker's parent, after the models are loaded: the fork server every
    pool process inherits (through ``_processes``) and asks for its spares."""
    laid_out = lay_out_memory_for_forks()
    _processes.forks = _start_fork_server()
    logger.info("models_mapped_in_huge_pages", extra=laid_out)


def lay_out_memory_for_forks() -> dict[str, int]:
    """Leave this process's memory as every job process should inherit it; what was done.

    Between the collapse and the fork runs as little Python as can be: each
    page a process writes splits its huge page back into 4 KiB entries in that
    process's page tables, which the fork server would inherit. With the Redis
    client built before and the log written after, the fork server keeps 244 MB
    in huge pages instead of 230 (of 357).
    """
    # Built here, so the fork server inherits it and each spare only opens its
    # socket: ~750 page faults and 2.8 ms instead of ~910 and 4.2, in a fork.
    client()
    # Taken before the collapse, so the chunk headers this writes split no huge
    # page; the fork server and every job process inherit a heap without a
    # free chunk in it (``workers.heap``).
    taken = heap.take_free_chunks()
    collapsed = _map_in_huge_pages()
    released = _release_file_pages()
    return {"ranges": collapsed, "heap_taken": taken, "file_kb_released": released}


def prepare() -> None:
    """Ask for the first spare, so even the first job finds one."""
    _processes.prepare()


def run_isolated(job_id: str) -> lifecycle.Ending | None:
    """Run ``process_job(job_id)`` in a process of its own; its ending.

    None means the job process ended without reporting (killed, crashed,
    out of memory): the caller ends the job for it.
    """
    return _processes.run(job_id)


def _start_fork_server() -> _ForkServer:
    _flush_output()
    # Packets: the pool processes share one socket to the node's fork server,
    # and each request (its byte with its descriptors) must arrive whole.
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the fork server, which exits through os._exit
        ours.close()
        serve = partial(_serve_forks, theirs)
        _live(FORK_SERVER_NAME, "job_fork_server_error", serve, parent=parent)
    theirs.close()
    return _ForkServer(pid=pid, requests=ours)


def _live(
    name: str, error_event: str, life: Callable[[], None], *, parent: int | None = None
) -> NoReturn:
    """A forked process's whole life: named, ended with ``os._exit``, and with
    ``parent``, ended with that process too.

    ``os._exit`` runs no finaliser and no ``atexit`` hook of the inherited
    interpreter; the exit status is 0 when ``life`` returns, 1 when it raises.
    """
    code = 1
    try:
        if parent is not None:
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
    """The fork server's work: fork a spare on each request it is sent."""
    _leave_database_connections()
    # Inherited by every job process, which so starts under its ceiling.
    limits.apply_child_limits()
    # What its parent allocated since the models' freeze: out of the
    # collector's sight too, so no collection dirties the pages it shares.
    gc.freeze()
    signal.signal(signal.SIGCHLD, _reap_job_processes)
    while True:
        message, fds, _, _ = socket.recv_fds(requests, len(_FORK), _FDS_PER_REQUEST)
        if not message:  # every process that could ask has closed its end or exited
            return
        if message != _FORK or len(fds) != _FDS_PER_REQUEST:
            for fd in fds:
                os.close(fd)
            continue
        _flush_output()
        if os.fork() == 0:  # pragma: no cover - the spare, which exits through os._exit
            requests.close()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            _live(JOB_PROCESS_NAME, "job_process_error", partial(_serve, *fds))
        for fd in fds:
            os.close(fd)


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
    # First: from here on, what this process allocates is its own memory.
    heap.take_top()
    _get_ready()
    # The descriptor stays open: it ties this process to the pool process.
    with os.fdopen(jobs, "rb", closefd=False) as stream:
        job_id = stream.readline().decode().strip()
    if not job_id:  # the pool process went away before giving a job
        return
    _tie_to_pool(jobs)
    _arm_soft_time_limit()
    from workers.pipeline import process_job

    ending = process_job(job_id, on_claimed=partial(os.write, outcomes, _CLAIMED))
    signal.setitimer(signal.ITIMER_REAL, 0)
    # The pool process closes its end once it has the ending: not a death.
    _untie_from_pool(jobs)
    with os.fdopen(outcomes, "wb") as stream:
        stream.write(ending.to_json())


def _tie_to_pool(jobs: int) -> None:
    """From now on, the kernel SIGKILLs this process when the pool process's
    end of the job's pipe closes: when the pool process dies (a hard time
    limit kills it), even in the middle of a model's C code.

    The pool process is not this process's parent, so ``PR_SET_PDEATHSIG``
    cannot tie them; a pipe's last writer closing raises SIGIO for its
    reader's owner, and ``F_SETSIG`` makes that signal SIGKILL. A pool process
    that died before this call has already closed its end: checked after.
    """
    fcntl.fcntl(jobs, fcntl.F_SETOWN, os.getpid())
    fcntl.fcntl(jobs, fcntl.F_SETSIG, signal.SIGKILL)
    fcntl.fcntl(jobs, fcntl.F_SETFL, fcntl.fcntl(jobs, fcntl.F_GETFL) | os.O_ASYNC)
    hangup = select.poll()
    hangup.register(jobs, select.POLLHUP)
    if hangup.poll(0):
        os._exit(1)


def _untie_from_pool(jobs: int) -> None:
    fcntl.fcntl(jobs, fcntl.F_SETFL, fcntl.fcntl(jobs, fcntl.F_GETFL) & ~os.O_ASYNC)


def _release_file_pages() -> int:
    """Unmap the library code and read-only data this process has touched; the KiB released.

    Imports, model loading and the rehearsal map pages of torch's, OpenCV's
    and Python's libraries into the worker's parent (~145 MB). No forked
    process inherits those entries (a fork copies none for a file mapping
    that nothing has written) and the parent runs no model again, so they
    only keep the pages mapped and counted against the node. Released, the
    pages stay in the page cache, reclaimable, and come back on the next
    touch. Only mappings without an anonymous page are released: dropping a
    written page of a private mapping would lose the write.
    """
    libc = _libc()
    released = 0
    mapping: list[str] = []
    for line in [*Path("/proc/self/smaps").read_text().splitlines(), "end"]:
        fields = line.split()
        if fields[0].endswith(":"):  # a field of the current mapping
            mapping.append(line)
            continue
        if mapping and _clean_file_mapping(mapping):
            start, end = (int(bound, 16) for bound in mapping[0].split()[0].split("-"))
            address, length = ctypes.c_void_p(start), ctypes.c_size_t(end - start)
            if libc.madvise(address, length, _MADV_DONTNEED) == 0:
                released += _smaps_kb(mapping, "Rss")
        mapping = [line]
    return released


def _clean_file_mapping(mapping: list[str]) -> bool:
    """A read-only private mapping of a file, with pages in memory and none written."""
    fields = mapping[0].split()
    path = fields[5] if len(fields) > 5 else ""
    return (
        fields[1] in ("r-xp", "r--p")
        and path.startswith("/")
        and _smaps_kb(mapping, "Rss") > 0
        and _smaps_kb(mapping, "Anonymous") == 0
    )


def _smaps_kb(mapping: list[str], name: str) -> int:
    for line in mapping[1:]:
        if line.startswith(f"{name}:"):
            return int(line.split()[1])
    return 0


def _map_in_huge_pages() -> int:
    """Move what is loaded into transparent huge pages, before anything forks.

    glibc's heap already grows in huge pages (``glibc.malloc.hugetlb=1``, set
    by ``bin/ephemera worker``), but memory mapped by other allocators, and
    heap pages touched before the madvise, are 4 KiB pages: about 170 MB of
    the node's 357 MB. ``MADV_COLLAPSE`` (Linux 6.1) copies them into huge
    pages in place, costing ~150 ms once and a few MB; a kernel without it
    refuses, and forks then copy more page-table entries, nothing else.
    """
    libc = _libc()
    collapsed = 0
    for line in Path("/proc/self/maps").read_text().splitlines():
        fields = line.split()
        perms, path = fields[1], (fields[5] if len(fields) > 5 else "")
        # Private writable anonymous memory only: the heap and mmaps; files
        # (libraries' code) and shared mappings are not copied at fork anyway.
        if perms[1] != "w" or perms[3] != "p" or path not in ("", "[heap]"):
            continue
        start, end = (int(bound, 16) for bound in fields[0].split("-"))
        start = -(-start // _HUGE_PAGE) * _HUGE_PAGE
        end = end // _HUGE_PAGE * _HUGE_PAGE
        if end <= start:
            continue
        address, length = ctypes.c_void_p(start), ctypes.c_size_t(end - start)
        # MADV_HUGEPAGE also lets a job process's own new pages there come in huge.
        libc.madvise(address, length, _MADV_HUGEPAGE)
        collapsed += libc.madvise(address, length, _MADV_COLLAPSE) == 0
    return collapsed


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


@cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


#: The parent's database connections, as this process inherited them.
_inherited_connections: list[object] = []


def _leave_database_connections() -> None:
    """Never touch the parent's database sessions, not even to close them.

    Closing an inherited connection would end the parent's session on
    the server (a terminate message on the shared socket); the objects stay
    referenced until ``os._exit``, which runs no finaliser. A job process needs
    no database: if anything ever asks, Django opens a connection of its own.
    """
    for connection in db.connections.all(initialized_only=True):
        _inherited_connections.append(connection.connection)
        connection.connection = None


def _get_ready() -> None:
    """Open the Redis connection and run the claim's and the publish's code
    once, before the job, off its critical path.

    The claim's command opens the connection. Their first run in a fresh
    process pays for every page it touches; paid here, ~1.5 ms less between a
    submit and its result (``bench/pipeline.py``, side by side). A failure
    here is the job's to meet.
    """
    with contextlib.suppress(Exception):
        warm_up.rehearse_lifecycle()


def _arm_soft_time_limit() -> None:
    def expired(signum: int, frame: object) -> None:
        raise SoftTimeLimitExceeded

    # Celery's own soft limit would signal the pool process, not this one; the
    # job process keeps its own clock, so the limit interrupts the model itself.
    signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, float(settings.EPHEMERA_TASK_SOFT_LIMIT))
