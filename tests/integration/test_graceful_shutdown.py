"""SIGTERM, as Kubernetes or honcho sends it, loses no request and no job.

Real processes through the one entrypoint, ``bin/ephemera``: the web under
gunicorn and the Celery worker, on the session's Redis.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis

from backend.ephemeral import keys, store
from backend.pseudonyms import hashed_id
from tests.conftest import Persona, jpeg_with_exif, migrate_worker_database, portrait
from tests.harness import (
    Process,
    ephemera_env,
    http_request,
    manage,
    multipart,
    running,
    send_request,
    wait_for_http,
    wait_until,
)
from tests.integration.helpers import submit, wait_for
from tests.services import free_port
from workers.celery_app import app

pytestmark = pytest.mark.slow

#: Seconds the long poll in flight waits; SIGTERM lands in the middle of it.
LONG_POLL = 5
#: A Redis database of the session's server that no worker consumes from, so the
#: web's job stays queued for the whole long poll whatever else this session runs.
WEB_REDIS_DB = 9
#: A cartoonize of this photo takes about 4 s on two shared cores: long enough to
#: signal the worker while it holds the job.
BIG_PARAMS = '{"smoothing": 5}'


def big_photo() -> bytes:
    return jpeg_with_exif(portrait((2048, 2048)), f"big-{uuid.uuid4().hex}")


def small_photo() -> bytes:
    return jpeg_with_exif(portrait((256, 256)), f"small-{uuid.uuid4().hex}")


# --- The web --------------------------------------------------------------------------


@pytest.fixture
def web_redis() -> Iterator[tuple[str, redis.Redis]]:
    """The URL of a Redis database of the session's server that only this test uses."""
    base = os.environ["REDIS_URL"].rsplit("/", 1)[0]
    url = f"{base}/{WEB_REDIS_DB}"
    conn = redis.Redis.from_url(url)
    assert conn.dbsize() == 0, f"Redis db {WEB_REDIS_DB} is not empty: another test uses it"
    yield url, conn
    conn.flushdb()
    conn.close()


def long_poll_blocked(conn: redis.Redis) -> bool:
    """True once a client of this database blocks in XREAD: the web's long poll."""
    return any(
        client["cmd"] == "xread" and "b" in client["flags"] and client["db"] == str(WEB_REDIS_DB)
        for client in conn.client_list()
    )


