"""Shared fixtures: the session's real Redis, a real Celery worker, API personas, photos.

Personas: Alice owns the jobs under test, Bob is another client who must see
none of them.
"""

from __future__ import annotations

import socket
import struct
import subprocess
import sys
import uuid
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import redis
from rest_framework.test import APIClient

from backend.clients.services import api_key_create
from backend.ephemeral import connection
from tests.harness import Process as Worker
from tests.harness import ephemera_env, start_worker
from tests.services import free_port, start_redis

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def redis_conn() -> Iterator[redis.Redis]:
    """The session's Redis; every key of ours is removed before and after each test."""
    conn = connection.client()
    clean_ours(conn)
    yield conn
    clean_ours(conn)


@contextmanager
def redis_out_of_reach(settings: Any) -> Iterator[None]:
    """This process's Redis client pointed, for the block, at a port nobody listens on."""
    live_url = settings.REDIS_URL
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    connection.forget()
    try:
        yield
    finally:
        settings.REDIS_URL = live_url
        connection.forget()


def clean_ours(conn: redis.Redis) -> None:
    """Remove job data and operational state (rate limits, blocks); leave Celery's keys."""
    for pattern in ("eph:*", "ephops:*"):
        for key in conn.scan_iter(match=pattern, count=1000):
            conn.delete(key)


@dataclass
class Persona:
    name: str
    key: str
    api: APIClient


def make_persona(name: str, tier: str = "standard") -> Persona:
    _, key = api_key_create(name=name, tier=tier)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return Persona(name=name, key=key, api=api)


OwnRedis = tuple[int, list[subprocess.Popen[bytes]]]


@pytest.fixture
def own_redis(tmp_path: Path, settings: object) -> Iterator[OwnRedis]:
    """A Redis of this test's own, which the test may stop and start; the client points at it."""
    port = free_port()
    servers = [start_redis(port, tmp_path)]
    live_url = settings.REDIS_URL  # type: ignore[attr-defined]
    settings.REDIS_URL = f"redis://127.0.0.1:{port}/0"  # type: ignore[attr-defined]
    connection.forget()
    try:
        yield port, servers
    finally:
        for server in servers:
            server.terminate()
            server.wait(timeout=10)
        settings.REDIS_URL = live_url  # type: ignore[attr-defined]
        connection.forget()


@pytest.fixture
def alice(db: None, redis_conn: redis.Redis) -> Persona:
    return make_persona("alice")


@pytest.fixture
def bob(db: None, redis_conn: redis.Redis) -> Persona:
    return make_persona("bob")


# --- Photos ------------------------------------------------------------------------


def exif_segment(text: str) -> bytes:
    """An APP1 Exif segment whose ImageDescription (0x010E) holds ``text``."""
    value = text.encode() + b"\x00"
    # Big-endian TIFF: header, one IFD with one entry, next-IFD 0, then the string.
    ifd_offset = 8
    string_offset = ifd_offset + 2 + 12 + 4
    tiff = b"MM\x00*" + struct.pack(">I", ifd_offset)
    tiff += struct.pack(">H", 1) + struct.pack(">HHII", 0x010E, 2, len(value), string_offset)
    tiff += struct.pack(">I", 0) + value
    payload = b"Exif\x00\x00" + tiff
    return b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload


def jpeg_with_exif(image: np.ndarray, text: str, quality: int = 90) -> bytes:
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    data = encoded.tobytes()
    return data[:2] + exif_segment(text) + data[2:]


def portrait(size: tuple[int, int] | None = None) -> np.ndarray:
    """The astronaut portrait scikit-image ships, as BGR, optionally resized (w, h)."""
    from skimage import data

    image = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    if size is not None:
        image = cv2.resize(image, size, interpolation=cv2.INTER_CUBIC)
    return image


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header (with a valid CRC) declares ``width`` x ``height`` pixels."""
    ihdr = b"IHDR" + struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", 13) + ihdr + struct.pack(">I", zlib.crc32(ihdr))
    return b"\x89PNG\r\n\x1a\n" + chunk + bytes(64)


@dataclass
class Upload:
    data: bytes
    canary: str


@pytest.fixture
def canary_jpeg() -> Upload:
    """A real photo carrying a unique marker in its EXIF."""
    canary = f"canary-{uuid.uuid4().hex}"
    return Upload(data=jpeg_with_exif(portrait(), canary), canary=canary)


# --- A real worker process -------------------------------------------------------------


_MIGRATED: set[str] = set()


def migrate_worker_database(env: dict[str, str]) -> None:
    """Workers write audit events and traces: their database must be migrated, once."""
    url = env["DATABASE_URL"]
    if url in _MIGRATED:
        return
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput"],
        cwd=REPO,
        env=env,
        check=True,
        capture_output=True,
    )
    _MIGRATED.add(url)


def worker_env(**overrides: str) -> dict[str, str]:
    """The session's environment for a worker node (one pool process by default), named uniquely."""
    defaults = {
        "WORKER_HOSTNAME": f"test-{uuid.uuid4().hex[:6]}@{socket.gethostname()}",
        "WORKER_CONCURRENCY": "1",
    }
    return ephemera_env(**{**defaults, **overrides})


@pytest.fixture(scope="session")
def worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    """One real worker node for the session, on the session's Redis, started by bin/ephemera."""
    env = worker_env()
    migrate_worker_database(env)
    running = start_worker(env, log_dir=tmp_path_factory.mktemp("worker"))
    yield running
    running.stop()
