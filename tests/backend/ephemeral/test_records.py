"""The job record: what a job hash may hold, how it reads back, and how long it lives."""

from __future__ import annotations

import redis
from pytest_django.fixtures import Settings

from backend.ephemeral import keys
from backend.ephemeral.records import FIELDS, JobRecord, record_ttl
from tests.factories import succeeded_job


def test_a_finished_job_holds_only_listed_fields_and_reads_back_typed(
    redis_conn: redis.Redis,
) -> None:
    job_id = succeeded_job(task="detect", params={"detect_size": 640})
    raw = redis_conn.hgetall(keys.job_key(job_id))

    record = JobRecord.from_redis(job_id, raw)

    assert {field.decode() for field in raw} <= FIELDS
    assert (record.status, record.task, record.run_ms) == ("succeeded", "detect", 5)
    assert record.params["detect_size"] == 640
    assert record.terminal and record.result_token_hash is not None
    assert record.queued_ms is not None and record.queued_ms >= 0


def test_a_lua_reply_reads_like_a_hash() -> None:
    flat = [b"status", b"running", b"task", b"cartoonize", b"started_at", b"12.5"]
    record = JobRecord.from_reply("j", flat)
    assert (record.status, record.task, record.started_at) == ("running", "cartoonize", 12.5)
    assert not record.terminal


def test_a_record_without_a_status_reads_as_expired() -> None:
    record = JobRecord.from_redis("j", {})
    assert (record.status, record.params, record.queued_ms) == ("expired", {}, None)


def test_a_record_lives_through_queue_run_and_result_time(settings: Settings) -> None:
    settings.EPHEMERA_INPUT_TTL = 100
    settings.EPHEMERA_TASK_HARD_LIMIT = 20.5
    settings.EPHEMERA_RESULT_TTL = 300
    settings.EPHEMERA_RECORD_GRACE = 10
    assert record_ttl() == 431
