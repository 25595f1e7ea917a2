"""Connections to Redis: a plain ``redis://`` URL, or Sentinels that name the master.

Clients are cached per process. redis-py reconnects by itself after a server
restart or a failover (a Sentinel-managed client asks the Sentinels for the new
master), and a forked child gets fresh sockets because the pool notices the new
pid, so nobody here has to restart anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any
from urllib.parse import urlsplit

import redis
from django.conf import settings
from redis.backoff import ExponentialBackoff
from redis.driver_info import DriverInfo
from redis.retry import Retry
from redis.sentinel import Sentinel

#: What each connection names itself (CLIENT SETINFO), built once: left to
#: redis-py, every new connection reads the package's metadata from disk again,
#: ~1,000 page faults and 5 ms in a fresh job process (bench/isolation.py).
DRIVER = DriverInfo()


@cache
def client() -> redis.Redis:
    """The process-wide Redis client for short commands."""
    return connect(socket_timeout=5)


@cache
def blocking_client() -> redis.Redis:
    """A client for long polls: its socket timeout outlasts the longest wait."""
    return connect(socket_timeout=settings.EPHEMERA_MAX_WAIT + 10)


def forget() -> None:
    """Drop the cached clients (and what was built on them), so the next call connects anew."""
    from backend.ephemeral import scripts

    client.cache_clear()
    blocking_client.cache_clear()
    scripts.registered.cache_clear()


def connect(*, socket_timeout: float) -> redis.Redis:
    url = settings.REDIS_URL
    options: dict[str, Any] = {
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": 3,
        "health_check_interval": 30,
        # A restarted Redis or a promoted replica: retry a command a few times on
        # a fresh connection before the caller sees an error.
        "retry": Retry(ExponentialBackoff(cap=1.0, base=0.05), 3),
        "retry_on_error": [redis.ConnectionError, redis.TimeoutError],
        "driver_info": DRIVER,
    }
    if not url.startswith("sentinel://"):
        return redis.Redis.from_url(url, **options)
    sentinel = sentinel_config(url)
    return Sentinel(
        sentinel.hosts,
        sentinel_kwargs={
            "password": sentinel.password,
            "socket_timeout": 3,
            "driver_info": DRIVER,
        },
        password=sentinel.password,
        db=sentinel.db,
    ).master_for(str(settings.REDIS_SENTINEL_MASTER), **options)


@dataclass(frozen=True)
class SentinelConfig:
    hosts: list[tuple[str, int]]
    password: str | None
    db: int


def sentinel_config(url: str) -> SentinelConfig:
    """Parse kombu's form: ``sentinel://:pw@h1:26379;sentinel://:pw@h2:26379/0``."""
    hosts: list[tuple[str, int]] = []
    password: str | None = None
    db = 0
    for part in url.split(";"):
        parsed = urlsplit(part.strip())
        hosts.append((parsed.hostname or "localhost", parsed.port or 26379))
        password = parsed.password or password
        if parsed.path.strip("/"):
            db = int(parsed.path.strip("/"))
    return SentinelConfig(hosts=hosts, password=password, db=db)
