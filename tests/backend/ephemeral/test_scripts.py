"""The Lua scripts, run as registered scripts on the session's Redis."""

from __future__ import annotations

import redis

from backend.ephemeral import keys, scripts
from tests.factories import queued_job, running_job


def count_delivery(job_id: str) -> int:
    return int(scripts.run(scripts.COUNT_DELIVERY, keys=[keys.job_key(job_id)], args=["queued"]))


def test_it_counts_deliveries_of_a_queued_job_only(redis_conn: redis.Redis) -> None:
    queued = queued_job()
    assert [count_delivery(queued), count_delivery(queued)] == [1, 2]
    assert count_delivery(running_job()) == -1


def take(token_hash: str, job_id: str) -> bytes | None:
    return scripts.run(
        scripts.TAKE,
        keys=[keys.result_key(token_hash), keys.job_key(job_id), keys.events_key(job_id)],
        args=[123],
    )


def test_a_take_gives_the_blob_once_and_notes_it_on_the_record(redis_conn: redis.Redis) -> None:
    job_id = running_job()
    redis_conn.set(keys.result_key("h" * 64), b"sealed", ex=60)
    assert [take("h" * 64, job_id), take("h" * 64, job_id)] == [b"sealed", None]
    assert redis_conn.hget(keys.job_key(job_id), "result_taken_at") == b"123"
    assert not redis_conn.exists(keys.events_key(job_id))


def test_a_take_never_creates_a_record_without_a_ttl(redis_conn: redis.Redis) -> None:
    redis_conn.set(keys.result_key("h" * 64), b"sealed", ex=60)
    assert take("h" * 64, "gone") == b"sealed"
    assert not redis_conn.exists(keys.job_key("gone"))


def test_a_script_runs_again_after_redis_forgot_it(redis_conn: redis.Redis) -> None:
    queued = queued_job()
    count_delivery(queued)
    redis_conn.script_flush()
    assert count_delivery(queued) == 2
