from __future__ import annotations

from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "backend.audit"
    label = "audit"
    verbose_name = "Audit log and privacy audit"

    def ready(self) -> None:
        # Registers the deployment checks (``manage.py check --deploy``).
        from backend.audit import checks  # noqa: F401
