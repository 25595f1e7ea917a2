from __future__ import annotations

from django.apps import AppConfig


class WorkersConfig(AppConfig):
    """Registers workers/ with Django for its management commands (fetch_models, ...)."""

    name = "workers"
    label = "workers"
