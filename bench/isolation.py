"""The cost of job isolation: a fresh process per job vs pool processes that run jobs themselves.

With ``EPHEMERA_ISOLATE_JOBS=true`` (the default) each job runs in a process
forked for it alone, in advance, by the node's fork server
(``workers.isolation``), which exits after the job. This runs the same jobs
through a worker each way, at concurrency 1 and 2, in alternating rounds in
one run, and prints throughput and ratios (isolated / live-on, and 2
processes / 1, beside the same ratio without isolation: the machine's own
ceiling), where the node's CPU goes per job (user and system time of each
process role, from ``/proc``: the worker's parent, the pool processes, the
fork server, and the job processes it reaped), the worker node's memory
with every model loaded, and per task (``bench/task_costs.py``, under the
worker's own allocator settings) the private memory one job adds and what
its run costs more in a fresh process than in a warm one.

    .venv/bin/python bench/isolation.py [--jobs 40] [--side 512] [--rounds 3] [--task cartoonize]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import cv2
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from backend.catalogue import CATALOGUE
from bench.harness import bench_stack
from tests.harness import Process, process_status, smaps_rollup_kb


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


#: The process roles of a worker node, as the CPU breakdown names them.
ROLES = ("parent", "pool", "fork server", "job processes")
#: One clock tick of ``/proc``'s CPU times, in ms.
TICK_MS = 1000 / os.sysconf("SC_CLK_TCK")


def node_cpu_ms(worker: Process) -> dict[str, tuple[float, float]]:
    """User and system CPU time (ms) each role of a worker node has used so far.

    Job processes are counted once reaped, through their fork server's
    children's times: run ``time.sleep`` after the last job so they are.
    """
    used = dict.fromkeys(ROLES, (0.0, 0.0))

    def add(role: str, user: int, system: int) -> None:
        used[role] = (used[role][0] + user * TICK_MS, used[role][1] + system * TICK_MS)

    servers = worker.fork_servers()
    for role, pid in [
        ("parent", worker.pid),
        *(("pool", pid) for pid in worker.children()),
        *(("fork server", pid) for pid in servers),
    ]:
        status = process_status(pid)
        if status is None:  # a process that just exited
            continue
        add(role, status.user_ticks, status.system_ticks)
        if pid in servers:
            add("job processes", status.children_user_ticks, status.children_system_ticks)
    return used


def machine_idle_ms() -> float:
    """The time every core of this machine has spent idle or waiting on I/O so far (ms).

    The time tells whether a set-up is bound by CPU or by waiting.
    """
    # The first line of /proc/stat sums the cores; after its name: user, nice, system, idle, iowait.
    idle, iowait = (int(f) for f in Path("/proc/stat").read_text().split()[4:6])
    return (idle + iowait) * TICK_MS


def time_jobs(photo: bytes, jobs: int, task: str = "cartoonize") -> tuple[float, float]:
    """Queue ``jobs`` jobs at once and time them to their ends: jobs per second,
    and the machine's idle time per job meanwhile (ms)."""
    from backend.ephemeral import store
    from backend.jobs.queue import enqueue_job
    from tests.factories import queued_job

    ids = [queued_job(photo, task=task) for _ in range(jobs)]
    idle = machine_idle_ms()
    started = time.perf_counter()
    for job_id in ids:
        enqueue_job(job_id)
    for job_id in ids:
        record = store.wait_for_end(job_id, timeout=300)
        assert record is not None, job_id
        assert record.status == "succeeded", record
    elapsed = time.perf_counter() - started
    return jobs / elapsed, (machine_idle_ms() - idle) / jobs


def worker_environment(pid: int) -> dict[str, str]:
    """The environment a running process was started with (``bin/ephemera`` sets the worker's)."""
    pairs = Path(f"/proc/{pid}/environ").read_bytes().decode().split("\0")
    return dict(pair.split("=", 1) for pair in pairs if "=" in pair)


def print_cpu_per_job(
    cpu: dict[tuple[str, int], list[dict[str, tuple[float, float]]]],
    idle: dict[tuple[str, int], list[float]],
) -> None:
    """Each role's CPU per job (user + system ms, median of rounds; roles with
    none left out), and the machine's idle time per job."""
    print("  where the node's CPU goes, ms per job (user + system, median of rounds; and the")
    print("  machine's idle time per job, summed over its cores):")
    for setup, rounds in sorted(cpu.items(), key=lambda item: item[0][1]):
        parts, total = [], 0.0
        for role in ROLES:
            user = statistics.median(found[role][0] for found in rounds)
            system = statistics.median(found[role][1] for found in rounds)
            total += user + system
            if user + system >= 0.05:
                parts.append(f"{role} {user:.1f} + {system:.1f}")
        isolate, concurrency = setup
        mode = "isolated" if isolate == "true" else "live-on "
        print(
            f"    concurrency {concurrency} {mode}  total {total:5.1f}:  "
            + ",  ".join(parts)
            + f";  machine idle {statistics.median(idle[setup]):.1f}"
        )


def print_task_costs(side: int, tunables: str) -> None:
    """Run ``bench/task_costs.py`` under the allocator settings the worker runs with."""
    sys.stdout.flush()  # this process's figures first
    subprocess.run(
        [sys.executable, str(Path(__file__).with_name("task_costs.py")), "--side", str(side)],
        env={**os.environ, "GLIBC_TUNABLES": tunables},
        check=True,
    )


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
    #: Per set-up and round: each role's (user, system) ms of CPU per job.
    cpu: dict[tuple[str, int], list[dict[str, tuple[float, float]]]] = {}
    #: Per set-up and round: the machine's idle ms per job.
    idle: dict[tuple[str, int], list[float]] = {}
    memory: list[tuple[float, float]] = []
    #: The glibc tunables the worker runs with (``bin/ephemera worker`` sets them).
    tunables = ""
    with bench_stack() as running:
        # Rounds alternate the four set-ups, so a drift of the machine's speed
        # touches all of them alike; each reports its median round.
        for _ in range(args.rounds):
            for concurrency in (1, 2):
                for isolate in ("true", "false"):
                    worker = running.worker(
                        EPHEMERA_ISOLATE_JOBS=isolate, WORKER_CONCURRENCY=str(concurrency)
                    )
                    time_jobs(photo, 2 * concurrency, args.task)  # warm-up: first connections
                    if (isolate, concurrency) == ("true", 2):
                        time.sleep(2)  # idle: the warm-up's job processes gone, spares waiting
                        memory.append(node_memory_mb(worker.pid))
                        tunables = worker_environment(worker.pid).get("GLIBC_TUNABLES", "")
                    used = node_cpu_ms(worker)
                    rate, idle_per_job = time_jobs(photo, args.jobs, args.task)
                    time.sleep(0.5)  # the last job processes exit and are reaped
                    rates.setdefault((isolate, concurrency), []).append(rate)
                    idle.setdefault((isolate, concurrency), []).append(idle_per_job)
                    cpu.setdefault((isolate, concurrency), []).append(
                        {
                            role: (
                                (user - used[role][0]) / args.jobs,
                                (system - used[role][1]) / args.jobs,
                            )
                            for role, (user, system) in node_cpu_ms(worker).items()
                        }
                    )
                    running.stop()
                    redis.Redis.from_url(running.env["REDIS_URL"]).flushdb()
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
    print_cpu_per_job(cpu, idle)
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
    print_task_costs(args.side, tunables)


if __name__ == "__main__":
    main()
