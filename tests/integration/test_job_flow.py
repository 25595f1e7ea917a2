"""A photo's whole path, through the real API, the real Redis and a real worker."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from backend.ephemeral import connection, keys, store
from backend.pseudonyms import hashed_id
from tests.conftest import Persona, Upload, Worker
from tests.harness import wait_until
from tests.integration.helpers import pause_consumers, resume_consumers, submit, wait_for

pytestmark = pytest.mark.slow


def test_a_photo_goes_through_cartoonize_once(
    alice: Persona, worker: Worker, canary_jpeg: Upload
) -> None:
    response = submit(alice.api, canary_jpeg.data, HTTP_PREFER="wait=60")
    assert response.status_code == 201, response.content
    job = response.json()
    assert job["status"] == "succeeded", job
    assert job["metrics"]["queued_ms"] >= 0 and job["metrics"]["run_ms"] > 0
    assert job["result"]["content_type"] == "image/jpeg"

    # A HEAD (a link preview, `curl -I`) must not spend the one download.
    assert alice.api.head(job["result"]["url"]).status_code == 405
    download = alice.api.get(job["result"]["url"])
    assert download.status_code == 200
    assert download["Cache-Control"] == "no-store"
    output = cv2.imdecode(np.frombuffer(download.content, np.uint8), cv2.IMREAD_COLOR)
    assert output.shape == (512, 512, 3)
    assert canary_jpeg.canary.encode() not in download.content
    assert b"Exif" not in download.content

    again = alice.api.get(job["result"]["url"])
    assert again.status_code == 410
    assert again.json()["error"]["code"] == "result_gone"


def test_a_job_can_be_polled_until_it_ends(
    alice: Persona, worker: Worker, canary_jpeg: Upload
) -> None:
    response = submit(alice.api, canary_jpeg.data, form={"params": '{"levels": 4}'})
    assert response.status_code == 202
    assert response["Location"] == f"/api/v1/jobs/{response.json()['id']}"
    job = wait_for(alice.api, response.json()["id"])
    assert job["status"] == "succeeded"


def test_delete_purges_a_queued_job_and_it_never_runs(
    alice: Persona, worker: Worker, canary_jpeg: Upload, redis_conn: object
) -> None:
    pause_consumers(worker)
    try:
        job_id = submit(alice.api, canary_jpeg.data).json()["id"]
        assert store.get_job(job_id).status == "queued"
        assert alice.api.delete(f"/api/v1/jobs/{job_id}").status_code == 204
        assert not connection.client().exists(keys.input_key(job_id))
    finally:
        resume_consumers(worker)
    # The message is still delivered; the worker must find nothing to run.
    wait_until(
        lambda: any(
            "job_not_claimed" in line and hashed_id(job_id) in line and "cancelled" in line
            for line in worker.log().splitlines()
        ),
        timeout=20,
        message="the worker never took the cancelled job's message",
    )
    job = alice.api.get(f"/api/v1/jobs/{job_id}").json()
    assert job["status"] == "cancelled"
    assert job["result"] is None
    assert not list(connection.client().scan_iter(match="eph:res:*"))


def test_another_client_gets_404_on_everything_of_the_first(
    alice: Persona, bob: Persona, worker: Worker, canary_jpeg: Upload
) -> None:
    job = submit(alice.api, canary_jpeg.data, HTTP_PREFER="wait=60").json()
    assert job["status"] == "succeeded"
    url = f"/api/v1/jobs/{job['id']}"

    for response in (bob.api.get(url), bob.api.delete(url), bob.api.get(job["result"]["url"])):
        assert response.status_code == 404, response.content
    assert bob.api.get(url).json()["error"]["code"] == "job_not_found"
    # Bob's attempts burned nothing: Alice still gets her single download.
    assert alice.api.get(job["result"]["url"]).status_code == 200


def test_an_unknown_task_is_400(alice: Persona, canary_jpeg: Upload) -> None:
    response = submit(alice.api, canary_jpeg.data, task="mind_reading")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "unknown_task"


def test_a_missing_key_is_401(db: None, canary_jpeg: Upload) -> None:
    from rest_framework.test import APIClient

    response = submit(APIClient(), canary_jpeg.data)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_a_wrong_key_is_401(db: None, canary_jpeg: Upload) -> None:
    from rest_framework.test import APIClient

    api = APIClient()
    api.credentials(HTTP_X_API_KEY="ek_00000000_" + "A" * 43)
    response = submit(api, canary_jpeg.data)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "authentication_failed"


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ('{"levels": 99}', "levels"),
        ('{"levels": "many"}', "levels"),
        ('{"colour": "red"}', "colour"),
        ("[1, 2]", "object"),
        ("{not json", "JSON"),
    ],
)
def test_bad_params_are_400_and_name_the_field(
    alice: Persona, canary_jpeg: Upload, params: str, field: str
) -> None:
    response = submit(alice.api, canary_jpeg.data, form={"params": params})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_params"
    assert field in error["message"]
    assert not list(connection.client().scan_iter(match="eph:in:*"))
