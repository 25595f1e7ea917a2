"""A marked photo goes through every task; the marker turns up nowhere but in the upload.

The marker rides in the EXIF of a JPEG and, verbatim, in the pixel rows of an
uncompressed PNG; a two-image task (face_verify) gets it in both uploads.
Afterwards it must be in no Redis value, no log line, no file under a
temporary directory, and not in any output.
"""

from __future__ import annotations

import struct
import tempfile
import time
import uuid
import zlib
from pathlib import Path

import cv2
import pytest
import redis

from backend.catalogue import CATALOGUE
from tests.conftest import Persona, Worker, jpeg_with_exif, portrait
from tests.integration.helpers import (
    allow_face_verify,
    pair_form,
    redis_values,
    submit,
    wait_for,
)

pytestmark = pytest.mark.slow

TEMP_DIRS = [Path(tempfile.gettempdir()), Path("/dev/shm"), Path("/var/tmp")]


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return (
        struct.pack(">I", len(payload))
        + kind
        + payload
        + struct.pack(">I", zlib.crc32(kind + payload))
    )


def png_with_pixel_marker(marker: bytes) -> bytes:
    """The portrait as an uncompressed PNG whose first rows hold ``marker`` as raw pixel bytes.

    Written by hand (filter 0, zlib level 0: stored blocks), so the marker is in
    the file verbatim, as a worst case for anything that might store the upload.
    """
    image = cv2.cvtColor(portrait(), cv2.COLOR_BGR2RGB)
    rows = [bytearray(row.tobytes()) for row in image]
    for row in rows[:8]:
        row[: len(marker)] = marker
    raw = b"".join(b"\x00" + bytes(row) for row in rows)
    height, width = image.shape[:2]
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    data = (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(raw, level=0))
        + png_chunk(b"IEND", b"")
    )
    assert marker in data
    return data


def temp_files_since(started: float) -> list[Path]:
    found = []
    for root in TEMP_DIRS:
        if not root.is_dir():
            continue
        for path in root.rglob("*"):
            try:
                if (
                    path.is_file()
                    and path.stat().st_mtime >= started
                    and path.stat().st_size < 64 << 20
                ):
                    found.append(path)
            except OSError:
                continue
    return found


@pytest.mark.parametrize("task", sorted(CATALOGUE))
def test_the_marker_leaks_nowhere(
    task: str,
    alice: Persona,
    worker: Worker,
    redis_conn: redis.Redis,
    capfd: pytest.CaptureFixture[str],
) -> None:
    marker = f"canary-{uuid.uuid4().hex}"
    started = time.time() - 1
    uploads = [jpeg_with_exif(portrait(), marker), png_with_pixel_marker(marker.encode())]
    outputs = []
    for upload in uploads:
        form: dict[str, object] = {}
        if CATALOGUE[task].biometric:
            allow_face_verify(alice.name)
        if "reference" in CATALOGUE[task].inputs:
            # The reference carries the marker too: the same marked photo twice.
            form = pair_form(upload)
        job = wait_for(alice.api, submit(alice.api, upload, task=task, form=form).json()["id"])
        assert job["status"] == "succeeded", job
        for value in redis_values(redis_conn):
            assert marker.encode() not in value
        download = alice.api.get(job["result"]["url"])
        assert download.status_code == 200
        outputs.append(download.content)

    for output in outputs:
        assert marker.encode() not in output
        assert b"Exif" not in output
    for value in redis_values(redis_conn):
        assert marker.encode() not in value
    logs = capfd.readouterr()
    for text in (worker.log(), logs.out, logs.err):
        assert marker not in text
    for path in temp_files_since(started):
        try:
            assert marker.encode() not in path.read_bytes(), f"the marker is in {path}"
        except OSError:
            continue
