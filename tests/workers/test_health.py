"""workers.health and its probe: each role's own files, read without the broker."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from workers import health, healthcheck


@pytest.fixture(autouse=True)
def health_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(health, "HEALTH_DIR", tmp_path / "health")
    return tmp_path / "health"


def test_two_roles_on_one_host_never_answer_for_each_other() -> None:
    health.mark_ready("webhooks")
    assert health.is_ready("webhooks") and health.is_alive("webhooks")
    assert not health.is_ready("worker") and not health.is_alive("worker")
    assert healthcheck.main(["--ready", "--role", "webhooks"]) == 0
    assert healthcheck.main(["--alive"]) == 1, "the default role is the job worker"


def test_a_stale_heartbeat_is_not_alive(health_dir: Path) -> None:
    health.mark_ready("worker")
    stale = time.time() - health.HEARTBEAT_SECONDS * 6 - 1
    os.utime(health.heartbeat_file("worker"), (stale, stale))
    assert health.is_ready("worker")
    assert not health.is_alive("worker")
    assert healthcheck.main(["--alive", "--role", "worker"]) == 1
    assert oct(health_dir.stat().st_mode & 0o777) == "0o700"


def test_the_probe_refuses_an_unknown_role() -> None:
    with pytest.raises(SystemExit) as refused:
        healthcheck.main(["--ready", "--role", "web"])
    assert refused.value.code == 2
