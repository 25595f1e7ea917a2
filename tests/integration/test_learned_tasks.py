"""The learned tasks end to end: the real API, the real worker, the real models.

face_verify takes a second photo (``reference``), needs the operator's leave
for the client and ``consent=true`` on the job; its face descriptors stay in
the worker: not in the result, Redis, or any log.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import redis
from PIL import Image

from backend.audit.models import AuditEvent
from backend.ephemeral import keys
from backend.pseudonyms import hashed_id
from tests.conftest import Persona, Worker, jpeg_with_exif, portrait
from tests.integration.helpers import (
    allow_face_verify,
    assert_no_descriptor_in,
    face_descriptors,
    pair_form,
    pause_consumers,
    redis_values,
    resume_consumers,
    submit,
    wait_for,
)

pytestmark = pytest.mark.slow

PEOPLE = Path(__file__).resolve().parents[1] / "workers" / "models" / "data" / "people"
VERDICT_KEYS = {"same_person", "distance", "threshold", "faces"}


def person(name: str) -> bytes:
    return (PEOPLE / name).read_bytes()


def run(persona: Persona, image: bytes, task: str, **form: object) -> dict[str, object]:
    answer = submit(persona.api, image, task=task, form=form)
    assert answer.status_code == 202, answer.content
    return wait_for(persona.api, answer.json()["id"])


def download(persona: Persona, job: dict[str, object]) -> bytes:
    assert job["status"] == "succeeded", job
    result = job["result"]
    assert isinstance(result, dict)
    answer = persona.api.get(result["url"])
    assert answer.status_code == 200
    return answer.content


def test_the_catalogue_lists_the_learned_tasks_with_their_inputs(alice: Persona) -> None:
    tasks = {task["name"]: task for task in alice.api.get("/api/v1/tasks").json()["tasks"]}

    assert {"background", "stylize", "face_verify", "parse"} <= set(tasks)
    assert tasks["face_verify"]["inputs"] == ["image", "reference"]
    assert tasks["face_verify"]["consent_required"] is True
    assert tasks["face_verify"]["output"] == "application/json"
    assert tasks["parse"]["output"] == "application/json"
    for name in ("background", "stylize", "parse"):
        assert tasks[name]["inputs"] == ["image"]
        assert tasks[name]["consent_required"] is False
    assert "face mesh" in tasks["parse"]["description"]
    assert "geometry" in tasks["parse"]["description"].lower()


@pytest.mark.parametrize(
    ("task", "params"),
    [("background", {"mode": "color", "color": "#00ff00"}), ("stylize", {"style": "red-fire"})],
)
def test_an_image_task_returns_a_changed_photo_of_the_same_size(
    alice: Persona, worker: Worker, task: str, params: dict[str, object]
) -> None:
    photo = portrait((640, 480))
    upload = cv2.imencode(".jpg", photo, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()

    job = run(alice, upload, task, params=json.dumps(params))

    out = cv2.imdecode(np.frombuffer(download(alice, job), np.uint8), cv2.IMREAD_COLOR)
    assert out.shape == photo.shape
    assert np.abs(out.astype(int) - photo.astype(int)).mean() > 10


def test_background_paints_the_corners_and_keeps_the_person(alice: Persona, worker: Worker) -> None:
    upload = cv2.imencode(".png", portrait())[1].tobytes()

    job = run(alice, upload, "background", params=json.dumps({"mode": "color"}))

    out = cv2.imdecode(np.frombuffer(download(alice, job), np.uint8), cv2.IMREAD_COLOR)
    assert np.abs(out[:20, :20].astype(int) - 128).max() <= 2  # the default grey
    assert np.array_equal(out[200:220, 240:260], portrait()[200:220, 240:260])  # her face


def test_parse_returns_a_label_map_legend_and_a_person(alice: Persona, worker: Worker) -> None:
    upload = cv2.imencode(".jpg", portrait())[1].tobytes()

    answer = json.loads(download(alice, run(alice, upload, "parse")))

    assert (answer["width"], answer["height"], answer["format"]) == (512, 512, "png_palette")
    labels = np.array(Image.open(io.BytesIO(base64.b64decode(answer["png_base64"]))))
    assert labels.shape == (512, 512)
    names = {entry["id"]: entry["name"] for entry in answer["legend"]}
    found = {names[v] for v in np.unique(labels)}
    assert {"background", "hair", "face_skin", "eyes", "lips"} <= found
    assert len(answer["people"]) == 1
    assert answer["people"][0]["face_mesh"] is True


@pytest.mark.parametrize(
    ("reference", "same"), [("obama2.jpg", True), ("biden.jpg", False)], ids=["same", "other"]
)
def test_face_verify_tells_one_person_from_two(
    alice: Persona, worker: Worker, reference: str, same: bool
) -> None:
    allow_face_verify(alice.name)

    job = run(alice, person("obama.jpg"), "face_verify", **pair_form(person(reference)))

    verdict = json.loads(download(alice, job))
    assert set(verdict) == VERDICT_KEYS
    assert verdict["same_person"] is same
    assert verdict["faces"] == [1, 1]


def test_face_verify_without_a_face_in_the_reference_fails_with_its_code(
    alice: Persona, worker: Worker
) -> None:
    allow_face_verify(alice.name)
    empty = cv2.imencode(".jpg", np.full((300, 300, 3), 200, np.uint8))[1].tobytes()

    job = run(alice, person("obama.jpg"), "face_verify", **pair_form(empty))

    assert job["status"] == "failed"
    assert job["error"]["code"] == "no_face_in_reference"  # type: ignore[index]


def test_face_verify_is_403_for_a_client_the_operator_has_not_enabled(alice: Persona) -> None:
    answer = submit(
        alice.api, person("obama.jpg"), "face_verify", form=pair_form(person("obama2.jpg"))
    )

    assert answer.status_code == 403
    assert answer.json()["error"]["code"] == "face_verify_not_enabled"
    assert AuditEvent.objects.filter(event="rejected", outcome="face_verify_not_enabled").exists()


@pytest.mark.parametrize("consent", [None, "", "false", "yes", "True", "1"])
def test_face_verify_is_403_without_consent_exactly_true(
    alice: Persona, consent: str | None
) -> None:
    allow_face_verify(alice.name)

    answer = submit(
        alice.api, person("obama.jpg"), "face_verify", form=pair_form(person("obama2.jpg"), consent)
    )

    assert answer.status_code == 403
    assert answer.json()["error"]["code"] == "consent_required"


def test_face_verify_needs_a_reference_and_other_tasks_refuse_one(alice: Persona) -> None:
    allow_face_verify(alice.name)
    photo = person("obama.jpg")

    missing = submit(alice.api, photo, "face_verify", form={"consent": "true"})
    extra = submit(alice.api, photo, "cartoonize", form=pair_form(photo, consent=None))

    assert (missing.status_code, missing.json()["error"]["code"]) == (400, "reference_required")
    assert (extra.status_code, extra.json()["error"]["code"]) == (400, "reference_not_accepted")


def test_a_reference_that_is_not_an_image_is_415(alice: Persona) -> None:
    allow_face_verify(alice.name)

    answer = submit(alice.api, person("obama.jpg"), "face_verify", form=pair_form(b"%PDF-1.7"))

    assert (answer.status_code, answer.json()["error"]["code"]) == (415, "unsupported_media_type")


def test_image_and_reference_share_the_upload_byte_limit(alice: Persona, settings: object) -> None:
    allow_face_verify(alice.name)
    image, reference = person("obama.jpg"), person("obama2.jpg")
    settings.EPHEMERA_MAX_UPLOAD_BYTES = max(len(image), len(reference)) + 1024  # type: ignore[attr-defined]

    answer = submit(alice.api, image, "face_verify", form=pair_form(reference))

    assert (answer.status_code, answer.json()["error"]["code"]) == (413, "payload_too_large")


def test_a_reference_with_too_many_pixels_is_422(alice: Persona, settings: object) -> None:
    allow_face_verify(alice.name)
    small = cv2.imencode(".jpg", portrait((64, 64)))[1].tobytes()
    settings.EPHEMERA_MAX_PIXELS = 100 * 100  # type: ignore[attr-defined]

    answer = submit(alice.api, small, "face_verify", form=pair_form(person("obama.jpg")))

    assert (answer.status_code, answer.json()["error"]["code"]) == (422, "image_too_large")


def test_the_audit_keeps_the_consent_as_a_yes_and_nothing_of_the_photos(
    alice: Persona, worker: Worker
) -> None:
    allow_face_verify(alice.name)

    answer = submit(
        alice.api, person("obama.jpg"), "face_verify", form=pair_form(person("obama3.jpg"))
    )

    job_id = answer.json()["id"]
    row = AuditEvent.objects.get(event="submitted", job=hashed_id(job_id))
    assert row.task == "face_verify"
    assert row.outcome == "consent_given"
    assert row.byte_size == len(person("obama.jpg")) + len(person("obama3.jpg"))
    wait_for(alice.api, job_id)
    # No other task's submit claims a consent.
    other = run(alice, person("obama.jpg"), "detect")
    assert AuditEvent.objects.get(event="submitted", job=hashed_id(str(other["id"]))).outcome == ""


def test_a_queued_reference_is_sealed_and_gone_once_the_worker_took_it(
    alice: Persona, worker: Worker, redis_conn: redis.Redis
) -> None:
    allow_face_verify(alice.name)
    marker = "reference-canary-7f3a"
    reference = jpeg_with_exif(cv2.imread(str(PEOPLE / "obama2.jpg")), marker)
    pause_consumers(worker)
    try:
        job_id = submit(
            alice.api, person("obama.jpg"), "face_verify", form=pair_form(reference)
        ).json()["id"]
        sealed = redis_conn.get(keys.reference_key(job_id))
        assert sealed is not None
        assert redis_conn.ttl(keys.reference_key(job_id)) > 0
        assert marker.encode() not in sealed
        assert reference[200:264] not in sealed
    finally:
        resume_consumers(worker)
    job = wait_for(alice.api, job_id)
    assert job["status"] == "succeeded"
    assert not redis_conn.exists(keys.reference_key(job_id))


def test_the_face_descriptors_never_leave_the_worker(
    alice: Persona,
    worker: Worker,
    redis_conn: redis.Redis,
    capfd: pytest.CaptureFixture[str],
) -> None:
    allow_face_verify(alice.name)
    image, reference = person("obama.jpg"), person("obama2.jpg")
    expected = face_descriptors(image, reference)

    job = run(alice, image, "face_verify", **pair_form(reference))
    values = redis_values(redis_conn)
    result = download(alice, job)

    # The check recomputes the verdict's distance from them, so they are the right ones.
    verdict = json.loads(result)
    assert abs(float(np.linalg.norm(expected[0] - expected[1])) - verdict["distance"]) < 1e-3
    logs = (worker.log() + "".join(capfd.readouterr())).encode()
    assert_no_descriptor_in([result, logs, *values], expected)
