"""Flower, as ``bin/ephemera flower`` runs it: behind basic auth, and blind to photos.

Flower sees every task event of every worker, so it is one more place a job id,
a photo or its metadata could show up. It must not: tasks carry a hashed
``argsrepr`` only, and nobody without the credentials sees even that.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import version
from urllib.parse import urlencode

import pytest

from backend.pseudonyms import hashed_id
from tests.conftest import Persona, Upload, Worker
from tests.harness import (
    ENTRYPOINT,
    REPO,
    HttpResponse,
    Process,
    basic_auth,
    ephemera_env,
    http_request,
    wait_for_http,
    wait_until,
)
from tests.integration.helpers import (
    allow_face_verify,
    assert_no_descriptor_in,
    face_descriptors,
    pair_form,
    submit,
)
from tests.services import free_port

pytestmark = pytest.mark.slow

PEOPLE = REPO / "tests" / "workers" / "models" / "data" / "people"

#: The query the tasks page's table sends for its rows.
DATATABLE = "/tasks/datatable?" + urlencode(
    {
        "draw": 1,
        "start": 0,
        "length": 100,
        "order[0][column]": 0,
        "order[0][dir]": "desc",
        "columns[0][data]": "received",
    }
)
#: Every kind of page Flower serves: its UI, its REST API and its Prometheus metrics.
PAGES = [
    "/",
    "/workers",
    "/tasks",
    DATATABLE,
    "/broker",
    "/api/workers",
    "/api/tasks",
    "/api/task/types",
    "/api/queues/length",
    "/metrics",
]
ARGSREPR = re.compile(r"^\(job:[0-9a-f]{16}\)$")


@dataclass(frozen=True)
class Flower:
    process: Process
    port: int
    credentials: str

    def get(self, path: str, credentials: str | None = None) -> HttpResponse:
        headers = basic_auth(credentials) if credentials is not None else {}
        return http_request(self.port, path, headers=headers, timeout=15)

    def get_authorized(self, path: str) -> HttpResponse:
        return self.get(path, self.credentials)


@pytest.fixture(scope="module")
def flower(tmp_path_factory: pytest.TempPathFactory, worker: Worker) -> Iterator[Flower]:
    """Real Flower on a free port, watching the session's worker."""
    port = free_port()
    # No comma: Flower reads a comma-separated list of user:password pairs.
    credentials = f"ops:{secrets.token_hex(24)}"
    env = ephemera_env(FLOWER_PORT=str(port), FLOWER_BASIC_AUTH=credentials)
    process = Process.start("flower", env=env, log_dir=tmp_path_factory.mktemp("flower"))
    try:
        wait_for_http(process, port, "/healthcheck")
        running = Flower(process=process, port=port, credentials=credentials)
        # Flower learns about tasks from events only: once the worker's heartbeat has
        # reached it, its event receiver is live and sees the jobs that follow.
        online = f'flower_worker_online{{worker="{worker.hostname}"}} 1.0'
        wait_until(
            lambda: online in running.get_authorized("/metrics").text().splitlines(),
            timeout=30,
            message="Flower never received a worker heartbeat",
            interval=0.5,
        )
        yield running
    finally:
        process.stop()


def page_id(path: str) -> str:
    return path.split("?", 1)[0]


def not_refused(path: str, who: str, response: HttpResponse) -> str:
    # Flower's Metrics handler (flower/views/monitor.py) has no @web.authenticated:
    # basic auth never covers /metrics, whatever the options.
    return (
        f"Flower {version('flower')} serves {path} {who}: {response.status}, "
        f"{len(response.body)} bytes, expected 401"
    )


@pytest.mark.parametrize("path", PAGES, ids=page_id)
def test_flower_answers_401_without_credentials(flower: Flower, path: str) -> None:
    response = flower.get(path)
    assert response.status == 401, not_refused(path, "without credentials", response)


@pytest.mark.parametrize("path", PAGES, ids=page_id)
def test_flower_answers_401_to_wrong_credentials(flower: Flower, path: str) -> None:
    user, password = flower.credentials.split(":", 1)
    for wrong in (f"{user}:{secrets.token_hex(24)}", f"admin:{password}", f"{user}:"):
        response = flower.get(path, wrong)
        assert response.status == 401, not_refused(
            path, f"to {wrong.split(':')[0]}:<wrong>", response
        )


