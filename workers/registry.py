"""Which code runs each task of the catalogue, loaded once per worker node.

The catalogue (``backend.catalogue``) says what a task is; this module maps
its name to the worker module whose ``load()`` returns the runner (a
``PairRunner`` for a task that takes two images). ``load_all``
runs in the worker's parent before any job, so every job process starts with
the weights already in (shared, copy-on-write) memory. A model file that fails
its integrity check raises here, and the worker does not start.
"""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

#: What a runner gets: a decoded BGR ``uint8`` array of shape (H, W, 3) and the
#: validated params with their defaults filled in.
#: What it returns: a BGR ``uint8`` image for ``output="image"`` tasks, or a
#: JSON-serialisable ``dict`` for ``output="json"`` tasks.
Runner = Callable[[np.ndarray, Mapping[str, Any]], "np.ndarray | dict[str, Any]"]

#: What a two-image task's ``load()`` returns (``inputs=("image", "reference")``
#: in the catalogue): the photo, the reference, both decoded like a ``Runner``'s
#: input, and the params; a JSON-serialisable ``dict`` back.
PairRunner = Callable[[np.ndarray, np.ndarray, Mapping[str, Any]], dict[str, Any]]

#: Task name -> the module that defines ``load() -> Runner``.
TASK_MODULES: dict[str, str] = {
    "anonymize": "workers.anonymize",
    "face_crop": "workers.face_crop",
    "cartoonize": "workers.cartoonize",
    "detect": "workers.detect",
    "background": "workers.background",
    "stylize": "workers.stylize",
    "face_verify": "workers.face_verify",
    "parse": "workers.parse",
}

_runners: dict[str, Runner | PairRunner] = {}


def _load(name: str) -> Runner | PairRunner:
    loader: Callable[[], Runner | PairRunner] = importlib.import_module(TASK_MODULES[name]).load
    return loader()


def load_all() -> None:
    # One intra-op thread per process: concurrency comes from worker processes,
    # and an OpenMP pool started before fork can deadlock the forked children.
    import cv2
    import torch

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    for name in TASK_MODULES:
        if name in _runners:
            continue
        started = time.perf_counter()
        _runners[name] = _load(name)
        logger.info(
            "model_loaded",
            extra={"task": name, "load_ms": round((time.perf_counter() - started) * 1000)},
        )


def runner(name: str) -> Runner | PairRunner:
    if name not in _runners:
        # A process that was not started through the worker's init (a shell, a
        # test calling the pipeline directly) loads on first use, still once.
        _runners[name] = _load(name)
    return _runners[name]
