"""Worker processes SIGKILLed under load: every job ends, none runs twice.

Pool processes, job processes and the fork servers that start them, of a real
worker node, are killed at random while four keep-alive clients submit jobs.
Every job id handed out ends in a terminal status (a killed one
``failed``/``worker_lost``), the node replaces what was killed and goes on,
and no job is run to a second result: the succeeded count in the metrics
equals the jobs that answer ``succeeded``.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import pytest
import redis

from backend.ephemeral.keys import METRICS_KEY
from tests.conftest import portrait
from tests.harness import Process, Stack, wait_until
from tests.load import follow_to_the_end, run_load
from tests.services import fresh_database_url

pytestmark = pytest.mark.slow

#: A Redis database of the session's server that only this module uses.
FAULTS_REDIS_DB = 14
JOBS = 40
KILLS = 8
#: What the killer aims at, in turn.
TARGETS = ("job", "fork server", "job", "pool")


@pytest.fixture
def faulty_stack(tmp_path: Path) -> Iterator[tuple[Stack, Process, int]]:
    url = f"{os.environ['REDIS_URL'].rsplit('/', 1)[0]}/{FAULTS_REDIS_DB}"
    redis.Redis.from_url(url).flushdb()
    running = Stack.create(
        redis_url=url,
        workdir=tmp_path / "stack",
        database_url=fresh_database_url(tmp_path, "faults"),
    )
    try:
        _, port = running.web()
        worker = running.worker(WORKER_CONCURRENCY="2")
        yield running, worker, port
    finally:
        running.stop()
        redis.Redis.from_url(url).flushdb()


def succeeded_in_metrics(url: str) -> int:
    fields = redis.Redis.from_url(url).hgetall(METRICS_KEY)
    return round(
        sum(
            float(value)
            for name, value in fields.items()
            if name.startswith(b"ephemera_jobs_finished_total|") and b"status=succeeded" in name
        )
    )


def test_killed_pool_and_job_processes_end_their_jobs_and_nothing_runs_twice(
    faulty_stack: tuple[Stack, Process, int],
) -> None:
    running, worker, port = faulty_stack
    base = f"http://127.0.0.1:{port}"
    photos = [cv2.imencode(".jpg", portrait((1024, 1024)))[1].tobytes()]
    kills: list[str] = []
    stop = threading.Event()

    def killer() -> None:
        rng = random.Random(7)
        while len(kills) < KILLS and not stop.is_set():
            time.sleep(0.5)
            kind = TARGETS[len(kills) % len(TARGETS)]
            targets = {
                "job": lambda: worker.job_processes(busy=True),
                "fork server": worker.fork_servers,
                "pool": worker.children,
            }[kind]()
            if targets:
                os.kill(rng.choice(targets), signal.SIGKILL)
                kills.append(kind)

    thread = threading.Thread(target=killer)
    thread.start()
    try:
        report = run_load(
            base, running.key, photos=photos, jobs=JOBS, threads=4, params='{"smoothing": 4}'
        )
        follow_to_the_end(base, running.key, report, patience=120)
    finally:
        stop.set()
        thread.join()

    assert len(kills) >= 7 and set(kills) == set(TARGETS), (kills, report)
    worker.ensure_running()
    assert not report.silently_lost, report
    assert len(report.handed_out) == JOBS, report
    assert set(report.outcomes) <= {"succeeded", "failed/worker_lost"}, report
    assert report.outcomes["succeeded"] >= JOBS - len(kills), report
    # An end whose pool process was killed is accounted by the worker's parent
    # when it sees the death, which may be after the client saw the job end.
    succeeded = report.outcomes["succeeded"]
    wait_until(
        lambda: succeeded_in_metrics(running.env["REDIS_URL"]) >= succeeded,
        timeout=15,
        message="an end is missing from the metrics",
    )
    assert succeeded_in_metrics(running.env["REDIS_URL"]) == succeeded
