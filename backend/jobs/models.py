"""The durable trace of a job: enough to answer for it after Redis lost everything.

Redis keeps nothing on disk, by design. When it restarts, every record, upload
and queued message is gone; without a trace, a client asking for a job it was
given would get 404, and could not tell a lost job from one that never
existed. The trace is the SQL row that lets the service answer ``failed`` with
the code ``lost`` instead. It holds nothing about the image: an id, the owner
as an HMAC, the task, times and the end. It lives as long as the job could
(``expires_at``) and is deleted by the sweeper after that.
"""

from __future__ import annotations

from django.db import models

from backend.ephemeral.keys import STATUSES


class JobTrace(models.Model):
    id = models.UUIDField(primary_key=True)
    #: ``backend.pseudonyms.owner_hash``: the same HMAC the Redis record holds.
    owner = models.CharField(max_length=64)
    task = models.CharField(max_length=40)
    status = models.CharField(max_length=16, choices=[(s, s) for s in STATUSES])
    error_code = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField()
    #: The latest moment the job's Redis record could exist; the trace goes then.
    expires_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)
    #: The job's webhook, sealed as in the Redis record (``backend.webhooks.events``),
    #: so a job Redis lost still tells its client it ended (``lost``).
    webhook_sealed = models.TextField(blank=True, default="")

    class Meta:
        indexes = [
            # The sweeper looks for traces past their life, and for active ones.
            models.Index(fields=["expires_at"], name="job_trace_expires_idx"),
            models.Index(fields=["status", "created_at"], name="job_trace_status_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.task} {self.status}"
