"""Every answer the API gives to bad input: a 4xx with a code, in one error shape."""

from __future__ import annotations

import cv2
import httpx
import pytest
from django.test import Client, RequestFactory
from rest_framework.test import APIClient

from backend.api.errors import server_error
from backend.ephemeral import connection
from backend.errors import BACKEND_RETRY_AFTER
from tests.backend.gunicorn_web import web
from tests.conftest import Persona, Upload, portrait, redis_out_of_reach
from tests.harness import Stack
from tests.integration.helpers import submit

__all__ = ["web"]


def assert_error(response: object, status: int, code: str) -> dict[str, str]:
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message"}
    assert body["error"]["code"] == code
    for leak in ("Traceback", "/work/", ".py", "torch", "site-packages"):
        assert leak not in body["error"]["message"]
    return body["error"]


def test_an_unknown_path_is_a_json_404(db: None) -> None:
    answer = Client().get("/nothing/here")
    assert_error(answer, 404, "not_found")
    # As DRF renders its own 404: one shape and one message, byte for byte.
    from rest_framework import exceptions
    from rest_framework.renderers import JSONRenderer

    from backend.api.errors import exception_handler

    drf = exception_handler(exceptions.NotFound(), {})
    assert answer.content == JSONRenderer().render(drf.data)


def test_a_wrong_method_is_a_json_405(alice: Persona) -> None:
    assert_error(alice.api.put("/api/v1/tasks"), 405, "method_not_allowed")


def test_a_server_error_is_a_json_500() -> None:
    response = server_error(RequestFactory().get("/"))
    assert response.status_code == 500
    assert b"internal_error" in response.content


def test_a_non_multipart_submit_is_415(alice: Persona) -> None:
    response = alice.api.post("/api/v1/jobs", {"task": "cartoonize"}, format="json")
    assert_error(response, 415, "unsupported_media_type")


def test_a_submit_without_an_image_is_400(alice: Persona) -> None:
    response = alice.api.post("/api/v1/jobs", {"task": "cartoonize"}, format="multipart")
    assert "image" in assert_error(response, 400, "invalid_request")["message"]


@pytest.mark.parametrize("field", ["image", "task"])
def test_a_field_sent_twice_is_refused_not_guessed(
    alice: Persona, canary_jpeg: Upload, field: str
) -> None:
    from django.core.files.uploadedfile import SimpleUploadedFile

    form = {"image": SimpleUploadedFile("photo.jpg", canary_jpeg.data), "task": "cartoonize"}
    form[field] = [
        form[field],
        SimpleUploadedFile("other.jpg", canary_jpeg.data) if field == "image" else "detect",
    ]
    response = alice.api.post("/api/v1/jobs", form, format="multipart")
    assert assert_error(response, 400, "invalid_request")["message"].startswith(f"{field}:")
    assert not list(connection.client().scan_iter(match="eph:*"))


@pytest.mark.parametrize(
    ("data", "code", "status"),
    [
        (b"GIF89a\x01\x00\x01\x00\x80\x00\x00" + b"\x00" * 20, "unsupported_media_type", 415),
        (b'<svg xmlns="http://www.w3.org/2000/svg"></svg>', "unsupported_media_type", 415),
        (b"%PDF-1.7\n", "unsupported_media_type", 415),
        (b"\xff\xd8\xff\xe0\x00", "undecodable_image", 422),
    ],
)
def test_what_is_not_a_photo_is_refused_from_its_bytes(
    alice: Persona, data: bytes, code: str, status: int
) -> None:
    # The client claims a JPEG by name; the bytes decide.
    assert_error(submit(alice.api, data), status, code)
    assert not list(connection.client().scan_iter(match="eph:in:*"))


def test_an_upload_over_the_byte_limit_is_413(
    alice: Persona, settings: object, canary_jpeg: Upload
) -> None:
    settings.EPHEMERA_MAX_UPLOAD_BYTES = 16 * 1024  # type: ignore[attr-defined]
    ok, big = cv2.imencode(".png", portrait())
    assert ok
    assert_error(submit(alice.api, big.tobytes()), 413, "payload_too_large")


def test_an_upload_with_too_many_pixels_is_422(alice: Persona, settings: object) -> None:
    settings.EPHEMERA_MAX_PIXELS = 100 * 100  # type: ignore[attr-defined]
    ok, photo = cv2.imencode(".jpg", portrait())
    assert ok
    assert_error(submit(alice.api, photo.tobytes()), 422, "image_too_large")


def test_a_revoked_key_is_refused_at_once(alice: Persona, canary_jpeg: Upload) -> None:
    from backend.clients.models import ApiKey

    assert alice.api.get("/api/v1/tasks").status_code == 200
    ApiKey.objects.get(prefix=alice.key.split("_")[1]).revoke()
    assert_error(alice.api.get("/api/v1/tasks"), 401, "authentication_failed")


