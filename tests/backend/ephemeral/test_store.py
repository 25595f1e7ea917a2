"""The job lifecycle in Redis: atomic claims, single use, cancellation, TTLs."""

from __future__ import annotations

import threading
import uuid

import pytest
import redis

from backend.ephemeral import store


def new_job(image: bytes = b"photo bytes") -> str:
    job_id = str(uuid.uuid4())
    store.create_job(
        job_id=job_id, owner="alice", task="cartoonize", params={}, fmt="jpeg", image=image
    )
    return job_id


def test_the_upload_is_stored_sealed_and_with_a_ttl(redis_conn: redis.Redis) -> None:
    job_id = new_job(b"photo bytes")
    blob = redis_conn.get(store.input_key(job_id))
    assert blob.startswith(b"EPH1") and b"photo bytes" not in blob
    for key in (store.input_key(job_id), store.job_key(job_id), store.events_key(job_id)):
        assert 0 < redis_conn.ttl(key) <= store.record_ttl()


def test_only_one_of_many_concurrent_claims_wins(redis_conn: redis.Redis) -> None:
    job_id = new_job()
    outcomes: list[str] = []
    barrier = threading.Barrier(8)

    def claim() -> None:
        barrier.wait()
        outcomes.append(store.claim_job(job_id).outcome)

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes.count("claimed") == 1
    assert not redis_conn.exists(store.input_key(job_id))


def test_a_claim_decrypts_the_upload_and_takes_it(redis_conn: redis.Redis) -> None:
    job_id = new_job(b"photo bytes")
    claim = store.claim_job(job_id)
    assert (claim.outcome, claim.image) == ("claimed", b"photo bytes")
    assert store.get_job(job_id).status == "running"
    assert not redis_conn.exists(store.input_key(job_id))


def test_a_second_delivery_of_a_running_job_fails_it_worker_lost(redis_conn: redis.Redis) -> None:
    job_id = new_job()
    store.claim_job(job_id)
    assert store.claim_job(job_id).outcome == "lost"
    record = store.get_job(job_id)
    assert (record.status, record.error_code) == ("failed", "worker_lost")


def test_a_result_is_single_use(redis_conn: redis.Redis) -> None:
    job_id = new_job()
    store.claim_job(job_id)
    token = store.publish_result(job_id, data=b"cartoon", content_type="image/jpeg", run_ms=5)
    assert token is not None
    assert store.reveal_token(store.get_job(job_id)) == token
    assert store.take_result(token, owner="alice").data == b"cartoon"
    with pytest.raises(store.ResultGone):
        store.take_result(token, owner="alice")


def test_a_result_is_not_given_to_another_owner_nor_burned_by_them(redis_conn: redis.Redis) -> None:
    job_id = new_job()
    store.claim_job(job_id)
    token = store.publish_result(job_id, data=b"cartoon", content_type="image/jpeg", run_ms=5)
    with pytest.raises(store.ResultUnknown):
        store.take_result(token, owner="mallory")
    assert store.take_result(token, owner="alice").data == b"cartoon"


def test_an_unknown_or_forged_token_is_unknown(redis_conn: redis.Redis) -> None:
    job_id = new_job()
    store.claim_job(job_id)
    store.publish_result(job_id, data=b"cartoon", content_type="image/jpeg", run_ms=5)
    forged = store.new_result_token(job_id)  # right job, wrong secret
    for token in (forged, "rt_nonsense", ""):
        with pytest.raises(store.ResultUnknown):
            store.take_result(token, owner="alice")


def test_a_result_sealed_for_one_job_does_not_open_in_another(redis_conn: redis.Redis) -> None:
    first, second = new_job(), new_job()
    for job_id in (first, second):
        store.claim_job(job_id)
    token_a = store.publish_result(first, data=b"A", content_type="image/jpeg", run_ms=1)
    token_b = store.publish_result(second, data=b"B", content_type="image/jpeg", run_ms=1)
    key_a = store.result_key(store.token_hash(token_a))
    key_b = store.result_key(store.token_hash(token_b))
    redis_conn.set(key_b, redis_conn.get(key_a), ex=60)  # swap A's ciphertext under B
    from backend.ephemeral.crypto import DecryptionError

    with pytest.raises(DecryptionError):
        store.take_result(token_b, owner="alice")


def test_cancel_purges_payloads_and_a_cancelled_job_never_publishes(
    redis_conn: redis.Redis,
) -> None:
    job_id = new_job()
    store.claim_job(job_id)
    assert store.cancel_job(job_id)
    assert store.publish_result(job_id, data=b"late", content_type="image/jpeg", run_ms=1) is None
    assert store.get_job(job_id).status == "cancelled"
    assert not list(redis_conn.scan_iter(match="eph:res:*"))
    assert not redis_conn.exists(store.input_key(job_id))
    assert redis_conn.ttl(store.job_key(job_id)) > 0


def test_waiting_returns_as_soon_as_the_job_ends(redis_conn: redis.Redis) -> None:
    job_id = new_job()
    store.claim_job(job_id)
    timer = threading.Timer(
        0.3, store.fail_job, kwargs={"job_id": job_id, "code": "x", "message": "m"}
    )
    timer.start()
    import time

    started = time.monotonic()
    record = store.wait_for_end(job_id, timeout=10)
    assert record is not None and record.status == "failed"
    assert time.monotonic() - started < 5
    timer.join()


def test_waiting_gives_up_after_the_timeout(redis_conn: redis.Redis) -> None:
    job_id = new_job()
    record = store.wait_for_end(job_id, timeout=0.3)
    assert record is not None and record.status == "queued"
