"""A pytest plugin that gives the test session its own Redis and PostgreSQL, on free ports.

Loaded with ``-p tests.services`` so it runs before pytest-django imports the
settings, which read ``REDIS_URL`` and ``DATABASE_URL`` once. Redis keeps
nothing on disk (``--save '' --appendonly no``), like every Redis Ephemera
runs on. PostgreSQL, the production database, is Debian's, initialised into a
temporary directory (``EPHEMERA_TEST_DATABASE=sqlite`` runs the session on
SQLite instead, the embedded default of ``make run``).
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


def start_redis(port: int, workdir: Path, *extra: str) -> subprocess.Popen[bytes]:
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
            *extra,
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


def postgres_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not found:
        raise pytest.UsageError("PostgreSQL is not installed: run `make test`, which installs it")
    return found[-1].parent


def _as_postgres(command: list[str]) -> list[str]:
    # PostgreSQL refuses to run as root; CI and these machines run tests as root.
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


def start_postgres(port: int, workdir: Path) -> subprocess.Popen[bytes]:
    """A fresh PostgreSQL cluster in ``workdir`` (a directory of its own, handed to the
    postgres user when we are root), trusting local connections, on ``port``."""
    data = workdir / "pgdata"
    data.mkdir(parents=True)
    if os.geteuid() == 0:
        for path in (workdir, data):
            shutil.chown(path, "postgres")
    binaries = postgres_bin()
    subprocess.run(
        _as_postgres(
            [
                str(binaries / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
            ]
        ),
        check=True,
        capture_output=True,
    )
    proc = subprocess.Popen(
        _as_postgres(
            [
                str(binaries / "postgres"),
                "-D",
                str(data),
                "-p",
                str(port),
                "-h",
                "127.0.0.1",
                "-k",
                str(workdir),
                "-c",
                "fsync=off",
                "-c",
                "max_connections=200",
            ]
        ),
        stdout=subprocess.DEVNULL,
        stderr=(workdir / "postgres.log").open("wb"),
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ready = subprocess.run(
            [str(binaries / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)],
            capture_output=True,
            check=False,
        )
        if ready.returncode == 0:
            return proc
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"postgres did not start on port {port}")


def create_database(port: int, name: str) -> str:
    """A new, empty database on the session's PostgreSQL; its URL."""
    subprocess.run(
        [
            str(postgres_bin() / "createdb"),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-U",
            "postgres",
            name,
        ],
        check=True,
        capture_output=True,
    )
    return f"postgresql://postgres@127.0.0.1:{port}/{name}"


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
    # Worker processes write audit events and traces to this database (migrated
    # when the first worker starts); the tests' own Django uses its test database.
    if os.environ.get("EPHEMERA_TEST_DATABASE", "postgresql") == "sqlite":
        os.environ["DATABASE_URL"] = f"sqlite:///{workdir / 'worker.sqlite3'}"
    else:
        pg_port = free_port()
        pg_dir = Path(tempfile.mkdtemp(prefix="ephemera-test-pg-"))
        _state["postgres_dir"] = pg_dir
        _state["postgres"] = start_postgres(pg_port, pg_dir)
        _state["postgres_port"] = pg_port
        os.environ["DATABASE_URL"] = create_database(pg_port, "ephemera")
    os.environ.setdefault("EPHEMERA_MODEL_DIR", str(REPO / "var" / "models"))
    os.environ.pop("EPHEMERA_KEYS", None)
    os.environ.pop("DJANGO_SECRET_KEY", None)
    os.environ["EPHEMERA_ENV"] = "development"
    # The webhook tests' receivers listen on 127.0.0.1 (http, loopback): every
    # process of the session (this one, the workers, the web) allows that host.
    os.environ["EPHEMERA_WEBHOOK_ALLOW_HTTP_HOSTS"] = "127.0.0.1"
    os.environ["EPHEMERA_WEBHOOK_FIRST_RETRY"] = "1"


def pytest_unconfigure(config: pytest.Config) -> None:
    for name in ("redis", "postgres"):
        proc = _state.pop(name, None)
        if isinstance(proc, subprocess.Popen):
            proc.terminate()
            proc.wait(timeout=20)
    for name in ("workdir", "postgres_dir"):
        workdir = _state.pop(name, None)
        if isinstance(workdir, Path):
            shutil.rmtree(workdir, ignore_errors=True)


def fresh_database_url(workdir: Path, name: str) -> str:
    """A new, empty database of the session's kind: on its PostgreSQL, or a SQLite file."""
    port = _state.get("postgres_port")
    if isinstance(port, int):
        return create_database(port, name)
    return f"sqlite:///{workdir / (name + '.sqlite3')}"


class SentinelCluster:
    """A real Redis master, one replica and three Sentinels (quorum 2), on free ports.

    The same topology as the ``redis-sentinel`` Kubernetes component, scaled
    down: the master can be SIGKILLed and the Sentinels promote the replica.
    """

    MASTER_NAME = "ephemera"

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.master_port, self.replica_port = free_port(), free_port()
        self.sentinel_ports = [free_port() for _ in range(3)]
        (workdir / "master").mkdir(parents=True)
        (workdir / "replica").mkdir(parents=True)
        self.master = start_redis(self.master_port, workdir / "master")
        self.replica = start_redis(
            self.replica_port,
            workdir / "replica",
            "--replicaof",
            "127.0.0.1",
            str(self.master_port),
        )
        self.sentinels = [self._start_sentinel(port) for port in self.sentinel_ports]
        self._wait(lambda: self.known_master() == self.master_port, "the sentinels see no master")
        self._wait(self._replica_in_sync, "the replica never synced")

    @property
    def url(self) -> str:
        """kombu's form, which Ephemera's REDIS_URL takes as it is."""
        return ";".join(f"sentinel://127.0.0.1:{port}" for port in self.sentinel_ports) + "/0"

    def _start_sentinel(self, port: int) -> subprocess.Popen[bytes]:
        config = self.workdir / f"sentinel-{port}.conf"
        config.write_text(
            f"port {port}\nbind 127.0.0.1\ndir {self.workdir}\n"
            f"sentinel monitor {self.MASTER_NAME} 127.0.0.1 {self.master_port} 2\n"
            f"sentinel down-after-milliseconds {self.MASTER_NAME} 1000\n"
            f"sentinel failover-timeout {self.MASTER_NAME} 5000\n"
            f"sentinel parallel-syncs {self.MASTER_NAME} 1\n"
        )
        return subprocess.Popen(
            [shutil.which("redis-server") or "redis-server", str(config), "--sentinel"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def known_master(self) -> int | None:
        import redis

        for port in self.sentinel_ports:
            try:
                reply = redis.Redis(port=port, socket_timeout=0.5).execute_command(
                    "SENTINEL", "get-master-addr-by-name", self.MASTER_NAME
                )
            except redis.RedisError:
                continue
            if reply:
                return int(reply[1])
        return None

    def _replica_in_sync(self) -> bool:
        import redis

        info = redis.Redis(port=self.replica_port).info("replication")
        return info.get("master_link_status") == "up"

    @staticmethod
    def _wait(condition: object, message: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not condition():  # type: ignore[operator]
            if time.monotonic() > deadline:
                raise RuntimeError(message)
            time.sleep(0.1)

    def kill_master(self) -> None:
        """SIGKILL the master; returns once the Sentinels name the promoted replica."""
        self.master.kill()
        self.master.wait()
        self._wait(lambda: self.known_master() == self.replica_port, "no failover happened")

    def stop(self) -> None:
        for proc in [*self.sentinels, self.replica, self.master]:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=10)
