"""The typed client against the real stack: gunicorn, a Celery worker, Redis."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import redis

from ephemera_client import (
    AuthenticationFailed,
    Client,
    InvalidRequest,
    NotFound,
    ResultGone,
    UnsupportedMediaType,
)
from tests.harness import REPO
from tests.integration.live_stack import LiveStack, photo_file

pytestmark = pytest.mark.slow


@pytest.fixture
def client(live_stack: LiveStack, redis_conn: redis.Redis) -> Iterator[Client]:
    with Client(url=live_stack.url, api_key=live_stack.key) as opened:
        yield opened


def decode(data: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None, "the result is not an image"
    return image


def test_it_lists_the_catalogue(client: Client) -> None:
    tasks = {task.name: task for task in client.tasks()}

    assert {"anonymize", "detect", "face_crop", "cartoonize"} <= set(tasks)
    assert tasks["anonymize"].params_schema["properties"]["mode"]["enum"] == [
        "blur",
        "pixelate",
        "box",
    ]
    assert tasks["detect"].output == "application/json"


def test_a_result_downloads_once(client: Client, tmp_path: Path) -> None:
    photo = photo_file(tmp_path)

    job = client.submit("anonymize", photo, {"mode": "pixelate"}, wait=30)
    job = client.wait(job.id, timeout=60)
    download = client.download(job)

    assert job.status == "succeeded" and job.result is not None
    assert decode(download.data).shape == cv2.imread(str(photo)).shape
    assert download.content_type == job.result.content_type
    with pytest.raises(ResultGone) as gone:
        client.download(job)
    assert (gone.value.status, gone.value.code) == (410, "result_gone")


def test_wait_reports_each_poll_until_the_end(client: Client, tmp_path: Path) -> None:
    job = client.submit("detect", photo_file(tmp_path))
    seen: list[str] = []

    done = client.wait(
        job.id, timeout=60, step=1, on_update=lambda polled: seen.append(polled.status)
    )

    assert done.status == "succeeded"
    assert seen[-1] == "succeeded"
    assert set(seen) <= {"queued", "running", "succeeded"}
    faces = client.download(done)
    assert faces.content_type == "application/json"


def test_delete_purges_the_result_in_redis(
    client: Client, tmp_path: Path, redis_conn: redis.Redis
) -> None:
    job = client.wait(client.submit("cartoonize", photo_file(tmp_path), wait=30).id, timeout=60)
    assert job.status == "succeeded"
    assert list(redis_conn.scan_iter("eph:res:*")), "no result stored to delete"

    client.delete(job.id)

    assert not list(redis_conn.scan_iter("eph:res:*"))
    assert not redis_conn.exists(f"eph:in:{job.id}")
    # The job had ended: it keeps its end, without a result.
    after = client.get(job.id)
    assert (after.status, after.result) == ("succeeded", None)


def test_errors_arrive_as_typed_exceptions(
    client: Client, live_stack: LiveStack, tmp_path: Path
) -> None:
    with pytest.raises(InvalidRequest) as unknown:
        client.submit("no_such_task", photo_file(tmp_path))
    assert unknown.value.code == "unknown_task"

    # Encrypted, the upload is judged by the job process: the job fails with the code
    # the web answers a plain upload with.
    not_an_image = b"this is not an image, only text" * 10
    job = client.submit("anonymize", not_an_image, wait=60)
    assert job.e2e and job.error is not None
    assert (job.status, job.error.code) == ("failed", "unsupported_media_type")
    # Its one-time reply key has nothing left to open: the client let go of it.
    assert job.id not in client._replies
    with (
        Client(url=live_stack.url, api_key=live_stack.key, e2e=False) as plain,
        pytest.raises(UnsupportedMediaType),
    ):
        plain.submit("anonymize", not_an_image)

    with pytest.raises(NotFound) as missing:
        client.get(str(uuid.uuid4()))
    assert missing.value.code == "job_not_found"

    with (
        Client(url=live_stack.url, api_key="ek_00000000_not-a-real-key") as stranger,
        pytest.raises(AuthenticationFailed),
    ):
        stranger.tasks()


def test_requests_share_one_keep_alive_connection(client: Client) -> None:
    ports = set()
    for _ in range(3):
        response = client._http.get("/api/v1/tasks")
        stream = response.extensions["network_stream"]
        ports.add(stream.get_extra_info("client_addr")[1])

    assert len(ports) == 1, f"one connection per request: local ports {ports}"


def test_the_client_imports_nothing_of_the_service() -> None:
    probe = (
        "import sys, ephemera_client.cli; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'backend', 'workers', 'django', 'rest_framework', 'torch', 'cv2', 'celery'}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True
    )

    assert out.stdout.strip() == "[]"
