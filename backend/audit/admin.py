"""Read-only admin pages: the audit log is written by the service, never by hand."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from backend.audit.models import AuditEvent, KeyringObservation


class ReadOnlyAdmin(admin.ModelAdmin):
    """Viewable by staff with the view permission; nobody adds, edits or deletes.

    Deleting is the retention purge's job, so the log cannot be trimmed quietly.
    """

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = (
        "created_at",
        "event",
        "task",
        "outcome",
        "client",
        "job",
        "byte_size",
        "queued_ms",
        "run_ms",
    )
    list_filter = ("event", "task", "outcome")
    search_fields = ("=client", "=job")
    date_hierarchy = "created_at"
    show_full_result_count = False


@admin.register(KeyringObservation)
class KeyringObservationAdmin(ReadOnlyAdmin):
    list_display = ("kid", "fingerprint", "first_seen", "last_seen")
