"""End-to-end encrypted jobs on a real stack: the web tier never holds the photo.

A stack of its own (gunicorn, a worker, Flower) on a Redis database no other
worker consumes, so a job stays queued until this module starts its worker.
The web gets the workers' public keys only; the worker gets the private ones.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import pytest
import redis

from ephemera_client import Client, envelope
from ephemera_client.envelope import KeyPair
from tests.conftest import jpeg_with_exif, png_claiming, portrait
from tests.harness import (
    REPO,
    Process,
    Stack,
    basic_auth,
    http_request,
    manage,
    memory_holds,
    wait_for_http,
)
from tests.services import free_port

pytestmark = pytest.mark.slow

ACTIVE, RETIRED = KeyPair.generate(), KeyPair.generate()
#: A database of the session's Redis that only this module's worker consumes.
DATABASE = 7


def _line(kid: str, key: bytes, suffix: str = "") -> str:
    return f"{kid}:{base64.b64encode(key).decode()}{suffix}"


PUBLIC_KEYS = ",".join(
    [_line("w2", ACTIVE.public), _line("w1", RETIRED.public, "@2020-01-01T00:00:00Z")]
)
PRIVATE_KEYS = ",".join([_line("w2", ACTIVE.private), _line("w1", RETIRED.private)])


@dataclass
class E2EStack:
    stack: Stack
    web: Process
    url: str
    flower: Process
    flower_port: int
    flower_credentials: str
    worker: Process | None = None

    def http(self) -> httpx.Client:
        """A keep-alive client with the stack's API key."""
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {self.stack.key}"}, timeout=60
        )

    def start_worker(self) -> Process:
        if self.worker is None:
            self.worker = self.stack.worker(
                EPHEMERA_E2E_PRIVATE_KEYS=PRIVATE_KEYS,
                WORKER_HOSTNAME=f"e2e-{secrets.token_hex(3)}@test",
                WORKER_CONCURRENCY="1",
            )
        return self.worker

    def web_workers(self) -> list[int]:
        return self.web.children()


@pytest.fixture(scope="module")
def e2e(tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2EStack]:
    session_redis = os.environ["REDIS_URL"].rsplit("/", 1)[0]
    redis.Redis.from_url(f"{session_redis}/{DATABASE}").flushdb()
    stack = Stack.create(
        redis_url=f"{session_redis}/{DATABASE}",
        workdir=tmp_path_factory.mktemp("e2e"),
        EPHEMERA_E2E_PUBLIC_KEYS=PUBLIC_KEYS,
        EPHEMERA_BLOCK_AFTER="3",
    )
    try:
        # The web is started with the private keys in its environment too, as a
        # careless Compose file might: the entrypoint must drop them.
        web, port = stack.web(WEB_CONCURRENCY="1", EPHEMERA_E2E_PRIVATE_KEYS=PRIVATE_KEYS)
        flower_port = free_port()
        credentials = f"ops:{secrets.token_hex(16)}"
        flower = Process.start(
            "flower",
            env={**stack.env, "FLOWER_PORT": str(flower_port), "FLOWER_BASIC_AUTH": credentials},
            log_dir=stack.workdir,
        )
        stack.processes.append(flower)
        wait_for_http(flower, flower_port, "/healthcheck")
        yield E2EStack(stack, web, f"http://127.0.0.1:{port}", flower, flower_port, credentials)
    finally:
        stack.stop()


def _jpeg(canary: str, size: tuple[int, int] = (640, 480)) -> bytes:
    return jpeg_with_exif(portrait(size), canary)


def _sealed(data: bytes, *, task: str = "cartoonize", key: KeyPair = ACTIVE, kid: str = "w2",
            reply: KeyPair | None = None, role: envelope.Role = "image") -> bytes:  # fmt: skip
    return envelope.seal_upload(
        data,
        key_id=kid,
        public_key=key.public,
        reply_key=(reply or KeyPair.generate()).public,
        service="ephemera",
        task=task,
        role=role,
    )


