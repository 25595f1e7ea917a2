"""WSGI entry point for gunicorn: Django behind ``CompleteExchanges``."""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

from backend.wsgi_layer import CompleteExchanges

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "backend.settings")

application = CompleteExchanges(get_wsgi_application())
