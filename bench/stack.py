"""A throwaway Ephemera stack for benchmarks: its own Redis, database and secrets.

Processes start through ``bin/ephemera`` as in production and are stopped on exit.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.redis_server import free_port, start_redis

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = REPO / ".venv" / "bin"


def wait_port(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port}")


class Stack:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.redis_port = free_port()
        self.env = {
            **os.environ,
            "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "REDIS_URL": f"redis://127.0.0.1:{self.redis_port}/0",
            "EPHEMERA_VAR_DIR": str(workdir / "var"),
            "EPHEMERA_HEALTH_DIR": str(workdir / "health"),
            "EPHEMERA_MODEL_DIR": os.environ.get(
                "EPHEMERA_MODEL_DIR", str(REPO / "var" / "models")
            ),
            "DATABASE_URL": f"sqlite:///{workdir / 'db.sqlite3'}",
            "EPHEMERA_TIER_RATES": "bench:0",
            "EPHEMERA_TIER_IN_FLIGHT": "bench:0",
            "EPHEMERA_IP_RATE": "0",
            "LOG_LEVEL": "WARNING",
        }
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        log = (self.workdir / f"{args[0].split('/')[-1]}-{len(self.procs)}.log").open("wb")
        proc = subprocess.Popen(
            list(args),
            cwd=REPO,
            env={**self.env, **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs.append(proc)
        return proc

    def manage(self, *args: str) -> str:
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=REPO,
            env=self.env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()

    def start_worker(self, **env: str) -> subprocess.Popen[bytes]:
        ready = self.workdir / "health" / "worker.ready"
        ready.unlink(missing_ok=True)
        proc = self.start(str(REPO / "bin" / "ephemera"), "worker", env=env)
        deadline = time.monotonic() + 120
        while not ready.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("worker did not start")
            time.sleep(0.1)
        time.sleep(1.0)
        return proc

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@contextmanager
def stack() -> Iterator[Stack]:
    workdir = Path(tempfile.mkdtemp(prefix="ephemera-bench-"))
    running = Stack(workdir)
    # The same persistence-free Redis the test session starts, on its own port.
    redis_server = start_redis(running.redis_port, workdir)
    running.manage("migrate", "--noinput")
    try:
        yield running
    finally:
        for proc in reversed(running.procs):
            running.stop(proc)
        redis_server.terminate()
        redis_server.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)