def _post(
    http: httpx.Client, image: bytes, task: str = "cartoonize", **extra: Any
) -> httpx.Response:
    files = {"image": ("image", image, envelope.CONTENT_TYPE)}
    return http.post("/api/v1/jobs", data={"task": task}, files=files, **extra)


def _ended(http: httpx.Client, job_id: str) -> dict[str, Any]:
    response = http.get(f"/api/v1/jobs/{job_id}", headers={"Prefer": "wait=60"})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body["status"] not in ("queued", "running"), body
    return body


def test_the_keys_are_published_and_the_web_holds_no_private_half(e2e: E2EStack) -> None:
    with e2e.http() as http:
        body = http.get("/api/v1/keys").json()
    assert body["suite"] == {"mode": "base", "kem_id": 32, "kdf_id": 1, "aead_id": 2}
    assert body["content_type"] == envelope.CONTENT_TYPE
    # The retired key is no longer offered; the active one is, marked so.
    assert body["keys"] == [
        {
            "id": "w2",
            "public_key": base64.b64encode(ACTIVE.public).decode(),
            "not_after": None,
            "active": True,
        }
    ]
    for pid in [e2e.web.pid, *e2e.web_workers()]:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
        assert b"EPHEMERA_E2E_PUBLIC_KEYS=" in environ
        assert b"EPHEMERA_E2E_PRIVATE_KEYS" not in environ
    secrets_in_memory = {ACTIVE.private, base64.b64encode(ACTIVE.private)}
    for pid in e2e.web_workers():
        assert memory_holds(pid, secrets_in_memory) == set()


def test_the_web_never_holds_the_photo_in_plaintext(e2e: E2EStack) -> None:
    """A canary in the upload is found in the web's memory for a plain upload, and
    nowhere (web memory, its log, Redis, Flower) for an encrypted one."""
    plain_canary, sealed_canary = (f"canary-{secrets.token_hex(16)}" for _ in range(2))
    plain, sealed_photo = _jpeg(plain_canary), _jpeg(sealed_canary)
    reply = KeyPair.generate()
    sealed = _sealed(sealed_photo, reply=reply)
    assert sealed_canary.encode() not in sealed

    def seen_while_waiting(image: bytes, canary: str) -> tuple[set[bytes], str]:
        """Submit with Prefer: wait (no worker yet: the job stays queued) and look at the
        web's memory while the request is in flight, then once it has answered."""
        answer: dict[str, httpx.Response] = {}

        def send() -> None:
            with e2e.http() as http:
                answer["r"] = _post(http, image, headers={"Prefer": "wait=4"})

        thread = threading.Thread(target=send)
        thread.start()
        time.sleep(2)
        found = set().union(*(memory_holds(pid, {canary.encode()}) for pid in e2e.web_workers()))
        thread.join()
        assert answer["r"].status_code == 202, answer["r"].text
        return found, answer["r"].json()["id"]

    # The control: the scan does find a plain upload in the web's memory.
    found, plain_job = seen_while_waiting(plain, plain_canary)
    assert found == {plain_canary.encode()}
    found, sealed_job = seen_while_waiting(sealed, sealed_canary)
    assert found == set()

    # Now a worker: the encrypted job succeeds, and only the reply key opens its result.
    e2e.start_worker()
    with e2e.http() as http:
        http.delete(f"/api/v1/jobs/{plain_job}")
        body = _ended(http, sealed_job)
        assert body["status"] == "succeeded", body
        assert body["e2e"] is True
        assert body["result"]["content_type"] == "image/jpeg"
        download = http.get(body["result"]["url"])
    assert download.status_code == 200
    assert download.headers["content-type"] == envelope.CONTENT_TYPE
    result = envelope.open_result(
        download.content, reply_private=reply.private, service="ephemera",
        task="cartoonize", job_id=sealed_job,
    )  # fmt: skip
    decoded = cv2.imdecode(np.frombuffer(result, np.uint8), cv2.IMREAD_COLOR)
    assert decoded is not None and decoded.shape == (480, 640, 3)
    assert sealed_canary.encode() not in result  # no metadata out either

    needle = sealed_canary.encode()
    for pid in e2e.web_workers():
        assert memory_holds(pid, {needle}) == set()
    assert sealed_canary not in e2e.web.log()
    assert _in_redis(e2e, needle) == []
    for path in ("/api/tasks", "/tasks", "/api/workers"):
        answer = http_request(e2e.flower_port, path, headers=basic_auth(e2e.flower_credentials))
        assert answer.status == 200, path
        assert needle not in answer.body, path


