"""The real stack for client-side tests: gunicorn (``bin/ephemera web``) in front of the
session's real Celery worker, on the session's Redis, with an API key of its own.

Built on ``tests.harness``; the client, CLI and browser tests import
the ``live_stack`` fixture from here.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import Worker, migrate_worker_database
from tests.harness import (
    REPO,
    Process,
    ephemera_env,
    manage,
    running,
    wait_for_http,
)
from tests.services import free_port


@dataclass(frozen=True)
class LiveStack:
    url: str
    key: str
    web: Process
    worker: Worker
    #: The environment the stack runs with, for processes the tests start.
    env: dict[str, str]


@pytest.fixture(scope="module")
def live_stack(worker: Worker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveStack]:
    port = free_port()
    # The web shares the worker's file database (the pytest-django test database is
    # invisible to other processes) and the session's Redis, where the worker listens.
    env = ephemera_env(PORT=str(port), WEB_CONCURRENCY="1", PYTHONPATH=str(REPO), **_model_dir())
    migrate_worker_database(env)
    key = manage(
        env, "create_api_key", "--name", f"live-{uuid.uuid4().hex[:8]}", "--tier", "standard"
    ).strip()
    with running("web", env=env, log_dir=tmp_path_factory.mktemp("live-web")) as web:
        assert wait_for_http(web, port, "/healthz").status == 200
        yield LiveStack(url=f"http://127.0.0.1:{port}", key=key, web=web, worker=worker, env=env)


def _model_dir() -> dict[str, str]:
    return {"EPHEMERA_MODEL_DIR": os.environ.get("EPHEMERA_MODEL_DIR", str(REPO / "var/models"))}


def photo_file(
    directory: Path, name: str = "photo.jpg", size: tuple[int, int] | None = None
) -> Path:
    """A real portrait (scikit-image's astronaut) written as a JPEG file."""
    import cv2

    from tests.conftest import portrait

    path = directory / name
    assert cv2.imwrite(str(path), portrait(size))
    return path