def test_an_unknown_job_is_404(alice: Persona) -> None:
    for job_id in ("00000000-0000-4000-8000-000000000000", "not-a-uuid"):
        assert_error(alice.api.get(f"/api/v1/jobs/{job_id}"), 404, "job_not_found")


def test_an_unknown_result_token_is_404(alice: Persona) -> None:
    assert_error(alice.api.get("/api/v1/results/rt_nothing"), 404, "result_not_found")


def test_a_dead_redis_is_503_backend_unavailable(
    alice: Persona, canary_jpeg: Upload, settings: object
) -> None:
    with redis_out_of_reach(settings):
        assert_error(submit(alice.api, canary_jpeg.data), 503, "backend_unavailable")
        assert_error(alice.api.get("/api/v1/tasks"), 503, "backend_unavailable")
        assert Client().get("/readyz").status_code == 503


@pytest.mark.slow
def test_a_database_out_of_reach_is_503_backend_unavailable(web: tuple[Stack, int]) -> None:
    stack, _ = web
    # A web of the same stack whose database is at a port nobody listens on:
    # the API key cannot be checked, nor the job's trace written.
    _, port = stack.web(DATABASE_URL="postgresql://ephemera@127.0.0.1:1/ephemera")
    auth = {"Authorization": f"Bearer {stack.key}"}
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=auth, timeout=20) as http:
        for answer in (
            http.get("/api/v1/tasks"),
            http.post("/api/v1/jobs", files={"image": ("a.jpg", b"x")}, data={"task": "detect"}),
        ):
            assert answer.status_code == 503, answer.text
            assert answer.json()["error"]["code"] == "backend_unavailable"
            assert answer.headers["retry-after"] == str(BACKEND_RETRY_AFTER)
        assert http.get("/readyz").status_code == 503


@pytest.mark.slow
def test_a_form_beyond_djangos_limits_is_400_and_the_connection_lives(
    web: tuple[Stack, int],
) -> None:
    # DATA_UPLOAD_MAX_NUMBER_FIELDS (1000) and _FILES (100): a form with more
    # parts answered 500 internal_error for too many files.
    stack, port = web
    photo = ("a.jpg", b"\xff\xd8\xff" + b"\x00" * 64, "image/jpeg")
    too_many = {
        "fields": {"files": {"image": photo}, "data": {f"f{i}": "x" for i in range(1001)}},
        "files": {"files": [("image", photo)] + [(f"x{i}", photo) for i in range(101)]},
    }
    auth = {"Authorization": f"Bearer {stack.key}"}
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=auth, timeout=20) as http:
        for form in too_many.values():
            answer = http.post("/api/v1/jobs", **form)  # type: ignore[arg-type]
            error = assert_error(answer, 400, "invalid_request")
            assert error["message"] == "The request has too many fields."
            assert http.get("/healthz").status_code == 200


def test_a_suspicious_request_is_400_as_django_answers_it() -> None:
    # Django raises these for a body it will not parse (a multipart parser
    # that got stuck, ...); Django's own handler answers 400, and so do we.
    from django.core.exceptions import SuspiciousMultipartForm

    from backend.api.errors import exception_handler

    answer = exception_handler(SuspiciousMultipartForm("stuck"), {})
    assert (answer.status_code, answer.data["error"]["code"]) == (400, "malformed_request")


def test_the_task_catalogue_lists_params_and_limits(alice: Persona) -> None:
    tasks = {task["name"]: task for task in alice.api.get("/api/v1/tasks").json()["tasks"]}
    cartoonize = tasks["cartoonize"]
    assert cartoonize["params_schema"]["properties"]["levels"]["maximum"] == 16
    assert cartoonize["accepted_formats"] == ["image/jpeg", "image/png", "image/webp"]
    assert cartoonize["max_bytes"] > 0
    assert cartoonize["max_pixels"] > 0


def test_the_catalogue_needs_a_key(db: None) -> None:
    assert_error(APIClient().get("/api/v1/tasks"), 401, "not_authenticated")


def test_health_and_readiness(db: None, redis_conn: object) -> None:
    assert Client().get("/healthz").json() == {"status": "ok"}
    ready = Client().get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"redis": True, "database": True}


def test_the_openapi_schema_and_its_page_are_served(db: None) -> None:
    schema = Client().get("/api/schema/", HTTP_ACCEPT="application/json")
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    assert {"/api/v1/jobs", "/api/v1/jobs/{job_id}", "/api/v1/results/{token}"} <= set(paths)
    assert Client().get("/api/docs/").status_code == 200
