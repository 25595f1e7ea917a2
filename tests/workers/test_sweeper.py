"""The sweeper's four cases, each on the session's real Redis."""

from __future__ import annotations

import uuid

import pytest
import redis

from backend.ephemeral import store
from workers.sweeper import sweep


def new_job(image: bytes = b"\xff\xd8\xff sealed anyway") -> str:
    job_id = str(uuid.uuid4())
    store.create_job(
        job_id=job_id, owner="o" * 64, task="cartoonize", params={}, fmt="jpeg", image=image
    )
    return job_id


def test_a_job_stuck_running_past_its_deadline_fails_worker_lost(redis_conn: redis.Redis) -> None:
    job_id = new_job()
    assert store.claim_job(job_id).outcome == "claimed"  # a worker took it, then vanished
    record = store.get_job(job_id)

    assert sweep(now=record.deadline - 1)["stuck"] == 0
    counts = sweep(now=record.deadline + 1)

    assert counts["stuck"] == 1
    swept = store.get_job(job_id)
    assert (swept.status, swept.error_code) == ("failed", "worker_lost")


def test_a_job_queued_past_its_expiry_ends_expired(redis_conn: redis.Redis) -> None:
    job_id = new_job()
    record = store.get_job(job_id)

    counts = sweep(now=record.expires_at + 1)

    assert counts["expired"] == 1
    assert store.get_job(job_id).status == "expired"
    assert not redis_conn.exists(store.input_key(job_id))
    # The expired job's queue message later finds nothing to run.
    assert store.claim_job(job_id).outcome == "ended"


def test_an_unclaimed_result_past_its_expiry_is_deleted(redis_conn: redis.Redis) -> None:
    job_id = new_job()
    store.claim_job(job_id)
    store.publish_result(job_id, data=b"result", content_type="image/png", run_ms=1)
    record = store.get_job(job_id)

    counts = sweep(now=record.result_expires_at + 1)

    assert counts["expired"] == 1
    assert store.get_job(job_id).status == "expired"
    assert not redis_conn.exists(store.result_key(record.result_token_hash))


def test_payloads_whose_job_record_is_gone_are_deleted(redis_conn: redis.Redis) -> None:
    orphan_input = new_job()
    redis_conn.delete(store.job_key(orphan_input))
    finished = new_job()
    store.claim_job(finished)
    store.publish_result(finished, data=b"result", content_type="image/png", run_ms=1)
    result_key = store.result_key(store.get_job(finished).result_token_hash)
    redis_conn.delete(store.job_key(finished))
    live = new_job()

    counts = sweep()

    assert counts["orphaned"] == 4  # an input, a result and two event streams
    assert not redis_conn.exists(store.input_key(orphan_input))
    assert not redis_conn.exists(result_key)
    assert redis_conn.exists(store.input_key(live)), "a live job's payload was swept"


@pytest.mark.parametrize("kind", ["string", "hash", "list"])
def test_a_key_of_ours_without_a_ttl_is_deleted_and_counted(
    redis_conn: redis.Redis, kind: str
) -> None:
    key = f"eph:stray:{kind}"
    {
        "string": lambda: redis_conn.set(key, b"x"),
        "hash": lambda: redis_conn.hset(key, "a", "b"),
        "list": lambda: redis_conn.rpush(key, b"x"),
    }[kind]()
    redis_conn.set("not-ours", b"x")
    try:
        counts = sweep()
        assert counts["no_ttl"] == 1
        assert not redis_conn.exists(key)
        assert redis_conn.exists("not-ours"), "the sweeper touched a key that is not ours"
    finally:
        redis_conn.delete("not-ours")
