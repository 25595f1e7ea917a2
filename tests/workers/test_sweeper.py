"""The sweeper's cases, each on the session's real Redis and database.

Every end the sweeper makes goes through the lifecycle: it is counted in the
metrics and written to the audit log like any other end.
"""

from __future__ import annotations

import pytest
import redis
from standardwebhooks.webhooks import Webhook

from backend.audit.models import AuditEvent
from backend.ephemeral import keys, store
from backend.ephemeral.records import cancelled_ttl
from backend.jobs import lifecycle
from backend.jobs.models import JobTrace
from backend.pseudonyms import hashed_id
from backend.webhooks import events as webhooks
from tests.factories import hooked_job, queued_job, running_job, succeeded_job
from tests.webhook_receiver import receiver
from workers.sweeper import ACCOUNTING_SETTLE_SECONDS, TRACE_SETTLE_SECONDS, sweep

pytestmark = pytest.mark.django_db


def finished_count(conn: redis.Redis, status: str, code: str, task: str = "cartoonize") -> float:
    field = f"ephemera_jobs_finished_total|error_code={code}|status={status}|task={task}"
    return float(conn.hget(keys.METRICS_KEY, field) or 0)


def audited(job_id: str) -> list[tuple[str, str]]:
    rows = AuditEvent.objects.filter(job=hashed_id(job_id))
    return [(row.event, row.outcome) for row in rows]


def test_a_job_stuck_running_past_its_deadline_fails_worker_lost(redis_conn: redis.Redis) -> None:
    job_id = running_job(traced=True)  # a worker took it, then vanished
    record = store.get_job(job_id)

    assert sweep(now=record.deadline - 1)["stuck"] == 0
    counts = sweep(now=record.deadline + 1)

    assert counts["stuck"] == 1
    swept = store.get_job(job_id)
    assert (swept.status, swept.error_code) == ("failed", "worker_lost")
    assert finished_count(redis_conn, "failed", "worker_lost") == 1
    assert audited(job_id) == [("failed", "worker_lost")]
    assert JobTrace.objects.get(id=job_id).status == "failed"


def test_a_job_queued_past_its_expiry_ends_expired(redis_conn: redis.Redis) -> None:
    job_id = queued_job(traced=True)
    record = store.get_job(job_id)

    counts = sweep(now=record.expires_at + 1)

    assert counts["expired"] == 1
    swept = store.get_job(job_id)
    assert (swept.status, swept.error_code) == ("expired", "input_expired")
    assert not redis_conn.exists(keys.input_key(job_id))
    assert finished_count(redis_conn, "expired", "input_expired") == 1
    assert audited(job_id) == [("expired", "input_expired")]


def test_an_unclaimed_result_past_its_expiry_is_deleted(redis_conn: redis.Redis) -> None:
    job_id = running_job(traced=True)
    lifecycle.succeed(job_id, data=b"out", content_type="image/png", run_ms=5)
    record = store.get_job(job_id)

    counts = sweep(now=record.result_expires_at + 1)

    assert counts["expired"] == 1 and counts["unaccounted"] == 0
    assert store.get_job(job_id).status == "expired"
    assert not redis_conn.exists(keys.result_key(record.result_token_hash))
    # The job ended once, when it succeeded: the expiry of its result is no second end.
    assert audited(job_id) == [("succeeded", "")]
    assert finished_count(redis_conn, "succeeded", "") == 1
    assert finished_count(redis_conn, "expired", "expired") == 0


def test_an_end_nobody_accounted_for_is_accounted_once(redis_conn: redis.Redis) -> None:
    """A job process published its result, then its whole worker node died:
    no pool process accounted for the end, and no redelivery will."""
    job_id = succeeded_job(traced=True)
    ended = store.get_job(job_id).finished_at

    assert sweep(now=ended + 1)["unaccounted"] == 0  # the pool process may still be at it
    assert sweep(now=ended + ACCOUNTING_SETTLE_SECONDS + 1)["unaccounted"] == 1
    assert sweep(now=ended + ACCOUNTING_SETTLE_SECONDS + 2)["unaccounted"] == 0

    assert finished_count(redis_conn, "succeeded", "") == 1
    assert audited(job_id) == [("succeeded", "")]
    assert JobTrace.objects.get(id=job_id).status == "succeeded"


def test_a_delete_whose_web_process_died_after_the_purge_is_accounted_once(
    redis_conn: redis.Redis,
) -> None:
    job_id = running_job(traced=True)
    store.cancel_job(job_id, tombstone_ttl=cancelled_ttl())  # and then the web process died
    ended = store.get_job(job_id).finished_at

    assert sweep(now=ended + 1)["unaccounted"] == 0  # the DELETE may still be at it
    assert sweep(now=ended + ACCOUNTING_SETTLE_SECONDS + 1)["unaccounted"] == 1
    assert sweep(now=ended + ACCOUNTING_SETTLE_SECONDS + 2)["unaccounted"] == 0

    assert finished_count(redis_conn, "cancelled", "") == 1
    trace = JobTrace.objects.get(id=job_id)
    assert trace.status == "cancelled"
    # Once the tombstone is gone too, the job is still cancelled, never lost.
    redis_conn.delete(keys.job_key(job_id))
    assert sweep(now=trace.created_at.timestamp() + TRACE_SETTLE_SECONDS + 1)["lost"] == 0


