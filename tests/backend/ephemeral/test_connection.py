"""Connections to Redis: cached per process, reconnecting by themselves, through Sentinels."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from backend.ephemeral import connection, keys, store
from backend.ephemeral.connection import sentinel_config
from tests.conftest import OwnRedis
from tests.factories import queued_job
from tests.services import free_port, start_redis


@pytest.fixture
def sentinel_port(tmp_path: Path, redis_conn: redis.Redis) -> Iterator[int]:
    master_port = redis_conn.connection_pool.connection_kwargs["port"]
    port = free_port()
    config = tmp_path / "sentinel.conf"
    config.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {tmp_path}\n"
        f"sentinel monitor ephemera 127.0.0.1 {master_port} 1\n"
    )
    proc = subprocess.Popen(
        [shutil.which("redis-server") or "redis-server", str(config), "--sentinel"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        probe = redis.Redis(port=port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 10
        while True:
            try:
                if probe.execute_command("SENTINEL", "get-master-addr-by-name", "ephemera"):
                    break
            except redis.ConnectionError:
                pass
            assert time.monotonic() < deadline, "sentinel did not start"
            time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_it_parses_kombus_sentinel_url_form() -> None:
    config = sentinel_config("sentinel://:s3cret@h1:26379;sentinel://:s3cret@h2:26380/2")
    assert config.hosts == [("h1", 26379), ("h2", 26380)]
    assert (config.password, config.db) == ("s3cret", 2)


def test_jobs_are_stored_on_the_master_the_sentinels_name(
    sentinel_port: int, redis_conn: redis.Redis, settings: object
) -> None:
    settings.REDIS_URL = f"sentinel://127.0.0.1:{sentinel_port}/0"  # type: ignore[attr-defined]
    settings.REDIS_SENTINEL_MASTER = "ephemera"  # type: ignore[attr-defined]
    connection.forget()
    try:
        job_id = queued_job(b"x")
        assert store.claim_job(job_id, deadline=time.time() + 60).open_image() == b"x"
    finally:
        connection.forget()
    # Read back over a plain connection to the master itself.
    assert redis_conn.hget(keys.job_key(job_id), "status") == b"running"


def test_the_cached_client_reconnects_by_itself_after_a_restart(
    own_redis: OwnRedis, tmp_path: Path
) -> None:
    port, servers = own_redis
    cached = connection.client()
    assert cached.set("before", "1")
    servers[0].terminate()
    servers[0].wait(timeout=10)

    # The command is sent while the server is still coming back: the client's
    # retries with backoff, not a second try by the test, must carry it.
    restart = threading.Thread(target=lambda: servers.append(start_redis(port, tmp_path)))
    restart.start()
    try:
        assert cached.set("after", "1")
    finally:
        restart.join()
    assert cached.exists("before", "after") == 1  # a restarted Redis keeps nothing


def test_forget_makes_the_next_client_read_the_url_again(
    own_redis: OwnRedis,
) -> None:
    port, _ = own_redis
    assert connection.client().connection_pool.connection_kwargs["port"] == port
