"""Where isolation's CPU goes, down to the kernel: ``perf`` over a worker running jobs.

``bench/isolation.py`` measures what each process role of a worker node costs
per job; this says what that time is spent on. It runs the same jobs through a
worker isolated and live-on (alternating rounds, as there), records every CPU
with ``perf record -a -g`` meanwhile, and sorts each sample by the process that
took it (``ephemera-job``, ``ephemera-forks``, the Celery processes) and by what
it was doing: in the kernel, by the work its call stack shows (tearing down an
exiting process's memory, copying page tables for a fork, zeroing a new huge
page, a copy-on-write fault, a fault on a mapped file, other faults, other
system calls); in user space, by library. For the copy-on-write faults it also
names the user-space functions whose writes caused them.

Needs ``perf`` (Debian's ``linux-perf``) and the right to record every CPU (root,
or ``kernel.perf_event_paranoid`` <= 0). Figures are ms of one core per job.

    .venv/bin/python bench/isolation_profile.py [--jobs 60] [--rounds 2] [--concurrency 2]
"""

from __future__ import annotations

import argparse
import collections
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import bench_stack
from bench.isolation import time_jobs
from tests.harness import Stack
from workers.process_names import FORK_SERVER_NAME, JOB_PROCESS_NAME

#: Samples per second and CPU.
FREQUENCY = 1999
#: Kernel work, by a function its call stack holds: the first that matches names it.
KERNEL_WORK = (
    ("exit teardown", ("do_exit", "exit_mmap")),
    ("fork", ("copy_process", "dup_mmap")),
    ("huge page zeroing", ("do_huge_pmd_anonymous_page",)),
    ("copy-on-write", ("do_wp_page", "do_huge_pmd_wp_page")),
    ("file fault", ("do_fault", "filemap_map_pages")),
    ("other fault", ("handle_mm_fault", "exc_page_fault")),
    ("system call", ("do_syscall_64",)),
)
#: The prefix of the entries that name a copy-on-write fault's cause.
COW_BY = "cow by: "
#: Libraries named in the user-space figures; the rest are summed as "other".
LIBRARIES = ("libtorch", "libpython", "cv2", "libc.so", "numpy")


def role(command: str) -> str:
    if command == JOB_PROCESS_NAME:
        return "job processes"
    if command == FORK_SERVER_NAME:
        return "fork server"
    if command == "celery":
        return "celery (parent, pool)"
    return ""


def kernel_work(stack: list[str]) -> str:
    for work, functions in KERNEL_WORK:
        if any(frame in functions for frame in stack):
            return work
    return "other kernel"


def user_library(dso: str) -> str:
    return next((library for library in LIBRARIES if library in dso), "other")


def read_samples(perf_data: Path) -> list[tuple[str, list[tuple[str, str]]]]:
    """Each sample of ``perf_data``: its command and its call stack, innermost first,
    as (function, library) pairs (``[kernel.kallsyms]`` for the kernel's)."""
    script = subprocess.run(
        ["perf", "script", "-i", str(perf_data), "-F", "comm,ip,sym,dso"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    samples: list[tuple[str, list[tuple[str, str]]]] = []
    for line in script.splitlines():
        if not line.strip():
            continue
        if not line.startswith("\t"):  # a sample's first line: its command
            samples.append((line.strip(), []))
        elif samples:
            # "\t<address> <function> (<library>)"
            _, _, rest = line.strip().partition(" ")
            function, _, library = rest.rpartition(" (")
            samples[-1][1].append((function, library.rstrip(")")))
    return samples


#: What ``profile`` counts: ms per job by (role, where the time went).
Profile = dict[tuple[str, str], float]


def profile(samples: list[tuple[str, list[tuple[str, str]]]], jobs: int) -> Profile:
    """ms per job by (role, work or library), and by (role, ``COW_BY`` + the user
    function whose write caused a copy-on-write fault)."""
    per_sample = 1000 / FREQUENCY / jobs
    spent: collections.Counter[tuple[str, str]] = collections.Counter()
    for command, stack in samples:
        who = role(command)
        if not who or not stack:
            continue
        functions = [function for function, library in stack if library == "[kernel.kallsyms]"]
        if functions:
            work = kernel_work(functions)
            spent[who, f"kernel: {work}"] += per_sample
            if work == "copy-on-write":
                user = next((f for f, library in stack if library != "[kernel.kallsyms]"), "?")
                spent[who, f"{COW_BY}{user}"] += per_sample
        else:
            spent[who, f"user: {user_library(stack[0][1])}"] += per_sample
    return dict(spent)


def record(running: Stack, photo: bytes, *, isolate: str, jobs: int, concurrency: int) -> Path:
    """Run ``jobs`` jobs through a fresh worker under ``perf record``; the data file."""
    running.worker(EPHEMERA_ISOLATE_JOBS=isolate, WORKER_CONCURRENCY=str(concurrency))
    time_jobs(photo, 2 * concurrency)  # warm-up: first connections, spares ready
    time.sleep(1)
    data = Path(tempfile.mkdtemp(prefix="ephemera-perf-")) / "perf.data"
    perf = subprocess.Popen(
        ["perf", "record", "-a", "-g", "-F", str(FREQUENCY), "-q", "-o", str(data)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.5)  # perf has started recording
    time_jobs(photo, jobs)
    time.sleep(0.5)  # the last job processes exit
    perf.send_signal(signal.SIGINT)
    perf.wait(timeout=60)
    running.stop()
    redis.Redis.from_url(running.env["REDIS_URL"]).flushdb()
    return data


def print_profile(spent: Profile) -> None:
    """One set-up's figures: per role, its total and its parts, largest first."""
    for who in sorted({who for who, _ in spent}):
        parts = sorted(
            ((where, ms) for (owner, where), ms in spent.items() if owner == who),
            key=lambda part: -part[1],
        )
        work = [(where, ms) for where, ms in parts if not where.startswith(COW_BY)]
        causes = [(where[len(COW_BY) :], ms) for where, ms in parts if where.startswith(COW_BY)]
        print(f"    {who}: {sum(ms for _, ms in work):.1f}")
        for where, ms in work:
            if ms >= 0.1:
                print(f"      {where:32s} {ms:6.2f}")
        if causes:
            print("      copy-on-write faults, by the user-space function that wrote:")
            for function, ms in causes[:5]:
                print(f"        {function[:60]:60s} {ms:6.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--side", type=int, default=512)
    args = parser.parse_args()
    if shutil.which("perf") is None:
        sys.exit("perf is not installed (Debian: apt-get install linux-perf)")

    from skimage import data

    image = cv2.resize(cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR), (args.side, args.side))
    photo = cv2.imencode(".jpg", image)[1].tobytes()
    totals: dict[str, collections.Counter[tuple[str, str]]] = {
        isolate: collections.Counter() for isolate in ("true", "false")
    }
    with bench_stack() as running:
        for _ in range(args.rounds):
            for isolate, spent in totals.items():
                data_file = record(
                    running, photo, isolate=isolate, jobs=args.jobs, concurrency=args.concurrency
                )
                found = profile(read_samples(data_file), args.jobs)
                spent.update({key: ms / args.rounds for key, ms in found.items()})
                shutil.rmtree(data_file.parent, ignore_errors=True)
    print(
        f"{args.jobs} cartoonize jobs of {args.side}x{args.side} at concurrency "
        f"{args.concurrency}, ms of a core per job (mean over {args.rounds} round(s)):"
    )
    for isolate, spent in totals.items():
        print("  isolated" if isolate == "true" else "  live-on")
        print_profile(dict(spent))


if __name__ == "__main__":
    main()
