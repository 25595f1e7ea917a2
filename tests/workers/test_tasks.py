"""The Celery tasks: how a failure of the task itself (not of its job) ends the job."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import redis
from billiard.exceptions import TimeLimitExceeded, WorkerLostError
from django.test import override_settings

from backend.ephemeral import store
from backend.jobs import lifecycle
from backend.jobs.lifecycle import MAX_DELIVERIES
from tests.conftest import OwnRedis, jpeg_with_exif, portrait
from tests.factories import queued_job, running_job
from tests.services import start_redis
from workers.tasks import JobTask, _lose_when_redis_answers, run_job

pytestmark = pytest.mark.django_db


def fails_with(job_id: str, exc: Exception) -> tuple[str, str | None]:
    JobTask().on_failure(exc, "task-id", (job_id,), {}, None)  # type: ignore[arg-type]
    record = store.get_job(job_id)
    assert record is not None
    return record.status, record.error_code


def test_a_hard_time_limit_ends_the_running_job(redis_conn: redis.Redis) -> None:
    assert fails_with(running_job(), TimeLimitExceeded(120)) == ("failed", "time_limit")


def test_a_lost_worker_ends_a_running_job_and_retries_a_queued_one(
    redis_conn: redis.Redis,
) -> None:
    assert fails_with(running_job(), WorkerLostError()) == ("failed", "worker_lost")
    queued = queued_job()
    for _ in range(MAX_DELIVERIES - 1):
        # Died before its claim: the redelivered message may still run it.
        assert fails_with(queued, WorkerLostError()) == ("queued", None)
    # A message that kills every worker it reaches stops circulating.
    assert fails_with(queued, WorkerLostError()) == ("failed", "worker_lost")


def test_any_other_failure_of_the_task_ends_the_job_as_ours(redis_conn: redis.Redis) -> None:
    assert fails_with(queued_job(), RuntimeError("a bug")) == ("failed", "internal_error")
    assert fails_with(running_job(), KeyError("a bug")) == ("failed", "internal_error")


def test_a_failure_without_a_job_id_touches_nothing(redis_conn: redis.Redis) -> None:
    JobTask().on_failure(RuntimeError(), "task-id", (), {}, None)  # type: ignore[arg-type]
    JobTask().on_failure(RuntimeError(), "task-id", (42,), {}, None)  # type: ignore[arg-type]
    assert list(redis_conn.scan_iter(match="eph:*")) == []


def test_without_isolation_the_task_runs_the_job_in_its_own_process(
    redis_conn: redis.Redis,
) -> None:
    job_id = queued_job(jpeg_with_exif(portrait((128, 96)), "x"))
    with override_settings(EPHEMERA_ISOLATE_JOBS=False):
        run_job(job_id)
    assert store.get_job(job_id).status == "succeeded"  # type: ignore[union-attr]


def test_a_job_whose_process_died_in_a_redis_outage_runs_again_once_redis_answers(
    own_redis: OwnRedis, tmp_path: Path
) -> None:
    """Redis goes away and comes back with its data, as a promoted replica does."""
    port, servers = own_redis
    job_id = queued_job()
    data = redis.Redis(port=port)
    saved = {key: (data.dump(key), data.pttl(key)) for key in data.scan_iter(match="eph:*")}
    servers[0].terminate()
    servers[0].wait(timeout=10)
    with pytest.raises(redis.ConnectionError):
        lifecycle.lose(job_id)

    def come_back() -> None:
        time.sleep(1.5)
        servers.append(start_redis(port, tmp_path))
        for key, (dumped, ttl) in saved.items():
            redis.Redis(port=port).restore(key, max(ttl, 0), dumped)

    returning = threading.Thread(target=come_back)
    returning.start()
    try:
        # The task's own step, as it runs after its job process died.
        assert _lose_when_redis_answers(job_id) == "retry"
    finally:
        returning.join()
    assert store.get_job(job_id).status == "queued"  # type: ignore[union-attr]