def _in_redis(e2e: E2EStack, needle: bytes) -> list[str]:
    """Every key of the stack's Redis database whose name or value holds ``needle``."""
    conn = redis.Redis.from_url(e2e.stack.env["REDIS_URL"])
    holders = []
    for key in conn.scan_iter(count=1000):
        kind = conn.type(key)
        if kind == b"string":
            values = [conn.get(key) or b""]
        elif kind == b"hash":
            values = [b"".join(k + v for k, v in conn.hgetall(key).items())]
        elif kind == b"list":
            values = list(conn.lrange(key, 0, -1))
        elif kind == b"set":
            values = list(conn.smembers(key))
        elif kind == b"zset":
            values = list(conn.zrange(key, 0, -1))
        else:
            values = [repr(conn.xrange(key)).encode()]
        if needle in key or any(needle in value for value in values):
            holders.append(key.decode(errors="replace"))
    return holders


def _failed_with(e2e: E2EStack, image: bytes, task: str = "cartoonize") -> str:
    """The code a job ended with, read from the submit's own answer (``Prefer: wait``).

    Not from a later GET: the failure that blocks a client (its third
    rejection in a row) would also refuse that GET, if it came after the end.
    """
    e2e.start_worker()
    with e2e.http() as http:
        response = _post(http, image, task, headers={"Prefer": "wait=60"})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    assert body["status"] == "failed", body
    assert body["e2e"] is True
    return str(body["error"]["code"])


@pytest.mark.parametrize(
    ("make", "status", "code"),
    [
        (lambda: b"EPHK\x01\x02w2" + bytes(40), 400, "invalid_envelope"),
        (lambda: b"EPHK\x07" + bytes(200), 400, "invalid_envelope"),
        (lambda: _sealed(b"photo", kid="w9"), 422, "unknown_key"),
        (lambda: _sealed(b"photo", key=RETIRED, kid="w1"), 422, "key_retired"),
    ],
    ids=["truncated", "unknown version", "unknown key id", "retired key"],
)
def test_the_web_refuses_what_ciphertext_shows_is_wrong(
    e2e: E2EStack, make: Any, status: int, code: str
) -> None:
    _unblock(e2e)
    with e2e.http() as http:
        response = _post(http, make())
        assert response.status_code == status, response.text
        assert response.json()["error"]["code"] == code
        # The connection goes on serving: the error was a clean answer.
        assert http.get("/api/v1/keys").status_code == 200


PEOPLE = REPO / "tests" / "workers" / "models" / "data" / "people"


