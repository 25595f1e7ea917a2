"""Headers, uploads that never touch disk, and metrics without user data."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from django.test import Client

from tests.conftest import Persona, Upload
from tests.integration.helpers import submit


def test_every_api_answer_carries_the_security_headers(alice: Persona, canary_jpeg: Upload) -> None:
    for response in (
        submit(alice.api, canary_jpeg.data),
        alice.api.get("/api/v1/tasks"),
        alice.api.get("/api/v1/jobs/00000000-0000-4000-8000-000000000000"),
    ):
        assert response["X-Content-Type-Options"] == "nosniff"
        assert response["X-Frame-Options"] == "DENY"
        assert response["Referrer-Policy"] == "no-referrer"
        assert response["Cache-Control"] == "no-store"


def test_hsts_is_sent_over_tls(db: None, settings: object) -> None:
    settings.SECURE_HSTS_SECONDS = 31536000  # type: ignore[attr-defined]
    assert "Strict-Transport-Security" not in Client().get("/healthz")
    over_tls = Client().get("/healthz", secure=True)
    assert over_tls["Strict-Transport-Security"].startswith("max-age=31536000")


def test_a_large_upload_never_touches_a_temporary_file(
    alice: Persona, settings: object, tmp_path: Path
) -> None:
    spill = tmp_path / "upload-spill"
    spill.mkdir()
    settings.FILE_UPLOAD_TEMP_DIR = str(spill)  # type: ignore[attr-defined]
    noise = np.random.default_rng(7).integers(0, 256, (1500, 1500, 3), dtype=np.uint8)
    ok, png = cv2.imencode(".png", noise)
    assert ok
    assert len(png) > 5 * 1024 * 1024  # far over Django's 2.5 MB in-memory threshold
    assert submit(alice.api, png.tobytes()).status_code == 202
    assert list(spill.iterdir()) == []


def test_metrics_count_jobs_without_any_id(alice: Persona, canary_jpeg: Upload) -> None:
    job_id = submit(alice.api, canary_jpeg.data).json()["id"]
    assert submit(alice.api, b"GIF89a").status_code == 415
    text = Client().get("/metrics").content.decode()
    assert 'ephemera_jobs_submitted_total{task="cartoonize"} 1.0' in text
    assert "ephemera_queue_length" in text
    assert job_id not in text
    assert alice.key.split("_")[1] not in text


def test_metrics_can_require_a_token(db: None, redis_conn: object, settings: object) -> None:
    settings.EPHEMERA_METRICS_TOKEN = "scrape-token-123"  # type: ignore[attr-defined]
    assert Client().get("/metrics").status_code == 401
    good = Client().get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-token-123")
    assert good.status_code == 200
