"""Start Flower with every page behind its basic auth, ``/metrics`` included.

Flower 2.2 serves ``/metrics`` (worker names, queue and task counts) without
checking credentials, while every other page and the API require them. We
close that gap before Flower starts, so its metrics need the same credentials
as the rest; ``/healthcheck`` (a bare "OK") stays open for probes.
"""

from __future__ import annotations

import sys

from tornado.web import authenticated


def require_auth_on_metrics() -> None:
    from flower.views.monitor import Metrics

    if not getattr(Metrics.get, "_ephemera_authenticated", False):
        guarded = authenticated(Metrics.get)
        guarded._ephemera_authenticated = True  # type: ignore[attr-defined]
        Metrics.get = guarded  # type: ignore[method-assign]


def main() -> None:
    require_auth_on_metrics()
    from celery.bin.celery import main as celery_main

    sys.argv = ["celery", "--app", "workers.celery_app:app", "flower", *sys.argv[1:]]
    celery_main()


if __name__ == "__main__":
    main()
