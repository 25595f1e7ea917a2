"""WSGI entry point for gunicorn: Django behind ``CompleteExchanges``."""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application
from django.urls import get_resolver

from backend.wsgi_layer import CompleteExchanges

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "backend.settings")

application = CompleteExchanges(get_wsgi_application())

# Each gunicorn worker imports this module as it boots. Django imports the
# URLconf (and with it every view, serializer and service) on the first
# request instead: ~0.5 s that the first caller of each new worker waited for,
# after every deploy or restart. A URLconf that cannot be imported now stops
# the worker at boot rather than failing requests.
get_resolver().url_patterns  # noqa: B018 - loading it is the point