def test_a_delete_whose_web_process_died_before_queueing_the_webhook_still_sends_it(
    redis_conn: redis.Redis,
) -> None:
    with receiver() as hook:
        job_id, secret = hooked_job(hook.url())
        store.cancel_job(job_id, tombstone_ttl=cancelled_ttl())  # and then the web process died
        ended = store.get_job(job_id).finished_at

        assert sweep(now=ended + ACCOUNTING_SETTLE_SECONDS + 1)["unaccounted"] == 1
        assert webhooks.deliver(webhooks.event_id_of(job_id)).outcome == "delivered"

        (post,) = hook.received
        assert Webhook(secret).verify(post.body, post.headers)["status"] == "cancelled"


def test_the_delete_of_an_ended_job_leaves_no_end_to_account(redis_conn: redis.Redis) -> None:
    job_id = running_job(traced=True)
    lifecycle.succeed(job_id, data=b"out", content_type="image/png", run_ms=5)
    lifecycle.cancel(job_id, client_id=1)
    ended = store.get_job(job_id).finished_at

    assert sweep(now=ended + ACCOUNTING_SETTLE_SECONDS + 1)["unaccounted"] == 0
    assert finished_count(redis_conn, "succeeded", "") == 1
    assert finished_count(redis_conn, "cancelled", "") == 0


def test_a_traced_job_that_redis_lost_ends_failed_lost(redis_conn: redis.Redis) -> None:
    job_id = queued_job(traced=True)
    redis_conn.delete(keys.job_key(job_id), keys.input_key(job_id), keys.events_key(job_id))
    trace = JobTrace.objects.get(id=job_id)

    assert sweep(now=trace.created_at.timestamp() + 1)["lost"] == 0  # may still be arriving
    counts = sweep(now=trace.created_at.timestamp() + TRACE_SETTLE_SECONDS + 1)

    assert counts["lost"] == 1
    trace.refresh_from_db()
    assert (trace.status, trace.error_code) == ("failed", "lost")
    assert finished_count(redis_conn, "failed", "lost") == 1
    assert audited(job_id) == [("failed", "lost")]


class Killed(BaseException):
    """The process was killed here (a BaseException: nothing catches it)."""


def test_a_lost_job_whose_reconcile_was_killed_before_the_count_is_counted_once(
    redis_conn: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = queued_job(traced=True)
    redis_conn.delete(keys.job_key(job_id), keys.input_key(job_id), keys.events_key(job_id))
    trace = JobTrace.objects.get(id=job_id)

    def killed(*args: object, **kwargs: object) -> bool:
        raise Killed

    with monkeypatch.context() as patched:
        patched.setattr(lifecycle, "_count_end_once", killed)
        with pytest.raises(Killed):
            sweep(now=trace.created_at.timestamp() + TRACE_SETTLE_SECONDS + 1)
    trace.refresh_from_db()
    assert (trace.status, trace.error_code) == ("failed", "lost")
    assert finished_count(redis_conn, "failed", "lost") == 0
    ended = store.get_job(job_id).finished_at

    assert sweep(now=ended + ACCOUNTING_SETTLE_SECONDS + 1)["unaccounted"] == 1
    assert sweep(now=ended + ACCOUNTING_SETTLE_SECONDS + 2)["unaccounted"] == 0

    assert finished_count(redis_conn, "failed", "lost") == 1
    assert audited(job_id) == [("failed", "lost")]


def test_payloads_whose_job_record_is_gone_are_deleted(redis_conn: redis.Redis) -> None:
    orphan_input = queued_job()
    redis_conn.delete(keys.job_key(orphan_input))
    finished = succeeded_job()
    result_key = keys.result_key(store.get_job(finished).result_token_hash)
    redis_conn.delete(keys.job_key(finished))
    live = queued_job()

    counts = sweep()

    assert counts["orphaned"] == 4  # an input, a result and two event streams
    assert not redis_conn.exists(keys.input_key(orphan_input))
    assert not redis_conn.exists(result_key)
    assert redis_conn.exists(keys.input_key(live)), "a live job's payload was swept"


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


def test_traces_past_their_life_are_deleted(redis_conn: redis.Redis) -> None:
    from datetime import timedelta

    from django.utils import timezone

    old, young = queued_job(traced=True), queued_job(traced=True)
    JobTrace.objects.filter(id=old).update(expires_at=timezone.now() - timedelta(seconds=1))

    assert sweep()["traces"] == 1
    assert [str(job_id) for job_id in JobTrace.objects.values_list("id", flat=True)] == [young]
