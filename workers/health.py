"""Worker health as files in /tmp, so probes need no round trip to the broker.

Each role (``worker``, ``webhooks``) has its own two files, so two roles on one
host never answer for each other: ``{role}.ready`` is written once the role can
work (for the job worker, once its models are loaded: a Kubernetes startup
probe); ``{role}.heartbeat`` is touched every few seconds by a thread of the
Celery parent process (a liveness probe). ``python -m workers.healthcheck``
reads them.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from pathlib import Path
from typing import Literal

Role = Literal["worker", "webhooks"]
ROLES: tuple[Role, ...] = ("worker", "webhooks")

# An emptyDir in Kubernetes; holds no user data.
HEALTH_DIR = Path(os.environ.get("EPHEMERA_HEALTH_DIR", "/tmp/ephemera"))  # noqa: S108
HEARTBEAT_SECONDS = 10


def ready_file(role: Role) -> Path:
    return HEALTH_DIR / f"{role}.ready"


def heartbeat_file(role: Role) -> Path:
    return HEALTH_DIR / f"{role}.heartbeat"


def _touch(path: Path) -> None:
    HEALTH_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.touch()


def mark_ready(role: Role) -> None:
    _touch(ready_file(role))
    _touch(heartbeat_file(role))


def start_heartbeat(role: Role, *, counted_as: str | None = None) -> None:
    """Touch the liveness file; with ``counted_as`` (a job worker's hostname),
    also tell Redis the worker is up, for ``ephemera_workers_up``."""
    from backend.ephemeral import connection, keys

    def beat() -> None:
        while True:
            _touch(heartbeat_file(role))
            if counted_as is not None:
                # Liveness must not depend on Redis: a failed write is simply skipped.
                with contextlib.suppress(Exception):
                    connection.client().set(
                        keys.worker_key(counted_as), b"1", ex=HEARTBEAT_SECONDS * 3
                    )
            time.sleep(HEARTBEAT_SECONDS)

    threading.Thread(target=beat, name=f"ephemera-{role}-heartbeat", daemon=True).start()


def is_ready(role: Role) -> bool:
    return ready_file(role).exists()


def is_alive(role: Role, max_age: float = HEARTBEAT_SECONDS * 6) -> bool:
    try:
        return time.time() - heartbeat_file(role).stat().st_mtime < max_age
    except FileNotFoundError:
        return False
