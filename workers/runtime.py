"""The models of this worker process, loaded once.

``load_all()`` runs in the worker's parent process before the pool forks its
children, so every child starts with the weights already in (shared,
copy-on-write) memory and never loads them per job. A model file that fails its
integrity check raises here, and the worker does not start.
"""

from __future__ import annotations

import logging
import time

from workers.registry import Runner, all_specs

logger = logging.getLogger(__name__)

_runners: dict[str, Runner] = {}


def load_all() -> None:
    # One intra-op thread per process: concurrency comes from worker processes,
    # and an OpenMP pool started before fork can deadlock the forked children.
    import cv2
    import torch

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    for name, spec in all_specs().items():
        if name in _runners:
            continue
        started = time.perf_counter()
        _runners[name] = spec.load()
        logger.info(
            "model_loaded",
            extra={"task": name, "load_ms": round((time.perf_counter() - started) * 1000)},
        )


def runner(name: str) -> Runner:
    if name not in _runners:
        # A process that was not started through the worker's init (a shell, a
        # test calling the pipeline directly) loads on first use, still once.
        _runners[name] = all_specs()[name].load()
    return _runners[name]
