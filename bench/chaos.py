"""Chaos: many jobs from real clients while the service's processes and Redis fail.

Mode ``faults`` (default): a Redis server, the web, a worker node (2 pool
processes) and beat. While N jobs flow from several keep-alive clients, each
waiting for its job's end before the next, it SIGKILLs pool and busy job
processes at least 5 times, SIGKILLs the whole worker node and starts it
again, and SIGKILLs Redis and starts it again, empty.

Mode ``failover``: the same load on a Redis master, a replica and three
Sentinels; the master is SIGKILLed a third of the way through.

Afterwards every job id handed out is followed to its end (its result
downloaded once); a job is silently lost if it answers 404 or is not terminal
two minutes after the last fault. It prints the outcomes by status and code,
the silently lost, the refused submits by code, and what is left in Redis.

    .venv/bin/python bench/chaos.py [--mode faults|failover] [--jobs 1000] [--threads 8]
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.harness import Process, Stack, start_worker
from tests.load import LoadReport, follow_to_the_end, run_load
from tests.services import SentinelCluster, free_port, start_redis

PATIENCE = 120


def photos() -> list[bytes]:
    from skimage import data

    base = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    return [
        cv2.imencode(".jpg", cv2.resize(base, (side, side)))[1].tobytes()
        for side in (256, 384, 512)
    ]


class Faults:
    """The faults of mode ``faults``, fired as the load passes given shares of the jobs."""

    def __init__(self, stack: Stack, worker: Process, redis_port: int, workdir: Path) -> None:
        self.stack, self.worker = stack, worker
        self.redis_port, self.workdir = redis_port, workdir
        self.redis_proc: object = None
        self.log: list[tuple[float, str]] = []
        self.rng = random.Random(1)
        self.lock = threading.Lock()

    def at(self, submitted: int, jobs: int) -> None:
        share = submitted / jobs
        with self.lock:
            fired = {name for _, name in self.log}
            for index, point in enumerate((0.1, 0.15, 0.2, 0.25, 0.3, 0.35)):
                if share >= point and f"kill-process-{index}" not in fired:
                    self._kill_a_process(index)
            if share >= 0.45 and "kill-node" not in fired:
                os.killpg(self.worker.pid, signal.SIGKILL)
                self.worker.proc.wait()
                self.log.append((time.monotonic(), "kill-node"))
                self.worker = start_worker(self.stack.env, log_dir=self.stack.workdir)
                self.stack.processes.append(self.worker)
                self.log.append((time.monotonic(), "node-restarted"))
            if share >= 0.7 and "restart-redis" not in fired:
                self.redis_proc.kill()  # type: ignore[attr-defined]
                self.redis_proc.wait()  # type: ignore[attr-defined]
                self.redis_proc = start_redis(self.redis_port, self.workdir)
                self.log.append((time.monotonic(), "restart-redis"))

    def _kill_a_process(self, index: int) -> None:
        jobs, pools = self.worker.job_processes(busy=True), self.worker.children()
        targets = pools if index % 3 == 2 else jobs
        if targets:
            os.kill(self.rng.choice(targets), signal.SIGKILL)
            self.log.append((time.monotonic(), f"kill-process-{index}"))


def leftovers(url: str) -> tuple[int, int]:
    conn = redis.Redis.from_url(url)
    payloads = sum(
        1 for prefix in ("eph:in:*", "eph:ref:*", "eph:res:*") for _ in conn.scan_iter(prefix)
    )
    no_ttl = sum(
        1
        for pattern in ("eph:*", "ephops:*")
        for key in conn.scan_iter(pattern)
        if conn.ttl(key) == -1
    )
    return payloads, no_ttl


def print_report(report: LoadReport, mode: str, extra: dict[str, object]) -> None:
    print(f"chaos ({mode}): {len(report.handed_out)} jobs handed out")
    for outcome, count in sorted(report.outcomes.items(), key=lambda item: -item[1]):
        print(f"  {outcome:32s} {count:6d}")
    print(f"  silently lost                    {len(report.silently_lost):6d}   (target 0)")
    print(f"  submits refused, by code         {dict(report.refused)}")
    print(f"  requests with no HTTP answer     {dict(report.transport_errors)}")
    print(f"  succeeded share                  {report.succeeded_share:6.3f}")
    for name, value in extra.items():
        print(f"  {name:32s} {value}")


def run_faults(args: argparse.Namespace, workdir: Path) -> None:
    port = free_port()
    redis_proc = start_redis(port, workdir)
    stack = Stack.create(
        redis_url=f"redis://127.0.0.1:{port}/0",
        workdir=workdir / "stack",
        EPHEMERA_TASK_HARD_LIMIT="20",
        EPHEMERA_TASK_SOFT_LIMIT="15",
        LOG_LEVEL="WARNING",
    )
    faults: Faults | None = None
    try:
        _, web_port = stack.web()
        worker = stack.worker(WORKER_CONCURRENCY="2")
        stack.processes.append(Process.start("beat", env=stack.env, log_dir=stack.workdir))
        faults = Faults(stack, worker, port, workdir)
        faults.redis_proc = redis_proc
        base = f"http://127.0.0.1:{web_port}"
        started = time.monotonic()
        report = run_load(
            base,
            stack.key,
            photos=photos(),
            jobs=args.jobs,
            threads=args.threads,
            wait=60,
            download=True,
            on_submitted=lambda n: faults.at(n, args.jobs),
        )
        last_fault = max(when for when, _ in faults.log)
        follow_to_the_end(
            base,
            stack.key,
            report,
            patience=max(10.0, PATIENCE - (time.monotonic() - last_fault)),
            download=True,
        )
        payloads, no_ttl = leftovers(stack.env["REDIS_URL"])
        alive = all(process.running() for process in stack.processes if process.name != "worker")
        print_report(
            report,
            "faults",
            {
                "faults fired": [name for _, name in faults.log],
                "payload keys left": f"{payloads}   (target 0)",
                "keys without a TTL": f"{no_ttl}   (target 0)",
                "web and beat alive throughout": alive,
                "wall": f"{time.monotonic() - started:.0f} s",
            },
        )
    finally:
        stack.stop()
        (faults.redis_proc if faults else redis_proc).kill()  # type: ignore[attr-defined]


def run_failover(args: argparse.Namespace, workdir: Path) -> None:
    cluster = SentinelCluster(workdir / "redis")
    stack = Stack.create(
        redis_url=cluster.url,
        workdir=workdir / "stack",
        REDIS_SENTINEL_MASTER=SentinelCluster.MASTER_NAME,
        LOG_LEVEL="WARNING",
    )
    try:
        _, web_port = stack.web()
        stack.worker(WORKER_CONCURRENCY="2")
        base = f"http://127.0.0.1:{web_port}"
        killed = threading.Event()

        def kill(submitted: int) -> None:
            if submitted >= args.jobs // 3 and not killed.is_set():
                killed.set()
                cluster.kill_master()

        report = run_load(
            base,
            stack.key,
            photos=photos(),
            jobs=args.jobs,
            threads=args.threads,
            on_submitted=kill,
        )
        follow_to_the_end(base, stack.key, report, patience=PATIENCE, download=True)
        print_report(
            report,
            "failover",
            {
                "master killed, replica promoted": cluster.known_master() == cluster.replica_port,
                "succeeded target": ">= 0.990",
            },
        )
    finally:
        stack.stop()
        cluster.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mode", choices=("faults", "failover"), default="faults")
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="ephemera-chaos-"))
    (run_faults if args.mode == "faults" else run_failover)(args, workdir)


if __name__ == "__main__":
    main()
