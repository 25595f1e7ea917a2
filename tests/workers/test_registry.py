"""The runners of the catalogue's tasks: one per name, loaded once per process."""

from __future__ import annotations

import importlib
from collections.abc import Iterator

import pytest

from backend.catalogue import CATALOGUE
from workers import registry


def test_every_catalogue_task_has_a_runner_module_and_no_other() -> None:
    assert set(registry.TASK_MODULES) == set(CATALOGUE)


@pytest.mark.parametrize("name", sorted(registry.TASK_MODULES))
def test_every_runner_module_offers_load(name: str) -> None:
    assert callable(importlib.import_module(registry.TASK_MODULES[name]).load)


@pytest.fixture
def single_threaded() -> Iterator[None]:
    """``load_all`` sets torch and OpenCV to one thread, as a worker runs; restore after."""
    import cv2
    import torch

    threads, cv_threads = torch.get_num_threads(), cv2.getNumThreads()
    yield
    torch.set_num_threads(threads)
    cv2.setNumThreads(cv_threads)


@pytest.mark.slow
@pytest.mark.usefixtures("single_threaded", "model_dir")
def test_load_all_loads_each_runner_once() -> None:
    registry.load_all()
    loaded = {name: registry.runner(name) for name in registry.TASK_MODULES}
    registry.load_all()
    assert all(registry.runner(name) is runner for name, runner in loaded.items())


def test_the_learned_tasks_are_offered() -> None:
    assert {"background", "stylize", "face_verify", "parse"} <= set(CATALOGUE)
    assert CATALOGUE["face_verify"].inputs == ("image", "reference")
    assert CATALOGUE["face_verify"].biometric
    assert not any(spec.biometric for name, spec in CATALOGUE.items() if name != "face_verify")