@pytest.mark.parametrize("path", PAGES, ids=page_id)
def test_flower_answers_200_to_the_right_credentials(flower: Flower, path: str) -> None:
    assert flower.get_authorized(path).status == 200


def test_flower_shows_a_job_only_by_its_hashed_id(
    flower: Flower, alice: Persona, canary_jpeg: Upload
) -> None:
    response = submit(alice.api, canary_jpeg.data, HTTP_PREFER="wait=60")
    assert response.status_code == 201, response.content
    job_id = response.json()["id"]
    argsrepr = f"(job:{hashed_id(job_id)})"

    def flower_task() -> dict[str, object] | None:
        tasks = json.loads(flower.get_authorized("/api/tasks").body)
        for uuid, task in tasks.items():
            if task["args"] == argsrepr and task["state"] == "SUCCESS":
                return {"uuid": uuid, **task}
        return None

    task = wait_until(flower_task, timeout=20, message="Flower never saw the job's task succeed")

    tasks = json.loads(flower.get_authorized("/api/tasks").body)
    assert tasks, "Flower knows no task"
    for shown in tasks.values():
        if shown["name"] == "workers.run_job":
            assert ARGSREPR.match(shown["args"]), shown
            assert shown["kwargs"] == "{}", shown

    # Everything Flower serves about this task, its lists and its pages: no raw job id,
    # no EXIF canary, no image bytes, raw or base64.
    image = canary_jpeg.data
    secrets_of_the_photo = [
        job_id.encode(),
        job_id.replace("-", "").encode(),
        canary_jpeg.canary.encode(),
        image[200:248],
        base64.b64encode(image[300:348]),
        base64.urlsafe_b64encode(image[300:348]),
    ]
    pages = [*PAGES, f"/task/{task['uuid']}", f"/api/task/info/{task['uuid']}"]
    for path in pages:
        page = flower.get_authorized(path)
        assert page.status == 200, path
        for secret in secrets_of_the_photo:
            assert secret not in page.body, f"{path} shows {secret[:40]!r}"
    assert argsrepr.encode() in flower.get_authorized(f"/api/task/info/{task['uuid']}").body


def test_flower_shows_nothing_of_a_face_verify_job(flower: Flower, alice: Persona) -> None:
    image, reference = (PEOPLE / "obama.jpg").read_bytes(), (PEOPLE / "obama2.jpg").read_bytes()
    allow_face_verify(alice.name)
    form = pair_form(reference)
    response = submit(alice.api, image, "face_verify", form=form, HTTP_PREFER="wait=60")
    assert response.status_code == 201, response.content
    argsrepr = f"(job:{hashed_id(response.json()['id'])})"

    def flower_task() -> str | None:
        tasks = json.loads(flower.get_authorized("/api/tasks").body)
        done = [uuid for uuid, task in tasks.items() if task["args"] == argsrepr]
        return done[0] if done and tasks[done[0]]["state"] == "SUCCESS" else None

    uuid = wait_until(flower_task, timeout=20, message="Flower never saw the job succeed")

    pages = [flower.get_authorized(path).body for path in [*PAGES, f"/api/task/info/{uuid}"]]
    for page in pages:
        assert reference[200:248] not in page
        assert base64.b64encode(reference[300:348]) not in page
    assert_no_descriptor_in(pages, face_descriptors(image, reference))


@pytest.mark.parametrize("value", [None, ""], ids=["unset", "empty"])
def test_flower_refuses_to_start_without_basic_auth(value: str | None) -> None:
    env = ephemera_env(FLOWER_PORT=str(free_port()))
    env.pop("FLOWER_BASIC_AUTH", None)
    if value is not None:
        env["FLOWER_BASIC_AUTH"] = value
    try:
        result = subprocess.run(
            [str(ENTRYPOINT), "flower"],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("bin/ephemera flower started without FLOWER_BASIC_AUTH")
    assert result.returncode != 0
    assert "FLOWER_BASIC_AUTH must be set" in result.stderr
