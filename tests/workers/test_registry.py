"""The runners of the catalogue's tasks: one per name, loaded once per process."""

from __future__ import annotations

import importlib
import itertools
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from backend.catalogue import CATALOGUE, TaskSpec
from backend.errors import CodedError
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


#: Photos the upload checks let through whose sides shrink below one pixel
#: when a model scales the longest side to its own input size.
STRIPS = [(1, 5000), (5000, 1), (2, 3000), (3000, 2), (13, 8000)]


def params_at_their_edges(spec: TaskSpec) -> Iterator[dict[str, Any]]:
    """The defaults, then each param at each of its enum values and bounds."""
    defaults = spec.validate_params({})
    yield defaults
    for name, schema in spec.params_schema.get("properties", {}).items():
        edges = [
            *schema.get("enum", []),
            *(schema[b] for b in ("minimum", "maximum") if b in schema),
        ]
        yield from ({**defaults, name: edge} for edge in edges if edge != defaults[name])


@pytest.mark.slow
@pytest.mark.usefixtures("single_threaded", "model_dir")
@pytest.mark.parametrize("name", sorted(registry.TASK_MODULES))
def test_every_runner_answers_a_strip_of_a_photo(name: str) -> None:
    # An unguarded resize once made a 1x5000 photo 0 pixels high in parse's
    # pose detector, and in anonymize's CenterFace copy at detect_size 2048:
    # cv2.error, and the job ended internal_error instead of with its answer.
    registry.load_all()
    run, spec = registry.runner(name), CATALOGUE[name]
    for (height, width), params in itertools.product(STRIPS, params_at_their_edges(spec)):
        photo = np.random.default_rng(height).integers(0, 256, (height, width, 3), np.uint8)
        try:
            output = run(photo, photo, params) if "reference" in spec.inputs else run(photo, params)  # type: ignore[call-arg, arg-type]
        except CodedError:
            continue
        if spec.output == "image":
            assert isinstance(output, np.ndarray) and output.ndim == 3
        else:
            assert isinstance(output, dict)


def test_the_learned_tasks_are_offered() -> None:
    assert {"background", "stylize", "face_verify", "parse"} <= set(CATALOGUE)
    assert CATALOGUE["face_verify"].inputs == ("image", "reference")
    assert CATALOGUE["face_verify"].biometric
    assert not any(spec.biometric for name, spec in CATALOGUE.items() if name != "face_verify")
