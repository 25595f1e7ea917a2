"""The rehearsal of every task in the worker's parent, before any job process is forked."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from backend.ephemeral import connection
from tests.conftest import worker_env
from workers import warm_up

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def rehearsed() -> dict[str, Any]:
    """What a fresh interpreter that loaded the models shows before and after ``rehearse``."""
    probe = subprocess.run(
        [sys.executable, "-m", "tests.workers.warm_up_probe"],
        env=worker_env(),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    found: dict[str, Any] = json.loads(probe.stdout.strip().splitlines()[-1])
    return found


def test_the_code_every_job_runs_arrives_specialised(rehearsed: dict[str, Any]) -> None:
    assert set(rehearsed["before"].values()) == {0}
    for name, count in rehearsed["after"].items():
        assert count > 0, name


def test_the_rehearsal_leaves_no_socket_and_no_thread_for_a_fork_to_inherit(
    rehearsed: dict[str, Any],
) -> None:
    sockets_before, sockets_after = rehearsed["sockets"]
    assert sockets_after == sockets_before
    threads_before, threads_after = rehearsed["threads"]
    assert threads_after == threads_before


def test_the_rehearsal_writes_nothing_to_redis(rehearsed: dict[str, Any]) -> None:
    assert not list(connection.client().scan_iter(match=f"*{warm_up.NO_JOB}*"))


def test_the_synthetic_photo_is_a_jpeg_of_the_rehearsal_size() -> None:
    photo = warm_up.synthetic_photo()
    assert photo[:3] == b"\xff\xd8\xff"
    image = cv2.imdecode(np.frombuffer(photo, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (warm_up.SIDE, warm_up.SIDE, 3)
    # Edges and flat areas, not one colour: the models have something to work on.
    assert len(np.unique(image.reshape(-1, 3), axis=0)) > 3
