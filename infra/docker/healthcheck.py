#!/usr/bin/env python3
"""Container health check for every Ephemera role: ``ephemera-healthcheck [ROLE]``.

The image runs one of six processes (``bin/ephemera web|worker|webhooks|beat|
flower|migrate``), but a Dockerfile has one HEALTHCHECK. Without an argument this
script reads PID 1's command line (bin/ephemera ``exec``s, so PID 1 *is* gunicorn
or celery) to tell which role it checks. Exit 0 healthy, 1 unhealthy.

- web: ``GET /healthz`` answers 200 (Host: localhost, which must be in
  DJANGO_ALLOWED_HOSTS: Django rejects any other Host, the pod IP included).
- worker, webhooks: delegates to ``python -m workers.healthcheck --alive --role
  ROLE`` (the role's heartbeat file, no broker round trip).
- beat: the schedule file was written recently. Beat sends the sweeper every
  minute and syncs its schedule to disk at least every 3 minutes while it does.
- flower: ``GET /healthcheck`` answers 200 (Flower serves it without auth).
- migrate: a one-off job; healthy while it runs.

Kubernetes does not use this file: infra/k8s has one probe per role.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

BEAT_SCHEDULE = Path("/tmp/ephemera-beat-schedule")  # noqa: S108 - bin/ephemera's path
BEAT_MAX_AGE_SECONDS = 600.0
ROLES = ("web", "worker", "webhooks", "beat", "flower", "migrate")
#: The task module each celery worker role includes (bin/ephemera).
WORKER_MODULES = {"workers.tasks": "worker", "workers.webhook_tasks": "webhooks"}


def role_from_cmdline(argv: list[str]) -> str | None:
    """The role of a process from its argv, as bin/ephemera starts it."""
    names = [Path(arg).name for arg in argv]
    if "gunicorn" in names:
        return "web"
    if "celery" in names:
        # The celery subcommand is the first of these words on the command line.
        for word in argv:
            if word in ("worker", "beat", "flower"):
                break
        else:
            return None
        if word != "worker":
            return word
        return next((WORKER_MODULES[arg] for arg in argv if arg in WORKER_MODULES), None)
    if "workers.flower" in argv:  # python -m workers.flower, which runs celery flower
        return "flower"
    if "manage.py" in names and "migrate" in argv:
        return "migrate"
    return None


def pid1_argv(proc: Path = Path("/proc/1/cmdline")) -> list[str]:
    raw = proc.read_bytes()
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def check_http(port: int, path: str, timeout: float = 4.0) -> bool:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", headers={"Host": "localhost"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def check_worker(role: str) -> bool:
    done = subprocess.run(  # noqa: S603 - our own module; role is one of ROLES
        [sys.executable, "-m", "workers.healthcheck", "--alive", "--role", role],
        check=False,
        timeout=20,
    )
    return done.returncode == 0


def check_beat(
    schedule: Path = BEAT_SCHEDULE,
    *,
    max_age: float = BEAT_MAX_AGE_SECONDS,
    now: float | None = None,
) -> bool:
    # shelve may add a suffix (.db, .dat, ...) depending on the dbm backend.
    candidates = [schedule, *schedule.parent.glob(schedule.name + ".*")]
    mtimes = [path.stat().st_mtime for path in candidates if path.exists()]
    if not mtimes:
        return False
    current = time.time() if now is None else now
    return current - max(mtimes) < max_age


def check(role: str) -> bool:
    if role == "web":
        return check_http(int(os.environ.get("PORT", "8000")), "/healthz")
    if role in ("worker", "webhooks"):
        return check_worker(role)
    if role == "beat":
        return check_beat()
    if role == "flower":
        return check_http(int(os.environ.get("FLOWER_PORT", "5555")), "/healthcheck")
    return role == "migrate"


def main(argv: list[str]) -> int:
    if argv:
        role: str | None = argv[0]
        if role not in ROLES:
            print(f"unknown role {role!r}; use one of {', '.join(ROLES)}", file=sys.stderr)
            return 2
    else:
        role = role_from_cmdline(pid1_argv())
        if role is None:
            print(
                "cannot tell the role from PID 1; pass it: ephemera-healthcheck ROLE",
                file=sys.stderr,
            )
            return 1
    return 0 if check(role) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
