"""A worker node's job processes: forked by the node's fork server, one per
job, each tied to the pool process that hands it its job."""

from __future__ import annotations

import contextlib
import ctypes
import mmap
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import cv2
import pytest
import redis
from celery import Celery

from backend.ephemeral import connection, keys, store
from backend.ephemeral.records import JobRecord
from tests.conftest import migrate_worker_database, portrait, worker_env
from tests.factories import queued_job
from tests.harness import Process, process_status, smaps_rollup_kb, start_worker, wait_until
from workers import isolation
from workers.warm_up import NO_JOB

pytestmark = pytest.mark.slow

#: A Redis database of the session's server that only this module uses.
ISOLATION_REDIS_DB = 12


@pytest.fixture
def node(settings: object, tmp_path: Path) -> Iterator[tuple[Process, Celery]]:
    """A worker node of two pool processes, on a Redis database this process's store uses too."""
    live = settings.REDIS_URL  # type: ignore[attr-defined]
    url = f"{live.rsplit('/', 1)[0]}/{ISOLATION_REDIS_DB}"
    redis.Redis.from_url(url).flushdb()
    settings.REDIS_URL = url  # type: ignore[attr-defined]
    connection.forget()
    env = worker_env(
        REDIS_URL=url, WORKER_CONCURRENCY="2", EPHEMERA_HEALTH_DIR=str(tmp_path / "health")
    )
    migrate_worker_database(env)
    worker = start_worker(env, log_dir=tmp_path)
    sender = Celery(broker=url)
    try:
        yield worker, sender
    finally:
        sender.close()
        worker.stop()
        redis.Redis.from_url(url).flushdb()
        settings.REDIS_URL = live  # type: ignore[attr-defined]
        connection.forget()


def run_job(sender: Celery, side: int = 64) -> JobRecord:
    job_id = queued_job(cv2.imencode(".jpg", portrait((side, side)))[1].tobytes())
    sender.send_task("workers.run_job", args=[job_id], queue="jobs")
    record = store.wait_for_end(job_id, timeout=60)
    assert record is not None
    assert record.status == "succeeded", record.error_code
    return record


def parent_of(pid: int) -> int | None:
    status = process_status(pid)
    return status.parent if status else None


def alive(pid: int) -> bool:
    status = process_status(pid)
    return status is not None and status.alive


def pipes(pid: int) -> set[str]:
    """The pipes a process holds an end of; a descriptor closed while we look is skipped."""
    found: set[str] = set()
    with contextlib.suppress(FileNotFoundError):  # the process itself is gone
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(FileNotFoundError):
                found.add(os.readlink(fd))
    return {end for end in found if end.startswith("pipe:")}


def pool_of(spare: int, pools: list[int]) -> int | None:
    """The pool process a spare serves: the one holding the other ends of its pipes."""
    return next((pool for pool in pools if pipes(pool) & pipes(spare)), None)


def idle_spares(worker: Process) -> set[int]:
    """Job processes waiting for their job id."""
    return set(worker.job_processes(busy=False)) - set(worker.job_processes(busy=True))


def spares_after_a_job(worker: Process, sender: Celery) -> set[int]:
    """The idle spares once a job has run and each pool process has its own."""
    run_job(sender)
    pools = worker.children()
    return wait_until(
        lambda: idle_spares(worker) if len(idle_spares(worker)) == len(pools) else None,
        timeout=10,
        message="no spare for each pool process",
    )


def huge_pages_share(pid: int) -> float:
    """The share of a process's anonymous memory mapped in transparent huge pages."""
    memory = smaps_rollup_kb(pid)
    return memory["AnonHugePages"] / memory["Anonymous"]


def test_the_nodes_fork_server_forks_a_spare_for_each_pool_process(
    node: tuple[Process, Celery],
) -> None:
    worker, sender = node
    assert run_job(sender).status == "succeeded"

    [server] = worker.fork_servers()
    assert parent_of(server) == worker.pid
    wait_until(lambda: len(worker.job_processes(busy=False)) == 2, timeout=10, message="no spares")
    assert {parent_of(pid) for pid in worker.job_processes(busy=False)} == {server}


@pytest.mark.skipif(
    "[never]" in Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text(),
    reason="transparent huge pages are off on this machine",
)
def test_the_fork_server_holds_the_models_in_huge_pages(node: tuple[Process, Celery]) -> None:
    worker, _ = node
    [server] = worker.fork_servers()
    # Without the collapse, about half: only what glibc's heap grew into.
    assert huge_pages_share(server) > 0.6


def heap_end(pid: int) -> int:
    """Where a process's heap (glibc's ``brk`` area) ends."""
    ends = [
        int(line.split()[0].split("-")[1], 16)
        for line in Path(f"/proc/{pid}/maps").read_text().splitlines()
        if line.endswith("[heap]")
    ]
    return max(ends)


def test_a_spare_allocates_past_the_heap_it_shares_with_the_fork_server(
    node: tuple[Process, Celery],
) -> None:
    worker, sender = node
    spares = spares_after_a_job(worker, sender)
    [server] = worker.fork_servers()
    # The spare took the free top chunk as it started (``workers.heap``): what
    # it allocated since, getting ready, grew its heap into memory of its own.
    for spare in spares:
        assert heap_end(spare) > heap_end(server)


def test_the_workers_parent_keeps_no_library_pages_mapped(node: tuple[Process, Celery]) -> None:
    worker, sender = node
    run_job(sender)
    # Imports, models and the rehearsal mapped ~145 MB of library pages into
    # it; released, only what Celery's own loop has touched since is back.
    assert smaps_rollup_kb(worker.pid)["Pss_File"] < 32 * 1024


libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [
    ctypes.c_void_p,
    ctypes.c_size_t,
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_long,
]
libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]


def map_file(path: Path, *, written: bytes = b"") -> int:
    """A private read-only mapping of ``path``, its pages read; ``written`` first, if any,
    as a relocated library's read-only data is written before it is protected."""
    with path.open("rb") as handle:
        length = path.stat().st_size
        prot = mmap.PROT_READ | (mmap.PROT_WRITE if written else 0)
        address = libc.mmap(None, length, prot, mmap.MAP_PRIVATE, handle.fileno(), 0)
    assert address not in (None, ctypes.c_void_p(-1).value)
    if written:
        ctypes.memmove(address, written, len(written))
        assert libc.mprotect(address, length, mmap.PROT_READ) == 0
    ctypes.string_at(address, length)  # read every page in
    return int(address)


def resident_kb(address: int) -> int:
    """The resident size of this process's mapping that starts at ``address``."""
    lines = Path("/proc/self/smaps").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{address:x}-"))
    return next(int(line.split()[1]) for line in lines[start + 1 :] if line.startswith("Rss:"))


def test_releasing_file_pages_unmaps_read_pages_and_keeps_written_ones(tmp_path: Path) -> None:
    path = tmp_path / "library.so"
    path.write_bytes(b"\x01" * 8 * mmap.PAGESIZE)
    read_only = map_file(path)
    written = map_file(path, written=b"relocated")
    assert resident_kb(read_only) > 0

    isolation._release_file_pages()

    assert resident_kb(read_only) == 0
    assert resident_kb(written) > 0
    # Both still read as they did: from the file again, and as written.
    assert ctypes.string_at(read_only, 4) == b"\x01" * 4
    assert ctypes.string_at(written, 9) == b"relocated"


def test_spares_get_ready_without_writing_to_redis(node: tuple[Process, Celery]) -> None:
    worker, sender = node
    spares_after_a_job(worker, sender)
    # Each spare ran the claim's and the publish's code on an id no job has.
    assert not list(connection.client().scan_iter(match=f"*{NO_JOB}*"))
    # One result: the job's own.
    assert len(list(connection.client().scan_iter(match=f"{keys.RESULT.prefix}*"))) == 1


def test_a_pool_process_has_its_next_spare_while_its_job_runs(
    node: tuple[Process, Celery],
) -> None:
    worker, sender = node
    spares = spares_after_a_job(worker, sender)
    photo = cv2.imencode(".jpg", portrait((2048, 2048)))[1].tobytes()
    job_id = queued_job(photo, params={"smoothing": 5})
    sender.send_task("workers.run_job", args=[job_id], queue="jobs")
    [taken] = wait_until(
        lambda: spares - idle_spares(worker), timeout=30, message="no spare took the job"
    )
    pools = worker.children()
    pool = pool_of(taken, pools)
    assert pool is not None

    # Forked once the job's claim has answered, not after its end: the next
    # job finds it ready.
    def next_spare_while_running() -> bool:
        ready = any(pool_of(pid, pools) == pool for pid in idle_spares(worker) - spares)
        record = store.get_job(job_id)
        assert record is not None
        assert record.status == "running", "the job ended before its pool process had a spare"
        return ready

    wait_until(next_spare_while_running, timeout=30, message="no next spare")
    record = store.wait_for_end(job_id, timeout=60)
    assert record is not None
    assert record.status == "succeeded", record.error_code


def test_a_spare_killed_while_it_waits_is_replaced_and_its_job_runs(
    node: tuple[Process, Celery],
) -> None:
    worker, sender = node
    spares = spares_after_a_job(worker, sender)
    logged = len(worker.log_path.read_bytes())

    for spare in spares:
        os.kill(spare, signal.SIGKILL)
    wait_until(lambda: not any(alive(pid) for pid in spares), timeout=10, message="spares alive")

    # Whichever pool process takes them, each job finds its spare dead and
    # runs in a fresh one.
    assert [run_job(sender).status for _ in range(4)] == ["succeeded"] * 4
    assert b'"event": "job_process_spare_died"' in worker.log_path.read_bytes()[logged:]


def test_a_spare_dies_with_its_pool_process(node: tuple[Process, Celery]) -> None:
    worker, sender = node
    # A pool process killed before Celery saw it start stops the whole worker.
    # Idle spares only: the job's own process may still be on its way out.
    spares = spares_after_a_job(worker, sender)
    pools = worker.children()
    assert sorted(pool_of(pid, pools) or 0 for pid in spares) == sorted(pools)
    pool = pools[0]
    [theirs] = [pid for pid in spares if pool_of(pid, pools) == pool]

    os.kill(pool, signal.SIGKILL)

    wait_until(lambda: not alive(theirs), timeout=10, message="the spare outlived its pool process")
    assert run_job(sender).status == "succeeded"


def test_when_the_nodes_fork_server_dies_each_pool_process_forks_its_own(
    node: tuple[Process, Celery],
) -> None:
    worker, sender = node
    [server] = worker.fork_servers()

    os.kill(server, signal.SIGKILL)

    # Jobs go on: the spares already forked outlive the fork server, and the
    # next ones come from fork servers of the pool processes' own.
    assert [run_job(sender).status for _ in range(4)] == ["succeeded"] * 4
    servers = worker.fork_servers()
    assert servers
    assert {parent_of(pid) for pid in servers} <= set(worker.children())
