"""The audit log: what happened to which (hashed) job, and nothing of the photo.

A row names a client and a job only by ``backend.logs.hashed_id``, the HMAC the
logs use, so an operator can follow one job across the log and the audit table
without either holding its id. There is deliberately no column that could take
content, a filename, a key, a token or an address: the schema is the guarantee.
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class EventKind(models.TextChoices):
    SUBMITTED = "submitted", "Submitted"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    EXPIRED = "expired", "Expired"
    CANCELLED = "cancelled", "Cancelled"
    DOWNLOADED = "downloaded", "Downloaded"
    DELETED = "deleted", "Deleted"
    REJECTED = "rejected", "Rejected"
    THROTTLED = "throttled", "Throttled"
    BLOCKED = "blocked", "Blocked"


#: Length of ``hashed_id``'s output.
HASH_LENGTH = 16


class AuditEvent(models.Model):
    created_at = models.DateTimeField(default=timezone.now)
    event = models.CharField(max_length=16, choices=EventKind.choices)
    #: ``hashed_id("client:<pk>")``; empty when the request had no client.
    client = models.CharField(max_length=HASH_LENGTH, blank=True)
    #: ``hashed_id(job_id)``: the value the logs show as ``job``.
    job = models.CharField(max_length=HASH_LENGTH, blank=True)
    task = models.CharField(max_length=40, blank=True)
    byte_size = models.PositiveBigIntegerField(null=True, blank=True)
    queued_ms = models.PositiveIntegerField(null=True, blank=True)
    run_ms = models.PositiveIntegerField(null=True, blank=True)
    #: An error or refusal code (``snake_case``), never a message.
    outcome = models.CharField(max_length=64, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            # The retention purge deletes by age alone; the admin lists newest first.
            models.Index(fields=["created_at"], name="audit_event_created_idx"),
            # One client's or one job's trail, newest first.
            models.Index(fields=["client", "created_at"], name="audit_event_client_idx"),
            models.Index(fields=["job"], name="audit_event_job_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.event} job:{self.job or '-'} at {self.created_at:%Y-%m-%d %H:%M:%S}"


class KeyringObservation(models.Model):
    """When the privacy audit first saw a key active, for the key rotation age.

    Key ids are labels, not secrets (every sealed blob names its own). A key is
    told apart by its fingerprint too, so a kid reused for new key material
    starts a new age instead of inheriting the old key's.
    """

    kid = models.CharField(max_length=32)
    fingerprint = models.CharField(max_length=32)
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField()

    class Meta:
        ordering = ["-last_seen"]
        constraints = [
            models.UniqueConstraint(fields=["kid", "fingerprint"], name="audit_keyring_kid_fp_uniq")
        ]

    def __str__(self) -> str:
        return f"{self.kid} active since {self.first_seen:%Y-%m-%d}"
