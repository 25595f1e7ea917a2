"""The cost of job isolation: a fresh process per job vs pool processes that run jobs themselves.

With ``EPHEMERA_ISOLATE_JOBS=true`` (the default) each job runs in a process
forked for it alone, in advance, by the node's fork server
(``workers.isolation``), which exits after the job. This runs the same jobs
through a worker each way, at concurrency 1 and 2, in alternating rounds in
one run, and prints throughput and ratios (isolated / live-on, and 2
processes / 1, beside the same ratio without isolation: the machine's own
ceiling), the worker node's memory with every model loaded, and per task the
private memory one job adds and what its run costs more in a fresh process
than in a warm one.

    .venv/bin/python bench/isolation.py [--jobs 40] [--side 512] [--rounds 3] [--task cartoonize]
"""

from __future__ import annotations

import argparse
import contextlib
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
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from backend.catalogue import CATALOGUE
from bench.harness import bench_stack
from tests.harness import smaps_rollup_kb


def node_memory_mb(parent_pid: int) -> tuple[float, float]:
    """RSS of the worker's parent, and PSS of the whole node, in MB.

    The node is the parent and every process under it: pool processes, the
    fork server and the spares waiting for a job.
    """
    pids, pending = [], [parent_pid]
    while pending:
        pid = pending.pop()
        pids.append(pid)
        with contextlib.suppress(OSError):  # a job process that just exited
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text()
            pending += [int(child) for child in children.split()]

    def field(pid: int, name: str) -> float:
        with contextlib.suppress(OSError):  # a job process that just exited
            return smaps_rollup_kb(pid)[name] / 1024
        return 0.0

    return field(parent_pid, "Rss"), sum(field(pid, "Pss") for pid in pids)


def jobs_per_second(photo: bytes, jobs: int, task: str = "cartoonize") -> float:
    """Queue ``jobs`` jobs at once and time them to their ends."""
    from backend.ephemeral import store
    from backend.jobs.queue import enqueue_job
    from tests.factories import queued_job

    ids = [queued_job(photo, task=task) for _ in range(jobs)]
    started = time.perf_counter()
    for job_id in ids:
        enqueue_job(job_id)
    for job_id in ids:
        record = store.wait_for_end(job_id, timeout=300)
        assert record is not None, job_id
        assert record.status == "succeeded", record
    return jobs / (time.perf_counter() - started)


@dataclass(frozen=True)
class TaskCost:
    #: Private memory one job adds to a process forked from the loaded models.
    private_mb: float
    #: The task's run in that fresh process, as every isolated job runs it.
    fresh_ms: float
    #: The same call again in the same process, as a live-on pool process runs it.
    again_ms: float


def cost_per_task(photo_bgr: object, *, processes: int = 5) -> dict[str, TaskCost]:
    """Load every model as a worker does, then fork processes per task, as jobs would.

    The first run in a fresh process pays for all the memory it touches
    (zero-filled pages, copies of shared ones); a second run reuses what the
    first allocated. The difference is what isolation costs that task. Each
    figure is the median of ``processes`` processes: one alone drifts with the
    machine.
    """
    from workers import registry

    registry.load_all()
    gc.freeze()
    costs: dict[str, TaskCost] = {}
    for name, spec in CATALOGUE.items():
        # A two-photo task (face_verify) compares the photo with itself.
        photos = (photo_bgr, photo_bgr) if "reference" in spec.inputs else (photo_bgr,)
        found = [_fresh_and_again(registry.runner(name), photos, spec) for _ in range(processes)]
        costs[name] = TaskCost(*(statistics.median(column) for column in zip(*found, strict=True)))
    return costs


