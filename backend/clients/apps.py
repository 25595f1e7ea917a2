from __future__ import annotations

from django.apps import AppConfig


class ClientsConfig(AppConfig):
    name = "backend.clients"
    label = "clients"
    verbose_name = "API clients and keys"
