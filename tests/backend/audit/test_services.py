"""The audit log: content-free events, hashed ids, and a retention purge."""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone
from pytest_django.fixtures import Settings

from backend.audit.models import AuditEvent
from backend.audit.services import audit_purge, audit_record
from backend.clients.models import ApiClient
from backend.pseudonyms import hashed_id


@pytest.fixture
def client_row(db: None) -> ApiClient:
    return ApiClient.objects.create(name="alice")


def test_an_event_names_client_and_job_only_by_their_log_hashes(client_row: ApiClient) -> None:
    job_id = str(uuid.uuid4())

    assert audit_record(
        event="succeeded",
        client_id=client_row.pk,
        job_id=job_id,
        task="anonymize",
        byte_size=1234,
        queued_ms=12,
        run_ms=140,
    )

    row = AuditEvent.objects.values().get()
    assert row["client"] == hashed_id(f"client:{client_row.pk}")
    assert row["job"] == hashed_id(job_id)
    assert (row["task"], row["byte_size"], row["queued_ms"], row["run_ms"]) == (
        "anonymize",
        1234,
        12,
        140,
    )
    stored = " ".join(str(value) for value in row.values())
    assert job_id not in stored and job_id.replace("-", "") not in stored


def test_an_upper_case_job_id_gets_the_hash_the_logs_give_it(db: None) -> None:
    job_id = str(uuid.uuid4())
    audit_record(event="deleted", job_id=job_id.upper())
    assert AuditEvent.objects.get().job == hashed_id(job_id)


def test_free_text_never_reaches_the_table(db: None) -> None:
    audit_record(event="rejected", task="../holiday.jpg", outcome="Bob's photo was too large")

    row = AuditEvent.objects.get()
    assert (row.task, row.outcome) == ("invalid", "invalid")


def test_negative_or_non_integer_measurements_are_dropped(db: None) -> None:
    audit_record(event="succeeded", byte_size=-1, run_ms=True, queued_ms=2**40)  # type: ignore[arg-type]

    row = AuditEvent.objects.get()
    assert (row.byte_size, row.run_ms, row.queued_ms) == (None, None, 2**31 - 1)


def test_an_unknown_event_is_refused_without_raising(db: None) -> None:
    assert audit_record(event="exfiltrated") is False  # type: ignore[arg-type]
    assert not AuditEvent.objects.exists()


def test_a_failed_write_is_logged_by_type_and_leaves_the_caller_working(
    client_row: ApiClient, caplog: pytest.LogCaptureFixture
) -> None:
    job_id = str(uuid.uuid4())
    # A real database failure: the table is gone (rolled back with the test).
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE audit_auditevent")

    with caplog.at_level(logging.ERROR, logger="backend.audit.services"):
        written = audit_record(event="submitted", client_id=client_row.pk, job_id=job_id)

    assert written is False
    assert [record.getMessage() for record in caplog.records] == ["audit_write_failed"]
    # SQLite says OperationalError, PostgreSQL ProgrammingError (undefined table).
    assert caplog.records[0].error_type in {"OperationalError", "ProgrammingError"}  # type: ignore[attr-defined]
    assert job_id not in caplog.text
    # The savepoint kept the caller's transaction usable.
    assert ApiClient.objects.filter(pk=client_row.pk).exists()


def test_the_purge_deletes_only_events_past_retention(db: None, settings: Settings) -> None:
    settings.EPHEMERA_AUDIT_RETENTION_DAYS = 30
    now = timezone.now()
    ages = {"old": 31, "just_old": 30, "recent": 29, "new": 0}
    for outcome, days in ages.items():
        AuditEvent.objects.create(
            event="failed", outcome=outcome, created_at=now - timedelta(days=days, seconds=1)
        )

    assert audit_purge(now=now) == 2

    assert set(AuditEvent.objects.values_list("outcome", flat=True)) == {"recent", "new"}
    assert audit_purge(now=now) == 0