def _fresh_and_again(run: Any, photos: tuple[object, ...], spec: Any) -> list[float]:
    """In a forked process: private MB after the first run, then both runs' ms."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        params = spec.validate_params({})
        times = []
        for _ in range(2):
            started = time.perf_counter()
            run(*photos, params)
            times.append((time.perf_counter() - started) * 1000)
            if len(times) == 1:
                memory = smaps_rollup_kb(os.getpid())
                private = (memory["Private_Dirty"] + memory["Private_Clean"]) / 1024
        os.write(write, json.dumps([private, *times]).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        found: list[float] = json.loads(pipe.read())
    os.waitpid(pid, 0)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=40)
    parser.add_argument("--side", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=3)
    # The one-photo tasks; the photo has a face, so the face tasks find one.
    one_photo = sorted(name for name, spec in CATALOGUE.items() if "reference" not in spec.inputs)
    parser.add_argument("--task", default="cartoonize", choices=one_photo)
    args = parser.parse_args()

    from skimage import data

    image = cv2.resize(cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR), (args.side, args.side))
    photo = cv2.imencode(".jpg", image)[1].tobytes()
    rates: dict[tuple[str, int], list[float]] = {}
    memory: list[tuple[float, float]] = []
    with bench_stack() as running:
        # Rounds alternate the four set-ups, so a drift of the machine's speed
        # touches all of them alike; each reports its median round.
        for _ in range(args.rounds):
            for concurrency in (1, 2):
                for isolate in ("true", "false"):
                    worker = running.worker(
                        EPHEMERA_ISOLATE_JOBS=isolate, WORKER_CONCURRENCY=str(concurrency)
                    )
                    jobs_per_second(photo, 2 * concurrency, args.task)  # warm-up: first connections
                    if (isolate, concurrency) == ("true", 2):
                        time.sleep(2)  # idle: the warm-up's job processes gone, spares waiting
                        memory.append(node_memory_mb(worker.pid))
                    rate = jobs_per_second(photo, args.jobs, args.task)
                    rates.setdefault((isolate, concurrency), []).append(rate)
                    running.stop()
                    redis.Redis.from_url(running.env["REDIS_URL"]).flushdb()
    costs = cost_per_task(image)

    print(
        f"{args.jobs} {args.task} jobs of {args.side}x{args.side}, jobs/s "
        f"(median of {args.rounds} alternating rounds):"
    )
    median = {setup: statistics.median(found) for setup, found in rates.items()}
    for concurrency in (1, 2):
        isolated, live = median[("true", concurrency)], median[("false", concurrency)]
        print(
            f"  concurrency {concurrency}: isolated {isolated:6.2f}   live-on {live:6.2f}   "
            f"ratio isolated / live-on {isolated / live:5.2f}  (target >= 0.85)"
        )
    # The same gap as a cost per job, which does not depend on the job's size:
    # at concurrency c, each job holds a core for c / rate seconds.
    extra = {c: 1000 * c * (1 / median[("true", c)] - 1 / median[("false", c)]) for c in (1, 2)}
    print(
        f"  isolation's cost per job: {extra[1]:.1f} ms of a core at concurrency 1, "
        f"{extra[2]:.1f} ms at concurrency 2"
    )
    scale = median[("true", 2)] / median[("true", 1)]
    live_scale = median[("false", 2)] / median[("false", 1)]
    print(
        f"  2 processes / 1 process (isolated)      {scale:5.2f}  (target >= 1.8; "
        f"live-on on this machine: {live_scale:.2f})"
    )
    print(
        f"worker node (concurrency 2, idle) with every model loaded, median of rounds: parent "
        f"RSS {statistics.median(rss for rss, _ in memory):.0f} MB, node PSS "
        f"{statistics.median(pss for _, pss in memory):.0f} MB  (target <= 600 MB)"
    )
    print(
        f"per task (side {args.side}, medians of 5 processes): private memory one job adds; "
        "its run in a fresh process (isolated) vs again in the same process (live-on)"
    )
    for name, cost in costs.items():
        print(
            f"  {name:12s} {cost.private_mb:7.1f} MB   {cost.fresh_ms:6.0f} ms vs "
            f"{cost.again_ms:6.0f} ms  (+{cost.fresh_ms - cost.again_ms:.0f} ms)"
        )


if __name__ == "__main__":
    main()
