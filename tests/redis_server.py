"""A pytest plugin that gives the test session its own Redis, on a free port.

Loaded with ``-p tests.redis_server`` so it runs before pytest-django imports
the settings, which read ``REDIS_URL`` once. The server keeps nothing on disk
(``--save '' --appendonly no``), like every Redis Ephemera runs on.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
_state: dict[str, object] = {}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_redis(port: int, workdir: Path) -> subprocess.Popen[bytes]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise pytest.UsageError("redis-server is not installed: run `make test`, which installs it")
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
            "--logfile",
            str(workdir / "redis.log"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as conn:
                conn.sendall(b"PING\r\n")
                if conn.recv(16).startswith(b"+PONG"):
                    return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"redis-server did not start on port {port}")


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="ephemera-test-"))
    port = free_port()
    _state["redis"] = start_redis(port, workdir)
    _state["workdir"] = workdir
    os.environ["REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
    # Fresh development secrets for this session, shared with the worker it starts.
    os.environ["EPHEMERA_VAR_DIR"] = str(workdir / "var")
    os.environ["EPHEMERA_HEALTH_DIR"] = str(workdir / "health")
    # Worker processes write audit events to this file database (migrated when
    # the first worker starts); the tests' own Django uses its in-memory test DB.
    os.environ["DATABASE_URL"] = f"sqlite:///{workdir / 'worker.sqlite3'}"
    os.environ.setdefault("EPHEMERA_MODEL_DIR", str(REPO / "var" / "models"))
    os.environ.pop("EPHEMERA_KEYS", None)
    os.environ.pop("DJANGO_SECRET_KEY", None)
    os.environ["EPHEMERA_ENV"] = "development"


def pytest_unconfigure(config: pytest.Config) -> None:
    proc = _state.pop("redis", None)
    if isinstance(proc, subprocess.Popen):
        proc.terminate()
        proc.wait(timeout=10)
    workdir = _state.pop("workdir", None)
    if isinstance(workdir, Path):
        shutil.rmtree(workdir, ignore_errors=True)
