"""Redis restarts with nothing in it: no job the service handed out is silently lost.

Redis keeps nothing on disk, by design, so a restart loses every record,
upload, result and queued message. The web, the worker, beat and Flower must
reconnect by themselves, and every job id handed out must answer a terminal
status (``failed``/``lost`` for what died with Redis), never 404.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import httpx
import pytest

from tests.conftest import portrait
from tests.harness import Process, Stack, wait_until
from tests.services import free_port, fresh_database_url, start_redis

pytestmark = pytest.mark.slow

TERMINAL = {"succeeded", "failed", "cancelled", "expired"}


class RestartableRedis:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.proc = start_redis(self.port, workdir)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def restart(self) -> None:
        """Killed outright, then started empty on the same port (no persistence)."""
        self.kill()
        self.proc = start_redis(self.port, self.workdir)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[Stack, RestartableRedis, httpx.Client]]:
    server = RestartableRedis(tmp_path)
    running = Stack.create(
        redis_url=server.url,
        workdir=tmp_path / "stack",
        database_url=fresh_database_url(tmp_path, "restart"),
        FLOWER_BASIC_AUTH="operator:a-long-enough-flower-password",
    )
    try:
        _, port = running.web()
        running.worker(WORKER_CONCURRENCY="1")
        for role in ("beat", "flower"):
            running.processes.append(
                Process.start(
                    role,
                    env={**running.env, "FLOWER_PORT": str(free_port())},
                    log_dir=running.workdir,
                )
            )
        headers = {"Authorization": f"Bearer {running.key}"}
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=30) as http:
            yield running, server, http
    finally:
        running.stop()
        server.stop()


def submit(http: httpx.Client, photo: bytes, params: str = "{}") -> str:
    answer = http.post(
        "/api/v1/jobs",
        files={"image": ("p.jpg", photo)},
        data={"task": "cartoonize", "params": params},
    )
    assert answer.status_code == 202, answer.text
    return str(answer.json()["id"])


def test_every_job_id_answers_a_terminal_status_after_redis_lost_everything(
    stack: tuple[Stack, RestartableRedis, httpx.Client],
) -> None:
    running, server, http = stack
    small = cv2.imencode(".jpg", portrait((256, 256)))[1].tobytes()
    big = cv2.imencode(".jpg", portrait((2048, 2048)))[1].tobytes()

    done = submit(http, small)
    assert http.get(f"/api/v1/jobs/{done}", headers={"Prefer": "wait=60"}).json()["status"] == (
        "succeeded"
    )
    # One job running (a slow one), several queued behind it.
    in_flight = [submit(http, big, '{"smoothing": 5}') for _ in range(4)]
    wait_until(
        lambda: http.get(f"/api/v1/jobs/{in_flight[0]}").json()["status"] == "running",
        timeout=60,
        message="the slow job never started",
    )

    server.restart()

    answers = {}
    for job_id in [done, *in_flight]:
        answer = wait_until(
            lambda job_id=job_id: _answer(http, job_id),
            timeout=60,
            message="the web did not answer after Redis restarted",
        )
        answers[job_id] = answer
    for job_id, (status_code, body) in answers.items():
        assert status_code == 200, (job_id, body)
        assert body["status"] in TERMINAL, body
        assert body["error"]["code"] == "lost", body
        assert "submit it again" in body["error"]["message"].lower()

    # Everyone reconnected by themselves: a new job goes through.
    again = wait_until(lambda: _submit_or_none(http, small), timeout=60, message="no new submit")
    final = http.get(f"/api/v1/jobs/{again}", headers={"Prefer": "wait=60"}).json()
    assert final["status"] == "succeeded", final
    for process in running.processes:
        process.ensure_running()


def test_a_worker_started_while_redis_is_down_runs_jobs_once_it_answers(tmp_path: Path) -> None:
    """A node that boots before Redis (a rollout, a Redis pod still starting)
    loads its models, skips only the lifecycle's rehearsal, and serves jobs
    as soon as Redis answers, with isolated job processes.
    """
    server = RestartableRedis(tmp_path)
    server.kill()
    running = Stack.create(
        redis_url=server.url,
        workdir=tmp_path / "stack",
        database_url=fresh_database_url(tmp_path, "redis_late"),
    )
    try:
        worker = Process.start(
            "worker", env={**running.env, "WORKER_CONCURRENCY": "1"}, log_dir=running.workdir
        )
        running.processes.append(worker)
        # Its models loaded, its tasks rehearsed, its fork server up: all without Redis.
        wait_until(
            lambda: worker.ensure_running() or bool(worker.fork_servers()),
            timeout=120,
            message="the worker did not start its fork server without Redis",
        )
        assert "lifecycle_not_rehearsed" in worker.log()

        server.restart()
        _, port = running.web()
        headers = {"Authorization": f"Bearer {running.key}"}
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=90) as http:
            photo = cv2.imencode(".jpg", portrait((256, 256)))[1].tobytes()
            job = http.get(
                f"/api/v1/jobs/{submit(http, photo)}", headers={"Prefer": "wait=60"}
            ).json()
        assert job["status"] == "succeeded", job
        worker.ensure_running()
        assert "job_process_died" not in worker.log()
    finally:
        running.stop()
        server.stop()


def _answer(http: httpx.Client, job_id: str) -> tuple[int, dict] | None:
    try:
        answer = http.get(f"/api/v1/jobs/{job_id}")
    except httpx.HTTPError:
        return None
    if answer.status_code == 503:
        return None
    return answer.status_code, answer.json()


def _submit_or_none(http: httpx.Client, photo: bytes) -> str | None:
    try:
        answer = http.post(
            "/api/v1/jobs", files={"image": ("p.jpg", photo)}, data={"task": "cartoonize"}
        )
    except httpx.HTTPError:
        return None
    if answer.status_code != 202:
        time.sleep(0.5)
        return None
    return str(answer.json()["id"])
