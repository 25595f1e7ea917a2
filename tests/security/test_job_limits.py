"""Each job runs under a memory ceiling and time limits; hitting one fails only that job."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import cv2
import pytest
import redis
from celery import Celery

from backend.ephemeral import connection, keys, store
from tests.conftest import (
    REPO,
    migrate_worker_database,
    portrait,
    worker_env,
)
from tests.factories import queued_job
from tests.harness import start_worker

pytestmark = pytest.mark.slow

#: A Redis database no other worker of the session consumes from.
LIMITS_DB = 11

# Runs in a fresh interpreter, like a worker child: caps its own address space
# at what it already uses plus a little, then runs the real pipeline on a job.
CHILD = textwrap.dedent(
    """
    import sys, django
    django.setup()
    from django.conf import settings
    from workers import limits, registry
    from workers.pipeline import process_job
    registry.runner("cartoonize")
    headroom = int(sys.argv[2])
    if headroom:
        size_kb = next(int(line.split()[1]) for line in open("/proc/self/status")
                       if line.startswith("VmSize:"))
        settings.EPHEMERA_WORKER_MEMORY_MB = size_kb // 1024 + headroom
        limits.apply_child_limits()
    print(process_job(sys.argv[1]).outcome)
    """
)


def run_in_child(job_id: str, headroom_mb: int) -> str:
    result = subprocess.run(
        [sys.executable, "-c", CHILD, job_id, str(headroom_mb)],
        cwd=REPO,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "backend.settings"},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return result.stdout.strip().splitlines()[-1]


def test_a_job_over_the_memory_ceiling_fails_out_of_memory(redis_conn: redis.Redis) -> None:
    ok, encoded = cv2.imencode(".jpg", portrait((6000, 4000)))  # 24 MP: 72 MB decoded
    assert ok
    photo = encoded.tobytes()

    assert run_in_child(queued_job(photo), headroom_mb=0) == "succeeded"

    job_id = queued_job(photo)
    assert run_in_child(job_id, headroom_mb=48) == "failed"
    record = store.get_job(job_id)
    assert (record.status, record.error_code) == ("failed", "out_of_memory")
    assert not redis_conn.exists(keys.input_key(job_id))


def address_space_limit(pid: int) -> int:
    """A process's soft RLIMIT_AS, as /proc shows it."""
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max address space"):
            return int(line.split()[3])
    raise AssertionError(f"no address space limit for {pid}")


@pytest.fixture
def limits_db(settings: object, tmp_path: Path) -> Iterator[str]:
    """Point this process's store at a database of its own, for a worker of its own."""
    live = settings.REDIS_URL  # type: ignore[attr-defined]
    url = f"{live.rsplit('/', 1)[0]}/{LIMITS_DB}"
    settings.REDIS_URL = url  # type: ignore[attr-defined]
    connection.forget()
    try:
        yield url
    finally:
        redis.Redis.from_url(url).flushdb()
        settings.REDIS_URL = live  # type: ignore[attr-defined]
        connection.forget()


def test_a_job_over_its_time_limit_fails_and_the_worker_goes_on(
    limits_db: str, tmp_path: Path
) -> None:
    env = worker_env(
        REDIS_URL=limits_db,
        # A 2048x2048 cartoonize with 5 smoothing passes takes well over 0.2 s.
        EPHEMERA_TASK_SOFT_LIMIT="0.2",
        EPHEMERA_TASK_HARD_LIMIT="5",
        EPHEMERA_WORKER_MEMORY_MB="3072",
        EPHEMERA_HEALTH_DIR=str(tmp_path / "health"),
    )
    migrate_worker_database(env)
    worker = start_worker(env, log_dir=tmp_path)
    sender = Celery(broker=limits_db)
    try:
        slow = queued_job(cv2.imencode(".jpg", portrait((2048, 2048)))[1].tobytes())
        connection.client().hset(keys.job_key(slow), "params", '{"smoothing": 5}')
        sender.send_task("workers.run_job", args=[slow], queue="jobs")
        record = store.wait_for_end(slow, timeout=60)
        assert record is not None
        assert (record.status, record.error_code) == ("failed", "time_limit")

        quick = queued_job(cv2.imencode(".jpg", portrait((64, 64)))[1].tobytes())
        sender.send_task("workers.run_job", args=[quick], queue="jobs")
        record = store.wait_for_end(quick, timeout=60)
        assert record is not None
        assert record.status == "succeeded"
        worker.ensure_running()
        # The next job's process waits under the same memory ceiling.
        spares = worker.job_processes(busy=False)
        assert spares
        assert {address_space_limit(pid) for pid in spares} == {3072 * 1024 * 1024}
    finally:
        sender.close()
        worker.stop()
