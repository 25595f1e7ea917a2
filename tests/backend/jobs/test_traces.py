"""Durable job traces: opened at submit, closed once, read back when Redis lost the job."""

from __future__ import annotations

import time
import uuid

from backend.jobs import traces
from backend.jobs.models import JobTrace


def open_trace(*, created_at: float | None = None, lives: float = 600) -> str:
    job_id = str(uuid.uuid4())
    traces.trace_open(
        job_id=job_id,
        owner="0" * 64,
        task="cartoonize",
        created_at=time.time() if created_at is None else created_at,
        lives=lives,
    )
    return job_id


def test_a_trace_closes_once(db: None) -> None:
    job_id = open_trace()
    assert traces.trace_close(job_id=job_id, status="failed", code="time_limit") is True
    assert traces.trace_close(job_id=job_id, status="succeeded") is False
    trace = JobTrace.objects.get(id=job_id)
    assert (trace.status, trace.error_code) == ("failed", "time_limit")
    assert trace.ended_at is not None


def test_closing_a_job_without_a_trace_cannot_tell_who_ended_it(db: None) -> None:
    assert traces.trace_close(job_id=str(uuid.uuid4()), status="succeeded") is None


def test_a_succeeded_job_read_from_its_trace_is_expired_and_lost(db: None) -> None:
    job_id = open_trace()
    traces.trace_close(job_id=job_id, status="succeeded")
    trace = traces.trace_get(job_id)
    assert trace is not None

    record = traces.as_record(trace)

    assert (record.id, record.status, record.error_code) == (job_id, "expired", "lost")
    assert record.error_message is not None and "Submit it again" in record.error_message
    assert record.result_token_hash is None and record.finished_at is not None


def test_an_active_trace_reads_as_its_status_without_an_error(db: None) -> None:
    record = traces.as_record(JobTrace.objects.get(id=open_trace()))
    assert (record.status, record.error_code, record.error_message) == ("queued", None, None)


def test_a_trace_past_its_life_is_not_read_and_is_purged(db: None) -> None:
    past = open_trace(created_at=time.time() - 120, lives=60)
    live = open_trace()
    assert traces.trace_get(past) is None
    assert traces.traces_purge() == 1
    assert list(JobTrace.objects.values_list("id", flat=True)) == [uuid.UUID(live)]


def test_it_lists_only_active_traces_created_before_a_moment(db: None) -> None:
    now = time.time()
    old, ended = open_trace(created_at=now - 60), open_trace(created_at=now - 60)
    open_trace(created_at=now)
    traces.trace_close(job_id=ended, status="failed")
    assert traces.traces_active_before(now - 30) == [old]


def test_a_discarded_trace_is_gone(db: None) -> None:
    job_id = open_trace()
    traces.trace_discard(job_id)
    assert not JobTrace.objects.filter(id=job_id).exists()