def test_a_two_photo_job_opens_both_envelopes_and_refuses_a_mix(e2e: E2EStack) -> None:
    key = manage(
        e2e.stack.env, "create_api_key", "--name", f"fv-{secrets.token_hex(3)}",
        "--tier", "unlimited", "--allow-face-verify",
    ).strip()  # fmt: skip
    photo, second = (PEOPLE / "obama.jpg").read_bytes(), (PEOPLE / "obama2.jpg").read_bytes()
    reply = KeyPair.generate()
    headers = {"Authorization": f"Bearer {key}"}
    e2e.start_worker()
    with httpx.Client(base_url=e2e.url, headers=headers, timeout=90) as http:
        mixed = {
            "image": ("image", _sealed(photo, task="face_verify"), envelope.CONTENT_TYPE),
            "reference": ("reference", second, "image/jpeg"),
        }
        form = {"task": "face_verify", "consent": "true"}
        response = http.post("/api/v1/jobs", data=form, files=mixed)
        assert response.status_code == 400, response.text
        assert response.json()["error"]["code"] == "invalid_envelope"

        sealed = {
            "image": ("image", _sealed(photo, task="face_verify", reply=reply), "x"),
            "reference": (
                "reference",
                _sealed(second, task="face_verify", reply=reply, role="reference"),
                envelope.CONTENT_TYPE,
            ),
        }
        response = http.post("/api/v1/jobs", data=form, files=sealed)
        assert response.status_code == 202, response.text
        body = _ended(http, response.json()["id"])
        assert body["status"] == "succeeded", body
        download = http.get(body["result"]["url"])
    verdict = envelope.open_result(
        download.content, reply_private=reply.private, service="ephemera",
        task="face_verify", job_id=body["id"],
    )  # fmt: skip
    assert b'"same_person":true' in verdict

    # The Python client does all of the above itself, reference and consent included.
    with Client(url=e2e.url, api_key=key) as client:
        job = client.submit("face_verify", photo, reference=second, consent=True, wait=60)
        assert (job.status, job.e2e) == ("succeeded", True), job
        assert json.loads(client.download(job).data)["same_person"] is True


def _flipped(data: bytes, offset: int) -> bytes:
    changed = bytearray(data)
    changed[offset] ^= 0x01
    return bytes(changed)


@pytest.mark.parametrize(
    ("make", "code"),
    [
        (lambda: _sealed(_jpeg("x"), task="anonymize"), "envelope_rejected"),
        (lambda: _flipped(_sealed(_jpeg("x")), 8 + 4), "envelope_rejected"),
        (lambda: _flipped(_sealed(_jpeg("x")), -3), "envelope_rejected"),
        (lambda: _sealed(b"%PDF-1.7 not a photo at all"), "unsupported_media_type"),
        (lambda: _sealed(b"\xff\xd8\xff\xe0" + bytes(64)), "undecodable_image"),
        (lambda: _sealed(png_claiming(20000, 20000)), "image_too_large"),
    ],
    ids=[
        "replayed for another task",
        "swapped reply key",
        "tampered ciphertext",
        "not an image inside",
        "broken jpeg inside",
        "too many pixels inside",
    ],
)
def test_the_worker_ends_a_bad_envelope_with_a_code(e2e: E2EStack, make: Any, code: str) -> None:
    assert _failed_with(e2e, make()) == code
    _unblock(e2e)


def test_bad_envelopes_count_towards_the_clients_block(e2e: E2EStack) -> None:
    _unblock(e2e)
    for _ in range(3):
        assert _failed_with(e2e, _sealed(b"not an image")) == "unsupported_media_type"
    with e2e.http() as http:
        response = _post(http, _sealed(_jpeg("x")))
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "temporarily_blocked"
    _unblock(e2e)


def _unblock(e2e: E2EStack) -> None:
    conn = redis.Redis.from_url(e2e.stack.env["REDIS_URL"])
    for pattern in ("ephops:block:*", "ephops:rej:*"):
        for key in conn.scan_iter(match=pattern):
            conn.delete(key)


def test_the_client_encrypts_by_default_and_opens_the_result(e2e: E2EStack) -> None:
    e2e.start_worker()
    canary = f"canary-{secrets.token_hex(16)}"
    with Client(url=e2e.url, api_key=e2e.stack.key) as client:
        job = client.submit("cartoonize", _jpeg(canary), wait=60)
        assert job.e2e and job.status == "succeeded", job
        result = client.download(job)
    assert result.content_type == "image/jpeg"
    assert cv2.imdecode(np.frombuffer(result.data, np.uint8), cv2.IMREAD_COLOR) is not None
    with Client(url=e2e.url, api_key=e2e.stack.key, e2e=False) as client:
        job = client.submit("cartoonize", _jpeg(canary), wait=60)
        assert not job.e2e and job.status == "succeeded"
        assert client.download(job).content_type == "image/jpeg"