def refuses_connections(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except ConnectionRefusedError:
        return True


def test_sigterm_to_the_web_finishes_the_request_in_flight_then_refuses_connections(
    tmp_path: Path, web_redis: tuple[str, redis.Redis]
) -> None:
    redis_url, conn = web_redis
    port = free_port()
    # The pytest-django test database is invisible to another process: the web
    # gets a file database of its own, migrated and keyed by manage.py.
    env = ephemera_env(
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        REDIS_URL=redis_url,
        PORT=str(port),
        WEB_CONCURRENCY="1",
    )
    manage(env, "migrate", "--noinput")
    key = manage(env, "create_api_key", "--name", "graceful-web").strip()
    auth = {"Authorization": f"Bearer {key}"}

    with running("web", env=env, log_dir=tmp_path) as web:
        assert wait_for_http(web, port, "/healthz").status == 200
        body, content_type = multipart({"task": "cartoonize"}, {"image": ("a.jpg", small_photo())})
        created = http_request(
            port,
            "/api/v1/jobs",
            method="POST",
            body=body,
            headers={**auth, "Content-Type": content_type},
        )
        assert created.status == 202, created.text()
        job_id = json.loads(created.body)["id"]

        in_flight = send_request(
            port,
            f"/api/v1/jobs/{job_id}",
            headers={**auth, "Prefer": f"wait={LONG_POLL}"},
            timeout=LONG_POLL + 20,
        )
        wait_until(
            lambda: long_poll_blocked(conn),
            timeout=10,
            message="the long poll never reached Redis",
        )
        signalled = time.monotonic()
        web.terminate()

        response = in_flight.getresponse()
        answer = response.read()
        in_flight.close()
        answered_after = time.monotonic() - signalled
        assert response.status == 200, answer
        assert response.getheader("Preference-Applied") == f"wait={LONG_POLL}"
        job = json.loads(answer)
        assert (job["id"], job["status"]) == (job_id, "queued")
        # It was served to the end of its wait, not cut short by the signal.
        assert answered_after > 0.5, f"answered {answered_after:.2f}s after SIGTERM"

        # Well within --graceful-timeout (70 s): the master exits once the request is done.
        assert web.wait_exit(timeout=LONG_POLL + 15) == 0, web.log()
        assert "Handling signal: term" in web.log()
        assert "SIGKILL" not in web.log() and "WORKER TIMEOUT" not in web.log()
        assert refuses_connections(port), "something still listens after the web exited"


# --- The worker -----------------------------------------------------------------------


@pytest.fixture
def other_workers_paused() -> Iterator[list[str]]:
    """Workers already running (the session's ``worker`` fixture) stop taking jobs, so
    every job of the test goes to the workers it starts; they take jobs again after.

    Addressed by name, not broadcast: a worker the test starts later is not paused.
    """
    names = sorted({name for reply in app.control.ping(timeout=1.5) for name in reply})
    if names:
        replies = app.control.cancel_consumer(
            "jobs", destination=names, reply=True, timeout=5, limit=len(names)
        )
        assert len(replies) == len(names), f"not every worker paused: {replies} of {names}"
    yield names
    if names:
        app.control.add_consumer("jobs", destination=names, reply=True, timeout=5, limit=len(names))


@contextmanager
def ephemera_worker(tmp_path: Path) -> Iterator[Process]:
    """``bin/ephemera worker`` with one pool child, ready once its models are loaded."""
    health_dir = tmp_path / f"health-{uuid.uuid4().hex[:6]}"
    env = ephemera_env(WORKER_CONCURRENCY="1", EPHEMERA_HEALTH_DIR=str(health_dir))
    migrate_worker_database(env)
    with running("worker", env=env, log_dir=tmp_path) as worker:

        def ready() -> bool:
            worker.ensure_running()
            return (health_dir / "worker.ready").exists()

        wait_until(ready, timeout=120, message="the worker never loaded its models", interval=0.2)
        yield worker


def wait_until_running(job_id: str, worker: Process) -> None:
    def started() -> bool:
        record = store.get_job(job_id)
        assert record is not None, "the job record is gone"
        return record.status != "queued"

    wait_until(started, timeout=60, message="the worker never started the job")
    assert store.get_job(job_id).status == "running"  # type: ignore[union-attr]
    wait_until(
        lambda: hashed_id(job_id) in worker.log(),
        timeout=5,
        message=f"another worker took the job:\n{worker.log()}",
    )


def queued_job_ids(conn: redis.Redis, queue: str = "jobs") -> list[str]:
    """The job ids in the messages waiting in a queue (kombu keeps a Redis list per queue)."""
    ids = []
    for raw in conn.lrange(queue, 0, -1):
        message = json.loads(raw)
        args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
        ids.extend(args)
    return ids


def unacked_job_ids(conn: redis.Redis) -> list[str]:
    ids = []
    for raw in conn.hvals("unacked"):
        message, _exchange, _routing_key = json.loads(raw)
        args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
        ids.extend(args)
    return ids


def submit_job(alice: Persona, data: bytes, params: str = "{}") -> str:
    response = submit(alice.api, data, form={"params": params})
    assert response.status_code == 202, response.content
    return str(response.json()["id"])


def test_sigterm_to_a_worker_lets_it_finish_the_job_in_hand(
    alice: Persona, redis_conn: redis.Redis, other_workers_paused: list[str], tmp_path: Path
) -> None:
    with ephemera_worker(tmp_path) as worker:
        job_id = submit_job(alice, big_photo(), BIG_PARAMS)
        wait_until_running(job_id, worker)
        signalled = time.time()
        worker.terminate()
        assert worker.wait_exit(timeout=90) == 0, worker.log()

    record = store.get_job(job_id)
    assert record is not None
    assert record.status == "succeeded", record
    assert record.finished_at is not None and record.finished_at > signalled
    assert "Warm shutdown" in worker.log()
    # Acknowledged once done: nothing left to re-deliver, so it cannot run twice.
    assert job_id not in queued_job_ids(redis_conn) + unacked_job_ids(redis_conn)
    assert wait_for(alice.api, job_id)["result"] is not None


def test_a_job_still_queued_when_the_worker_stops_waits_for_the_next_worker(
    alice: Persona, redis_conn: redis.Redis, other_workers_paused: list[str], tmp_path: Path
) -> None:
    with ephemera_worker(tmp_path) as first:
        in_hand = submit_job(alice, big_photo(), BIG_PARAMS)
        wait_until_running(in_hand, first)
        waiting = submit_job(alice, small_photo())
        first.terminate()
        assert first.wait_exit(timeout=90) == 0, first.log()

    assert store.get_job(in_hand).status == "succeeded"  # type: ignore[union-attr]
    assert store.get_job(waiting).status == "queued"  # type: ignore[union-attr]
    assert waiting in queued_job_ids(redis_conn), "the queued job's message is gone from Redis"
    assert redis_conn.exists(keys.input_key(waiting)), "the queued job's input is gone"

    with ephemera_worker(tmp_path) as second:
        job = wait_for(alice.api, waiting)
        assert job["status"] == "succeeded", job
        second.terminate()
        assert second.wait_exit(timeout=30) == 0, second.log()
    assert waiting not in queued_job_ids(redis_conn) + unacked_job_ids(redis_conn)
