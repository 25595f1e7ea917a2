"""A worker that dies mid-job never leaves the job `running`."""

from __future__ import annotations

import os
import shutil
import signal
import time
from pathlib import Path

import pytest

from backend.ephemeral import connection, keys, store
from tests.conftest import Persona, Worker, jpeg_with_exif, portrait, worker_env
from tests.harness import start_worker, wait_until
from tests.integration.helpers import submit, wait_for

pytestmark = pytest.mark.slow


def wait_until_running(job_id: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while store.get_job(job_id).status == "queued":
        assert time.monotonic() < deadline, "the job never started"
        time.sleep(0.02)


def test_a_job_whose_worker_child_is_killed_ends_failed_worker_lost(
    alice: Persona, worker: Worker
) -> None:
    big = jpeg_with_exif(portrait((2048, 2048)), "big")
    job_id = submit(alice.api, big, form={"params": '{"smoothing": 5}'}).json()["id"]
    wait_until_running(job_id)
    children = worker.children()
    assert children, "the worker has no pool child"
    assert worker.job_processes(busy=True), "no job process runs the job"
    logged = len(worker.log_path.read_bytes())
    for pid in children:
        os.kill(pid, signal.SIGKILL)

    job = wait_for(alice.api, job_id)
    assert job["status"] == "failed"
    assert job["error"]["code"] == "worker_lost"
    # Its job process, the fork server's child and not the pool process's, is
    # killed with it, in the middle of the model: it does not run to its end.
    wait_until(
        lambda: (
            b'"event": "job_process_died", "signal": 9' in worker.log_path.read_bytes()[logged:]
        ),
        timeout=10,
        message="the job process was not killed with its pool process",
    )
    assert not connection.client().exists(keys.input_key(job_id))
    assert not list(connection.client().scan_iter(match="eph:res:*"))

    # The worker replaced its child and goes on with the next job.
    small = jpeg_with_exif(portrait((256, 256)), "small")
    assert wait_for(alice.api, submit(alice.api, small).json()["id"])["status"] == "succeeded"


def test_a_worker_with_a_tampered_model_file_does_not_start(tmp_path: Path) -> None:
    from django.conf import settings

    models = tmp_path / "models"
    shutil.copytree(settings.EPHEMERA_MODEL_DIR, models)
    pnet = models / "pnet.pt"
    data = bytearray(pnet.read_bytes())
    data[len(data) // 2] ^= 0xFF
    pnet.write_bytes(bytes(data))

    env = worker_env(EPHEMERA_MODEL_DIR=str(models), EPHEMERA_HEALTH_DIR=str(tmp_path / "health"))
    with pytest.raises(AssertionError, match="worker exited with 1") as failure:
        start_worker(env, log_dir=tmp_path)
    assert "pnet.pt" in str(failure.value)
    assert "worker_not_started" in str(failure.value)
