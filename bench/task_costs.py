"""What isolation costs each task: its run in a fresh job process vs again in the same one.

Loads every model as a worker's parent does (weights loaded, every task
rehearsed, frozen, its memory laid out as ``workers.isolation`` lays it out
for the fork server), then forks processes per task, as the fork server forks
job processes, and times the task's first run there (as every isolated job runs
it) and the same call again in that process (as a live-on pool process runs
it). It also prints the private memory one job adds. The allocator's settings
come from the environment: ``bench/isolation.py`` runs this with the real
worker's (``GLIBC_TUNABLES`` from ``bin/ephemera worker``), which change how
much a fresh process pays (face_crop at 512 px, two runs each: +35 and +23 ms
with them, +89 and +66 without).

    GLIBC_TUNABLES=glibc.malloc.hugetlb=1 .venv/bin/python bench/task_costs.py [--side 512]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from backend.catalogue import CATALOGUE
from tests.harness import smaps_rollup_kb


@dataclass(frozen=True)
class TaskCost:
    #: Private memory one job writes in a process forked from the loaded models.
    private_mb: float
    #: The task's run in that fresh process, as every isolated job runs it.
    fresh_ms: float
    #: The same call again in the same process, as a live-on pool process runs it.
    again_ms: float


def cost_per_task(photo_bgr: object, *, processes: int = 5) -> dict[str, TaskCost]:
    """Fork processes per task from loaded models, as jobs would; medians per task.

    The first run in a fresh process pays for all the memory it touches
    (zero-filled pages, copies of shared ones); a second run reuses what the
    first allocated. The difference is what isolation costs that task. Each
    figure is the median of ``processes`` processes: one alone drifts with the
    machine.
    """
    from workers import isolation, registry, warm_up

    registry.load_all()
    warm_up.rehearse()
    gc.freeze()
    # The fork server's memory, as the worker's parent leaves it.
    isolation.lay_out_memory_for_forks()
    costs: dict[str, TaskCost] = {}
    for name, spec in CATALOGUE.items():
        # A two-photo task (face_verify) compares the photo with itself.
        photos = (photo_bgr, photo_bgr) if "reference" in spec.inputs else (photo_bgr,)
        found = [_fresh_and_again(registry.runner(name), photos, spec) for _ in range(processes)]
        costs[name] = TaskCost(*(statistics.median(column) for column in zip(*found, strict=True)))
    return costs


def _fresh_and_again(run: Any, photos: tuple[object, ...], spec: Any) -> list[float]:
    """In a forked process: private MB after the first run, then both runs' ms."""
    from workers import heap

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        heap.take_top()  # as a spare does first
        params = spec.validate_params({})
        times = []
        for _ in range(2):
            started = time.perf_counter()
            run(*photos, params)
            times.append((time.perf_counter() - started) * 1000)
            if len(times) == 1:
                memory = smaps_rollup_kb(os.getpid())
                # Written pages only: the library code a job runs is mapped in
                # it alone (the parent released it) but lives in the page
                # cache, shared and reclaimable, whoever maps it.
                private = memory["Private_Dirty"] / 1024
        os.write(write, json.dumps([private, *times]).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        found: list[float] = json.loads(pipe.read())
    os.waitpid(pid, 0)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--side", type=int, default=512)
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "backend.settings")
    import django
    from skimage import data

    django.setup()
    image = cv2.resize(cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR), (args.side, args.side))
    costs = cost_per_task(image)
    print(
        f"per task (side {args.side}, medians of 5 processes, GLIBC_TUNABLES="
        f"{os.environ.get('GLIBC_TUNABLES', '')!r}): private memory one job adds; "
        "its run in a fresh process (isolated) vs again in the same process (live-on)"
    )
    for name, cost in costs.items():
        print(
            f"  {name:12s} {cost.private_mb:7.1f} MB   {cost.fresh_ms:6.0f} ms vs "
            f"{cost.again_ms:6.0f} ms  (+{cost.fresh_ms - cost.again_ms:.0f} ms)",
            flush=True,
        )


if __name__ == "__main__":
    main()
