"""Job operations in Redis: atomic claims, single use, cancellation, TTLs."""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid

import pytest
import redis

from backend.ephemeral import keys, store, tokens
from backend.ephemeral.records import record_ttl
from tests.factories import queued_job


def new_job(image: bytes = b"photo bytes") -> str:
    return queued_job(image, owner="alice")


def claim(job_id: str) -> store.Claim:
    return store.claim_job(job_id, deadline=time.time() + 60)


def publish(job_id: str, data: bytes = b"cartoon") -> str:
    published = store.publish_result(job_id, data=data, content_type="image/jpeg", run_ms=5)
    assert published is not None
    return published.token


def test_the_upload_is_stored_sealed_and_with_a_ttl(redis_conn: redis.Redis) -> None:
    job_id = new_job(b"photo bytes")
    blob = redis_conn.get(keys.input_key(job_id))
    assert blob.startswith(b"EPH1") and b"photo bytes" not in blob
    for key in (keys.input_key(job_id), keys.job_key(job_id), keys.events_key(job_id)):
        assert 0 < redis_conn.ttl(key) <= record_ttl()


def test_only_one_of_many_concurrent_claims_wins(redis_conn: redis.Redis) -> None:
    job_id = new_job()
    outcomes: list[str] = []
    barrier = threading.Barrier(8)

    def race() -> None:
        barrier.wait()
        outcomes.append(claim(job_id).found)

    threads = [threading.Thread(target=race) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes.count("claimed") == 1
    assert not redis_conn.exists(keys.input_key(job_id))


def test_a_claim_decrypts_the_upload_and_takes_it(redis_conn: redis.Redis) -> None:
    job_id = new_job(b"photo bytes")
    claimed = claim(job_id)
    assert (claimed.found, claimed.open_image()) == ("claimed", b"photo bytes")
    assert claimed.record is not None and claimed.record.status == "running"
    assert store.get_job(job_id).status == "running"
    assert not redis_conn.exists(keys.input_key(job_id))


def test_a_second_claim_finds_the_job_running_and_changes_nothing(
    redis_conn: redis.Redis,
) -> None:
    job_id = new_job()
    claim(job_id)
    assert claim(job_id).found == "running"
    assert store.get_job(job_id).status == "running"


def test_a_claim_of_a_job_whose_upload_expired_says_so(redis_conn: redis.Redis) -> None:
    job_id = new_job()
    redis_conn.delete(keys.input_key(job_id))
    assert claim(job_id).found == "no_input"
    assert claim(str(uuid.uuid4())).found == "missing"


def test_a_transition_applies_only_from_the_expected_status(redis_conn: redis.Redis) -> None:
    job_id = new_job()
    fields = {"error_code": "x"}
    assert (
        store.transition(job_id, expected=("running",), new="failed", fields=fields, ttl=60) is None
    )
    ended = store.transition(job_id, expected=("queued",), new="failed", fields=fields, ttl=60)
    assert ended is not None and (ended.status, ended.error_code) == ("failed", "x")
    assert 0 < redis_conn.ttl(keys.job_key(job_id)) <= 60


def test_a_result_is_single_use(redis_conn: redis.Redis) -> None:
    job_id = new_job()
    claim(job_id)
    token = publish(job_id)
    assert store.reveal_token(store.get_job(job_id)) == token
    assert store.take_result(token, owner="alice").data == b"cartoon"
    with pytest.raises(store.ResultGone):
        store.take_result(token, owner="alice")


def test_a_result_is_not_given_to_another_owner_nor_burned_by_them(redis_conn: redis.Redis) -> None:
    job_id = new_job()
    claim(job_id)
    token = publish(job_id)
    with pytest.raises(store.ResultUnknown):
        store.take_result(token, owner="mallory")
    assert store.take_result(token, owner="alice").data == b"cartoon"


def test_an_unknown_or_forged_token_is_unknown(redis_conn: redis.Redis) -> None:
    job_id = new_job()
    claim(job_id)
    publish(job_id)
    forged = tokens.new_token(job_id)  # right job, wrong secret
    for token in (forged, "rt_nonsense", ""):
        with pytest.raises(store.ResultUnknown):
            store.take_result(token, owner="alice")


def test_a_result_sealed_for_one_job_does_not_open_in_another(redis_conn: redis.Redis) -> None:
    first, second = new_job(), new_job()
    for job_id in (first, second):
        claim(job_id)
    token_a, token_b = publish(first, b"A"), publish(second, b"B")
    key_a = keys.result_key(tokens.token_hash(token_a))
    key_b = keys.result_key(tokens.token_hash(token_b))
    redis_conn.set(key_b, redis_conn.get(key_a), ex=60)  # swap A's ciphertext under B
    from backend.ephemeral.crypto import DecryptionError

    with pytest.raises(DecryptionError):
        store.take_result(token_b, owner="alice")


def test_cancel_purges_payloads_and_a_cancelled_job_never_publishes(
    redis_conn: redis.Redis,
) -> None:
    job_id = new_job()
    claim(job_id)
    before = store.cancel_job(job_id, tombstone_ttl=60)
    assert before is not None and before.status == "running"
    assert store.publish_result(job_id, data=b"late", content_type="image/jpeg", run_ms=1) is None
    assert store.get_job(job_id).status == "cancelled"
    assert not list(redis_conn.scan_iter(match="eph:res:*"))
    assert not redis_conn.exists(keys.input_key(job_id))
    assert redis_conn.ttl(keys.job_key(job_id)) > 0


def test_deleting_an_ended_job_purges_it_and_keeps_its_end(redis_conn: redis.Redis) -> None:
    # A tombstone saying `cancelled` rewrote the end of a job that had succeeded
    # or failed, and the status flipped back once the job's trace answered for it.
    done, failed = new_job(), new_job()
    for job_id in (done, failed):
        claim(job_id)
    publish(done, b"result")
    store.transition(
        failed,
        expected=("running",),
        new="failed",
        fields={"error_code": "time_limit", "error_message": "late", "finished_at": time.time()},
        ttl=60,
    )
    for job_id, end, code in ((done, "succeeded", None), (failed, "failed", "time_limit")):
        ended = store.get_job(job_id)
        before = store.cancel_job(job_id, tombstone_ttl=60)
        assert before is not None and before.status == end
        tombstone = store.get_job(job_id)
        assert (tombstone.status, tombstone.error_code) == (end, code)
        assert tombstone.finished_at == ended.finished_at
        assert tombstone.accounted and tombstone.result_token_sealed is None
    assert not list(redis_conn.scan_iter(match="eph:res:*"))


def test_a_lost_job_is_written_back_only_where_redis_has_no_record(
    redis_conn: redis.Redis,
) -> None:
    job_id = new_job()
    lost = dataclasses.replace(
        store.get_job(job_id), status="failed", error_code="lost", finished_at=time.time()
    )
    assert not store.record_lost(lost, ttl=60)  # Redis has the job again: it stays
    assert store.get_job(job_id).status == "queued"

    redis_conn.delete(keys.job_key(job_id), keys.events_key(job_id), keys.input_key(job_id))
    assert store.record_lost(lost, ttl=60)
    back = store.get_job(job_id)
    assert (back.status, back.error_code, back.accounted) == ("failed", "lost", False)
    assert back.finished_at == lost.finished_at
    assert 0 < redis_conn.ttl(keys.job_key(job_id)) <= 60
    assert 0 < redis_conn.ttl(keys.events_key(job_id)) <= 60


def test_waiting_returns_as_soon_as_the_job_ends(redis_conn: redis.Redis) -> None:
    job_id = new_job()
    claim(job_id)
    timer = threading.Timer(
        0.3,
        store.transition,
        args=[job_id],
        kwargs={"expected": ("running",), "new": "failed", "fields": {}, "ttl": 60},
    )
    timer.start()
    started = time.monotonic()
    record = store.wait_for_end(job_id, timeout=10)
    assert record is not None and record.status == "failed"
    assert time.monotonic() - started < 5
    timer.join()


def test_waiting_gives_up_after_the_timeout(redis_conn: redis.Redis) -> None:
    job_id = new_job()
    record = store.wait_for_end(job_id, timeout=0.3)
    assert record is not None and record.status == "queued"
