"""Hostile uploads through the real HTTP path: every answer a 4xx with a code, never a 500.

Bytes that get past the header checks are queued; the worker must end those
jobs `succeeded` or `failed` with `undecodable_image`, and stay up.
"""

from __future__ import annotations

import cv2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ephemera_client.envelope import UPLOAD_MAGIC
from tests.conftest import Persona, Worker, make_persona, portrait
from tests.integration.helpers import submit, wait_for

ACCEPTED = {202}
REFUSALS = {
    # Bytes that begin like an end-to-end envelope (``EPHK``) are read as one.
    400: {"invalid_envelope"},
    413: {"payload_too_large"},
    415: {"unsupported_media_type"},
    422: {"undecodable_image", "image_too_large"},
}


def real_files() -> list[bytes]:
    image = portrait((96, 96))
    return [cv2.imencode(ext, image)[1].tobytes() for ext in (".jpg", ".png", ".webp")]


SEEDS = real_files()


@st.composite
def hostile_uploads(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["random", "magic", "truncated", "mutated"]))
    if kind == "random":
        return draw(st.binary(max_size=512))
    if kind == "magic":
        magic = draw(
            st.sampled_from(
                [b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"RIFF\x00\x00\x00\x00WEBP", UPLOAD_MAGIC]
            )
        )
        return magic + draw(st.binary(max_size=256))
    seed = draw(st.sampled_from(SEEDS))
    if kind == "truncated":
        return seed[: draw(st.integers(0, len(seed) - 1))]
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 8))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data)


@pytest.fixture
def unlimited(db: None, redis_conn: object) -> Persona:
    return make_persona("fuzzer", tier="unlimited")


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=hostile_uploads())
def test_every_hostile_upload_gets_a_coded_answer(
    unlimited: Persona, data: bytes, settings_override: None
) -> None:
    response = submit(unlimited.api, data)
    status = response.status_code
    assert status in ACCEPTED | set(REFUSALS), (status, response.content[:200])
    if status in REFUSALS:
        assert response.json()["error"]["code"] in REFUSALS[status]


@pytest.fixture
def settings_override(settings: object) -> None:
    # Hostile uploads on purpose: no block after three rejections, no IP limit.
    settings.EPHEMERA_BLOCK_AFTER = 10**9  # type: ignore[attr-defined]
    settings.EPHEMERA_IP_RATE = 0  # type: ignore[attr-defined]


@pytest.mark.slow
def test_files_that_pass_the_header_check_but_not_the_decoder_fail_cleanly(
    alice: Persona, worker: Worker, settings_override: None
) -> None:
    broken = [seed[: len(seed) * 2 // 3] for seed in SEEDS]  # headers intact, bodies cut
    ids = []
    for data in broken:
        response = submit(alice.api, data)
        assert response.status_code == 202, response.content
        ids.append(response.json()["id"])
    for job_id in ids:
        job = wait_for(alice.api, job_id)
        assert job["status"] == "failed", job
        assert job["error"]["code"] == "undecodable_image"
    assert worker.proc.poll() is None
    ok = wait_for(alice.api, submit(alice.api, SEEDS[0]).json()["id"])
    assert ok["status"] == "succeeded"
