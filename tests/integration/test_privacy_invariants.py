"""The privacy invariants of DESIGN.md section 1, read off the real Redis and real logs."""

from __future__ import annotations

import base64
import json

import pytest
import redis

from backend.clients.services import KEY_PATTERN
from backend.ephemeral import keys
from tests.conftest import Persona, Upload, Worker
from tests.integration.helpers import pause_consumers, resume_consumers, submit

pytestmark = pytest.mark.slow


RECORD_FIELDS = {
    field.encode()
    for field in [
        "owner",
        "task",
        "status",
        "params",
        "format",
        "width",
        "height",
        "created_at",
        "expires_at",
        "started_at",
        "finished_at",
        "deadline",
        "result_token_hash",
        "result_token_sealed",
        "result_content_type",
        "result_expires_at",
        "result_taken_at",
        "run_ms",
        "accounted",
    ]
}


def values_of(conn: redis.Redis, key: bytes) -> list[bytes]:
    kind = conn.type(key).decode()
    if kind == "string":
        return [conn.get(key) or b""]
    if kind == "hash":
        return [b"%s=%s" % item for item in conn.hgetall(key).items()]
    if kind == "stream":
        return [json.dumps(str(entry)).encode() for entry in conn.xrange(key)]
    if kind == "list":
        return conn.lrange(key, 0, -1)
    return []


def assert_holds_nothing_of(conn: redis.Redis, upload: Upload) -> None:
    """No key of ours without a TTL, and no value carrying the photo or its EXIF."""
    pieces = [upload.data[i : i + 32] for i in range(200, len(upload.data) - 32, 4096)]
    for key in conn.scan_iter(match="eph:*"):
        assert conn.ttl(key) > 0, f"{key!r} has no TTL"
        for value in values_of(conn, key):
            assert upload.canary.encode() not in value, key
            assert not any(piece in value for piece in pieces), key


def test_nothing_in_redis_reveals_a_queued_photo(
    alice: Persona, worker: Worker, canary_jpeg: Upload, redis_conn: redis.Redis
) -> None:
    pause_consumers(worker)
    try:
        job_id = submit(alice.api, canary_jpeg.data).json()["id"]
        assert_holds_nothing_of(redis_conn, canary_jpeg)
        # The queue message: the job id and nothing else, not even in argsrepr.
        messages = redis_conn.lrange("jobs", 0, -1)
        assert len(messages) == 1
        message = json.loads(messages[0])
        args, kwargs, _ = json.loads(base64.b64decode(message["body"]))
        assert args == [job_id] and kwargs == {}
        assert job_id not in message["headers"]["argsrepr"]
        assert canary_jpeg.canary.encode() not in messages[0]
        assert len(messages[0]) < 4096
    finally:
        resume_consumers(worker)


def test_only_the_status_record_is_left_after_download(
    alice: Persona, worker: Worker, canary_jpeg: Upload, redis_conn: redis.Redis
) -> None:
    job = submit(alice.api, canary_jpeg.data, HTTP_PREFER="wait=60").json()
    assert job["status"] == "succeeded"
    assert_holds_nothing_of(redis_conn, canary_jpeg)
    assert alice.api.get(job["result"]["url"]).status_code == 200

    left = {key.decode() for key in redis_conn.scan_iter(match="eph:*")}
    assert left == {keys.job_key(job["id"])}
    record = redis_conn.hgetall(keys.job_key(job["id"]))
    assert set(record) <= RECORD_FIELDS


def test_logs_carry_no_key_no_exif_and_no_raw_id(
    alice: Persona, worker: Worker, canary_jpeg: Upload, capfd: pytest.CaptureFixture[str]
) -> None:
    job = submit(alice.api, canary_jpeg.data, HTTP_PREFER="wait=60").json()
    alice.api.get(job["result"]["url"])
    web_log = capfd.readouterr()
    # The secret part alone, parsed as the service parses it: it may hold "_" itself.
    match = KEY_PATTERN.match(alice.key)
    assert match is not None
    secret = match.group(2)
    for text in (worker.log(), web_log.out, web_log.err):
        assert alice.key not in text
        assert secret not in text
        assert canary_jpeg.canary not in text
        assert job["id"] not in text
    assert "job_succeeded" in worker.log()
