"""Face-model fixtures: the real weights, fetched once, and the detectors loaded once."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.workers.faces_fixtures import Composed, composed_set

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def model_dir() -> Path:
    """The project's model directory with every pinned file verified in it.

    The same directory and default as ``EPHEMERA_MODEL_DIR``: ``make test``
    fetched the files already, so this is a verification pass that needs no
    network; run alone, it downloads them once.
    """
    from workers.model_files import fetch_models

    configured = os.environ.get("EPHEMERA_MODEL_DIR") or str(REPO / "var" / "models")
    path = Path(configured)
    fetch_models(model_dir=path)
    return path


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """One intra-op torch thread, as a worker runs (``registry.load_all``); restored after.

    On two shared cores a second OpenMP thread only spins against the other processes.
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def face_detector(model_dir: Path) -> Iterator[object]:
    """Both detectors, loaded once for the session, on one thread as a worker runs them."""
    import cv2
    import torch

    from workers.models.faces import load_face_detector

    threads, cv_threads = torch.get_num_threads(), cv2.getNumThreads()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    yield load_face_detector(model_dir, None)
    torch.set_num_threads(threads)
    cv2.setNumThreads(cv_threads)


@pytest.fixture(scope="session")
def group_photos() -> list[Composed]:
    """Four composed group photos (1024x768, 9 faces each, 3 per size bin)."""
    return composed_set(4, seed=2024)
