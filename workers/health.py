"""Worker health as files in /tmp, so probes need no round trip to the broker.

``ready`` is written once the models are loaded (a Kubernetes startup probe);
``heartbeat`` is touched every few seconds by a thread of the worker's parent
process (a liveness probe). ``python -m workers.healthcheck`` reads them.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from pathlib import Path

# An emptyDir in Kubernetes; holds no user data.
HEALTH_DIR = Path(os.environ.get("EPHEMERA_HEALTH_DIR", "/tmp/ephemera"))  # noqa: S108
READY_FILE = HEALTH_DIR / "worker.ready"
HEARTBEAT_FILE = HEALTH_DIR / "worker.heartbeat"
HEARTBEAT_SECONDS = 10


def _touch(path: Path) -> None:
    HEALTH_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.touch()


def mark_ready() -> None:
    _touch(READY_FILE)
    _touch(HEARTBEAT_FILE)


def start_heartbeat(hostname: str) -> None:
    """Touch the liveness file, and tell Redis this worker is up (for metrics)."""
    from backend.ephemeral import connection, keys

    def beat() -> None:
        while True:
            _touch(HEARTBEAT_FILE)
            # Liveness must not depend on Redis: a failed write is simply skipped.
            with contextlib.suppress(Exception):
                connection.client().set(keys.worker_key(hostname), b"1", ex=HEARTBEAT_SECONDS * 3)
            time.sleep(HEARTBEAT_SECONDS)

    threading.Thread(target=beat, name="ephemera-heartbeat", daemon=True).start()


def is_ready() -> bool:
    return READY_FILE.exists()


def is_alive(max_age: float = HEARTBEAT_SECONDS * 6) -> bool:
    try:
        return time.time() - HEARTBEAT_FILE.stat().st_mtime < max_age
    except FileNotFoundError:
        return False
