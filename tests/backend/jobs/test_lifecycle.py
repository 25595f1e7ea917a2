"""The job lifecycle: each change happens once, with its metric, audit row and trace."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable

import pytest
import redis
from pytest_django.fixtures import Settings

from backend.audit.models import AuditEvent
from backend.ephemeral import connection, keys, store
from backend.errors import CodedError, job_error
from backend.imaging import ImageHeader
from backend.jobs import lifecycle
from backend.jobs.models import JobTrace
from backend.pseudonyms import client_subject, hashed_id
from backend.webhooks import events as webhooks
from tests.conftest import redis_out_of_reach
from tests.factories import NOBODY, hooked_job, queued_job, running_job

pytestmark = pytest.mark.django_db


def finished(conn: redis.Redis, status: str, code: str = "", task: str = "cartoonize") -> int:
    field = f"ephemera_jobs_finished_total|error_code={code}|status={status}|task={task}"
    return round(float(conn.hget(keys.METRICS_KEY, field) or 0))


def audited(job_id: str) -> list[tuple[str, str]]:
    return [(row.event, row.outcome) for row in AuditEvent.objects.filter(job=hashed_id(job_id))]


def trace_of(job_id: str) -> tuple[str, str]:
    trace = JobTrace.objects.get(id=job_id)
    return trace.status, trace.error_code


def delivered(job_id: str) -> None:
    """A delivery that finds no queued job, as a job process and its pool process handle it."""
    claimed = lifecycle.claim(job_id)
    assert claimed.record is None
    lifecycle.account(lifecycle.Ending(job_id, "skipped", found=claimed.found))


def submit(admit: Callable[[str], None] | None = None) -> str:
    return lifecycle.submit(
        client_id=1,
        owner=NOBODY,
        task="cartoonize",
        params={},
        header=ImageHeader.of("jpeg", width=1, height=1),
        image=b"\xff\xd8\xff a photo",
        admit=admit,
    ).id


def test_a_submit_traces_seals_and_queues_the_job(redis_conn: redis.Redis) -> None:
    job_id = submit()

    assert trace_of(job_id) == ("queued", "")
    assert store.get_job(job_id).status == "queued"
    assert redis_conn.exists(keys.input_key(job_id))
    bodies = [json.loads(message)["body"] for message in redis_conn.lrange("jobs", 0, -1)]
    assert any(job_id in base64.b64decode(body).decode() for body in bodies)
    assert audited(job_id) == [("submitted", "")]


def test_a_submit_that_redis_refuses_leaves_no_trace(
    redis_conn: redis.Redis, settings: object
) -> None:
    from backend.errors import CodedError
    from tests.services import free_port

    live = settings.REDIS_URL  # type: ignore[attr-defined]
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"  # type: ignore[attr-defined]
    connection.forget()
    try:
        with pytest.raises(CodedError) as refused:
            submit()
    finally:
        settings.REDIS_URL = live  # type: ignore[attr-defined]
        connection.forget()
    assert (refused.value.status, refused.value.code) == (503, "backend_unavailable")
    assert not JobTrace.objects.exists()


def test_a_submit_its_admission_refuses_leaves_nothing(redis_conn: redis.Redis) -> None:
    from backend.errors import CodedError

    seen: list[str] = []

    def refuse(job_id: str) -> None:
        # Asked when the job is in Redis, before it is queued.
        assert store.get_job(job_id) is not None
        seen.append(job_id)
        raise CodedError("rate_limited", "Too many jobs in flight.", status=429)

    with pytest.raises(CodedError):
        submit(admit=refuse)

    [job_id] = seen
    assert store.get_job(job_id) is None
    assert not redis_conn.exists(keys.input_key(job_id))
    bodies = [json.loads(message)["body"] for message in redis_conn.lrange("jobs", 0, -1)]
    assert not any(job_id in base64.b64decode(body).decode() for body in bodies)
    assert not JobTrace.objects.filter(id=job_id).exists()
    assert audited(job_id) == []


def test_a_claim_takes_a_queued_job_once(redis_conn: redis.Redis) -> None:
    job_id = queued_job(traced=True)

    claimed = lifecycle.claim(job_id)

    assert claimed.found == "claimed" and claimed.record is not None
    assert claimed.record.status == "running"
    assert claimed.open_image() == b"\xff\xd8\xff\xe0 a photo"
    assert not redis_conn.exists(keys.input_key(job_id))


def test_a_second_delivery_of_a_running_job_fails_it_worker_lost(redis_conn: redis.Redis) -> None:
    job_id = running_job(traced=True)

    delivered(job_id)

    record = store.get_job(job_id)
    assert (record.status, record.error_code) == ("failed", "worker_lost")
    assert finished(redis_conn, "failed", "worker_lost") == 1
    assert audited(job_id) == [("failed", "worker_lost")]
    assert trace_of(job_id) == ("failed", "worker_lost")


def test_a_claim_after_the_upload_expired_ends_the_job_expired(redis_conn: redis.Redis) -> None:
    job_id = queued_job(traced=True)
    redis_conn.delete(keys.input_key(job_id))

    delivered(job_id)

    record = store.get_job(job_id)
    assert (record.status, record.error_code) == ("expired", "input_expired")
    assert audited(job_id) == [("expired", "input_expired")]


def test_a_claim_of_a_job_redis_lost_ends_its_trace_lost(redis_conn: redis.Redis) -> None:
    job_id = queued_job(traced=True)
    redis_conn.delete(keys.job_key(job_id))

    delivered(job_id)

    assert trace_of(job_id) == ("failed", "lost")
    assert finished(redis_conn, "failed", "lost") == 1
    # Reconciling again counts nothing twice.
    lifecycle.reconcile(job_id)
    assert finished(redis_conn, "failed", "lost") == 1
    assert audited(job_id) == [("failed", "lost")]


def test_a_job_redis_lost_ends_lost_even_when_redis_is_out_of_reach(
    redis_conn: redis.Redis, settings: Settings
) -> None:
    job_id = queued_job(traced=True)
    redis_conn.delete(keys.job_key(job_id))
    with redis_out_of_reach(settings):
        lifecycle.reconcile(job_id)

    assert trace_of(job_id) == ("failed", "lost")
    assert audited(job_id) == [("failed", "lost")]


def test_success_is_published_counted_and_traced_once(redis_conn: redis.Redis) -> None:
    job_id = running_job(traced=True)

    published = lifecycle.succeed(job_id, data=b"out", content_type="image/png", run_ms=7)

    assert published is not None and published.status == "succeeded"
    assert lifecycle.succeed(job_id, data=b"again", content_type="image/png", run_ms=7) is None
    assert finished(redis_conn, "succeeded") == 1
    assert trace_of(job_id) == ("succeeded", "")
    assert [event for event, _ in audited(job_id)] == ["succeeded"]


def test_a_job_process_changes_the_state_and_its_ending_is_accounted_elsewhere(
    redis_conn: redis.Redis,
) -> None:
    job_id = running_job(traced=True)

    ending = lifecycle.publish(job_id, data=b"out", content_type="image/png", run_ms=7)

    assert store.get_job(job_id).status == "succeeded"
    assert finished(redis_conn, "succeeded") == 0 and audited(job_id) == []
    # The ending crosses a pipe as metadata: no result token goes with it.
    sent = ending.to_json()
    assert ending.record is not None and ending.record.result_token_sealed
    assert ending.record.result_token_sealed.encode() not in sent
    received = lifecycle.Ending.from_json(sent)
    assert received.record is not None and received.record.result_token_sealed is None
    lifecycle.account(received)
    assert finished(redis_conn, "succeeded") == 1
    assert trace_of(job_id) == ("succeeded", "")
    assert audited(job_id) == [("succeeded", "")]


def test_a_job_process_that_died_after_its_end_still_gets_it_accounted(
    redis_conn: redis.Redis,
) -> None:
    job_id = running_job(traced=True)
    lifecycle.reject(job_id, job_error("internal_error"))  # and then the process died

    assert lifecycle.lose(job_id) == "gone"

    assert trace_of(job_id) == ("failed", "internal_error")
    assert finished(redis_conn, "failed", "internal_error") == 1
    lifecycle.lose(job_id)  # a second report of the death counts nothing twice
    assert finished(redis_conn, "failed", "internal_error") == 1


def test_a_redelivery_accounts_for_an_end_whose_pool_process_died_before_it(
    redis_conn: redis.Redis,
) -> None:
    job_id = running_job(traced=True)
    lifecycle.publish(job_id, data=b"out", content_type="image/png", run_ms=7)  # never accounted

    delivered(job_id)
    delivered(job_id)

    assert finished(redis_conn, "succeeded") == 1
    assert trace_of(job_id) == ("succeeded", "")
    assert audited(job_id) == [("succeeded", "")]


def test_an_end_both_a_redelivery_and_its_pool_process_account_for_is_counted_once(
    redis_conn: redis.Redis,
) -> None:
    """The pool process was slow (or died after counting): the redelivery got there first."""
    job_id = running_job(traced=True)
    ending = lifecycle.publish(job_id, data=b"out", content_type="image/png", run_ms=7)
    delivered(job_id)  # accounts late

    lifecycle.account(ending)  # the pool process, after all

    assert finished(redis_conn, "succeeded") == 1
    assert audited(job_id) == [("succeeded", "")]


def test_an_end_whose_pool_process_died_between_trace_and_count_is_counted_late(
    redis_conn: redis.Redis,
) -> None:
    """The pool process closed the trace and wrote the audit row, then was killed:
    the redelivery finds the trace closed and still counts the end, once."""
    job_id = running_job(traced=True)
    ending = lifecycle.publish(job_id, data=b"out", content_type="image/png", run_ms=7)
    assert ending.record is not None
    lifecycle._close_trace_and_audit(ending.record)  # and then the process was killed

    delivered(job_id)
    delivered(job_id)
    lifecycle.account(ending)

    assert finished(redis_conn, "succeeded") == 1
    assert trace_of(job_id) == ("succeeded", "")
    assert audited(job_id) == [("succeeded", "")]
    assert store.get_job(job_id).accounted


@pytest.mark.parametrize("queued_before_the_kill", [False, True])
def test_the_late_accounting_of_such_an_end_queues_its_webhook_once(
    redis_conn: redis.Redis, queued_before_the_kill: bool
) -> None:
    job_id, _ = hooked_job("https://hooks.example/ends")
    lifecycle.claim(job_id)
    ending = lifecycle.publish(job_id, data=b"out", content_type="image/png", run_ms=7)
    assert ending.record is not None
    lifecycle._close_trace_and_audit(ending.record)
    if queued_before_the_kill:
        webhooks.job_ended(ending.record)
    # ... and then the process was killed

    delivered(job_id)
    delivered(job_id)

    assert redis_conn.keys(keys.webhook_key("*")) == [
        keys.webhook_key(webhooks.event_id_of(job_id)).encode()
    ]
    assert finished(redis_conn, "succeeded") == 1


def test_the_metrics_of_an_end_count_once_with_its_queue_and_run_time(
    redis_conn: redis.Redis,
) -> None:
    job_id = running_job(traced=True)
    ending = lifecycle.publish(job_id, data=b"out", content_type="image/png", run_ms=7)

    lifecycle.account(ending)
    lifecycle.account(ending)

    count = "ephemera_job_run_seconds_count|task=cartoonize"
    queued = "ephemera_job_queue_seconds_count|task=cartoonize"
    assert float(redis_conn.hget(keys.METRICS_KEY, count) or 0) == 1
    assert float(redis_conn.hget(keys.METRICS_KEY, queued) or 0) == 1


def test_an_end_is_counted_once_however_often_it_is_reported(redis_conn: redis.Redis) -> None:
    job_id = running_job(traced=True)
    ending = lifecycle.reject(job_id, job_error("internal_error"))

    for _ in range(3):
        lifecycle.account(ending)

    assert finished(redis_conn, "failed", "internal_error") == 1
    assert audited(job_id) == [("failed", "internal_error")]


def test_a_failure_applies_only_from_the_expected_status(redis_conn: redis.Redis) -> None:
    job_id = queued_job(traced=True)
    assert lifecycle.fail(job_id, job_error("internal_error")) is None  # not running

    ended = lifecycle.fail(job_id, job_error("internal_error"), expected=("queued",))

    assert ended is not None and ended.error_message == job_error("internal_error").message
    assert not redis_conn.exists(keys.input_key(job_id))
    assert finished(redis_conn, "failed", "internal_error") == 1


def test_a_queued_job_whose_process_died_runs_again_a_bounded_number_of_times(
    redis_conn: redis.Redis,
) -> None:
    job_id = queued_job(traced=True)

    outcomes = [lifecycle.lose(job_id) for _ in range(lifecycle.MAX_DELIVERIES)]

    assert outcomes == ["retry"] * (lifecycle.MAX_DELIVERIES - 1) + ["ended"]
    assert store.get_job(job_id).error_code == "worker_lost"


def test_a_running_job_whose_process_died_ends_at_once(redis_conn: redis.Redis) -> None:
    assert lifecycle.lose(running_job()) == "ended"
    assert lifecycle.lose(str(uuid.uuid4())) == "gone"


def test_cancel_counts_an_active_job_once_and_audits_the_delete(redis_conn: redis.Redis) -> None:
    job_id = running_job(traced=True)

    before = lifecycle.cancel(job_id, client_id=1)

    assert before is not None and before.status == "running"
    assert store.get_job(job_id).status == "cancelled"
    assert finished(redis_conn, "cancelled") == 1
    assert trace_of(job_id) == ("cancelled", "")
    assert audited(job_id) == [("deleted", "")]
    lifecycle.cancel(job_id, client_id=1)  # the tombstone: nothing more to count
    assert finished(redis_conn, "cancelled") == 1


def rejections(redis_conn: redis.Redis, owner: str) -> int:
    return int(redis_conn.get(keys.rejections_key(client_subject(owner))) or 0)


def test_what_a_job_process_finds_inside_an_envelope_counts_towards_the_block(
    redis_conn: redis.Redis,
) -> None:
    owner = "e" * 64
    for _ in range(2):
        job_id = running_job(image=b"EPHK envelope", owner=owner, e2e=True)
        lifecycle.fail(job_id, CodedError("unsupported_media_type", "not an image", status=415))
    assert rejections(redis_conn, owner) == 2
    # A plain job's worker-side failure is the service's business, not the upload's.
    plain = running_job(owner=owner)
    lifecycle.fail(plain, job_error("internal_error"))
    lifecycle.fail(running_job(owner=owner), CodedError("image_too_large", "big", status=422))
    assert rejections(redis_conn, owner) == 2
    # A valid photo found in an envelope is an accepted upload: the count starts over.
    good = running_job(image=b"EPHK envelope", owner=owner, e2e=True)
    assert lifecycle.succeed(good, data=b"sealed", content_type="image/png", run_ms=1)
    assert rejections(redis_conn, owner) == 0
