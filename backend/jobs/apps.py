from __future__ import annotations

from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "backend.jobs"
    label = "jobs"
    verbose_name = "Job lifecycle and durable job traces"
