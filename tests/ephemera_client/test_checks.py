"""ephemera_client.checks: what the service would refuse, told from the bytes."""

from __future__ import annotations

import cv2
import pytest

from ephemera_client.checks import media_type, refusal
from ephemera_client.models import Task
from tests.conftest import portrait

TASK = Task(
    name="detect",
    description="",
    params_schema={},
    output="application/json",
    accepted_formats=("image/jpeg", "image/png", "image/webp"),
    max_bytes=200_000,
    max_pixels=40_000_000,
    max_side=2048,
)


@pytest.mark.parametrize(
    ("extension", "kind"), [(".jpg", "image/jpeg"), (".png", "image/png"), (".webp", "image/webp")]
)
def test_an_encoded_photo_is_known_by_its_first_bytes(extension: str, kind: str) -> None:
    ok, encoded = cv2.imencode(extension, portrait((64, 64)))
    assert ok
    assert media_type(encoded.tobytes()) == kind
    assert refusal(encoded.tobytes(), TASK) is None


@pytest.mark.parametrize(
    "data",
    [
        b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic",  # a phone's HEIC
        b"GIF89a\x01\x00\x01\x00",
        b"RIFF\x00\x00\x00\x00WAVEfmt ",  # RIFF, but sound
        b"",
    ],
)
def test_what_is_no_photo_of_ours_is_refused_as_the_service_would(data: bytes) -> None:
    assert media_type(data) is None
    code, message = refusal(data, TASK) or ("", "")
    assert code == "unsupported_media_type"
    assert "JPEG, PNG, WEBP" in message


def test_a_file_over_the_tasks_byte_limit_is_refused_before_its_format() -> None:
    big = b"\xff\xd8\xff" + b"\x00" * TASK.max_bytes
    assert refusal(big, TASK) == (
        "payload_too_large",
        f"{len(big)} bytes; detect takes at most {TASK.max_bytes}",
    )
    assert refusal(big[: TASK.max_bytes], TASK) is None
