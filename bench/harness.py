"""A throwaway Ephemera stack for benchmarks: its own Redis server, database and secrets.

The processes come from the test suite's harness (``tests.harness``), so the
benchmarks run exactly what the tests run.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.harness import Stack
from tests.services import free_port, start_redis


@contextmanager
def bench_stack(**overrides: str) -> Iterator[Stack]:
    """A Stack on a fresh Redis server; this process's environment points at it too."""
    workdir = Path(tempfile.mkdtemp(prefix="ephemera-bench-"))
    port = free_port()
    # The same persistence-free Redis the test session starts, on its own port.
    redis_server = start_redis(port, workdir)
    overrides.setdefault("LOG_LEVEL", "WARNING")
    stack = Stack.create(redis_url=f"redis://127.0.0.1:{port}/0", workdir=workdir, **overrides)
    os.environ.update({k: v for k, v in stack.env.items() if k != "PATH"})
    os.environ["DJANGO_SETTINGS_MODULE"] = "backend.settings"
    import django

    django.setup()
    try:
        yield stack
    finally:
        stack.stop()
        redis_server.terminate()
        redis_server.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)
