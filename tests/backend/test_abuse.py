"""Rate limits, temporary blocks, in-flight counts and the caller's address, in Redis."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
from pytest_django.fixtures import Settings

from backend import abuse
from backend.ephemeral import keys, store
from backend.pseudonyms import subject_hash
from tests.factories import queued_job

DAVE = subject_hash("client", "dave")
NOW = 1_000_000.0


def test_the_rate_refills_with_time(redis_conn: redis.Redis) -> None:
    """GCRA with an injected clock: 10 a minute is one every 6 s."""
    for _ in range(10):
        assert abuse.rate_limit(scope="t", subject=DAVE, per_minute=10, now=NOW).allowed
    refused = abuse.rate_limit(scope="t", subject=DAVE, per_minute=10, now=NOW)
    assert not refused.allowed
    assert refused.retry_after == pytest.approx(6.0, abs=0.01)
    assert not abuse.rate_limit(scope="t", subject=DAVE, per_minute=10, now=NOW + 5.9).allowed
    assert abuse.rate_limit(scope="t", subject=DAVE, per_minute=10, now=NOW + 6.01).allowed


def test_it_counts_each_scope_and_subject_apart(redis_conn: redis.Redis) -> None:
    abuse.rate_limit(scope="t", subject=DAVE, per_minute=1, now=NOW)
    assert abuse.rate_limit(scope="other", subject=DAVE, per_minute=1, now=NOW).allowed
    assert abuse.rate_limit(scope="t", subject="erin", per_minute=1, now=NOW).allowed


def test_a_rate_of_zero_means_no_limit_and_no_key(redis_conn: redis.Redis) -> None:
    for _ in range(50):
        assert abuse.rate_limit(scope="t", subject=DAVE, per_minute=0, now=NOW).allowed
    assert not redis_conn.exists(keys.rate_key("t", DAVE))


def test_a_rate_key_lives_no_longer_than_it_matters(redis_conn: redis.Redis) -> None:
    abuse.rate_limit(scope="t", subject=DAVE, per_minute=10, now=NOW)
    assert 0 < redis_conn.pttl(keys.rate_key("t", DAVE)) <= 6001


def test_it_blocks_a_subject_after_the_configured_rejections_in_a_row(
    redis_conn: redis.Redis, settings: Settings
) -> None:
    settings.EPHEMERA_BLOCK_AFTER = 3
    settings.EPHEMERA_BLOCK_SECONDS = 600
    assert [abuse.note_rejected_upload(subjects=[DAVE]) for _ in range(3)] == [False, False, True]
    assert 590 < abuse.blocked_for(subjects=["erin", DAVE]) <= 600
    assert abuse.blocked_for(subjects=["erin"]) == 0


def test_an_accepted_upload_starts_the_count_again(
    redis_conn: redis.Redis, settings: Settings
) -> None:
    settings.EPHEMERA_BLOCK_AFTER = 3
    for _ in range(2):
        abuse.note_rejected_upload(subjects=[DAVE])
    abuse.note_accepted_upload(subjects=[DAVE])
    assert [abuse.note_rejected_upload(subjects=[DAVE]) for _ in range(2)] == [False, False]
    assert abuse.blocked_for(subjects=[DAVE]) == 0


def test_jobs_in_flight_drop_out_when_they_end_or_vanish(redis_conn: redis.Redis) -> None:
    queued, ended, vanished = (queued_job() for _ in range(3))
    for job_id in (queued, ended, vanished):
        assert abuse.admit_in_flight(owner="alice", job_id=job_id, cap=0)
    store.transition(ended, expected=("queued",), new="failed", fields={}, ttl=60)
    redis_conn.delete(keys.job_key(vanished))

    assert abuse.in_flight(owner="alice") == 1
    assert redis_conn.smembers(keys.active_key("alice")) == {queued.encode()}
    assert abuse.in_flight(owner="bob") == 0


def test_a_job_is_admitted_in_flight_below_the_cap_only(redis_conn: redis.Redis) -> None:
    first, second, third = (queued_job() for _ in range(3))
    assert abuse.admit_in_flight(owner="alice", job_id=first, cap=2)
    assert abuse.admit_in_flight(owner="alice", job_id=second, cap=2)
    assert not abuse.admit_in_flight(owner="alice", job_id=third, cap=2)
    store.transition(first, expected=("queued",), new="failed", fields={}, ttl=60)
    assert abuse.admit_in_flight(owner="alice", job_id=third, cap=2)
    assert redis_conn.smembers(keys.active_key("alice")) == {second.encode(), third.encode()}


def test_concurrent_admissions_never_pass_the_cap(redis_conn: redis.Redis) -> None:
    # Counting, then adding, let all of a burst through: each counted before
    # any had added.
    jobs = [queued_job() for _ in range(16)]
    start = threading.Barrier(len(jobs))

    def admit(job_id: str) -> bool:
        start.wait()
        return abuse.admit_in_flight(owner="alice", job_id=job_id, cap=4)

    with ThreadPoolExecutor(len(jobs)) as pool:
        admitted = sum(pool.map(admit, jobs))
    assert admitted == 4
    assert abuse.in_flight(owner="alice") == 4


@pytest.mark.parametrize(
    ("remote", "forwarded", "trusted", "expected"),
    [
        ("203.0.113.9", "", [], "203.0.113.9"),
        ("203.0.113.9", "1.2.3.4", [], "203.0.113.9"),  # untrusted peer: XFF ignored
        ("10.0.0.2", "198.51.100.7", ["10.0.0.0/8"], "198.51.100.7"),
        ("10.0.0.2", "6.6.6.6, 198.51.100.7", ["10.0.0.0/8"], "198.51.100.7"),  # forged left part
        ("10.0.0.2", "198.51.100.7, 10.0.0.3", ["10.0.0.0/8"], "198.51.100.7"),  # two proxies
        ("10.0.0.2", "not-an-ip", ["10.0.0.0/8"], "10.0.0.2"),
    ],
)
def test_x_forwarded_for_is_believed_only_from_trusted_proxies(
    settings: Settings, remote: str, forwarded: str, trusted: list[str], expected: str
) -> None:
    settings.EPHEMERA_TRUSTED_PROXIES = trusted
    assert abuse.client_ip(remote, forwarded) == expected
