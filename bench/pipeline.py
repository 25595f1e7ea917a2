"""End to end over real HTTP: a 1 MP JPEG through `cartoonize` with `Prefer: wait`.

Starts its own Redis, one worker (concurrency 1) and the web under gunicorn,
then times N submits that wait for the end, back to back and with idle time
between them, from the project's keep-alive client (ephemera_client), and prints the job's own
metrics beside the client's wall time: the overhead of the path (HTTP,
sealing, queueing, claiming, storing, the long poll) and its ratio to the work.

    .venv/bin/python bench/pipeline.py [--runs 20] [--idle 0.5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import cv2

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import bench_stack
from ephemera_client import Client, Job


def photo_1mp() -> bytes:
    from skimage import data

    image = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    image = cv2.resize(image, (1155, 866), interpolation=cv2.INTER_CUBIC)  # 1.0 MP
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return encoded.tobytes()


def submit(client: Client, image: bytes) -> tuple[float, Job, float]:
    started = time.perf_counter()
    job = client.submit("cartoonize", image, wait=60)
    wall = time.perf_counter() - started
    assert job.status == "succeeded", job
    started = time.perf_counter()
    client.download(job)
    return wall, job, time.perf_counter() - started


def series(client: Client, image: bytes, runs: int, idle: float) -> dict[str, float]:
    walls, queued, run, downloads = [], [], [], []
    for _ in range(runs):
        time.sleep(idle)
        wall, job, download = submit(client, image)
        walls.append(wall * 1000)
        queued.append(job.queued_ms)
        run.append(job.run_ms)
        downloads.append(download * 1000)
    med = statistics.median
    overheads = [wall - ran for wall, ran in zip(walls, run, strict=True)]
    return {
        "wall": med(walls),
        "queued": med(queued),
        "run": med(run),
        "download": med(downloads),
        "overhead": med(overheads),
        "ratio": med(walls) / med(run),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--idle", type=float, default=0.5)
    args = parser.parse_args()
    image = photo_1mp()
    with bench_stack() as running:
        running.worker(WORKER_CONCURRENCY="1")
        _, port = running.web()
        # One client, one keep-alive connection, as a real caller would use it.
        with Client(url=f"http://127.0.0.1:{port}", api_key=running.key) as client:
            submit(client, image)  # warm-up: first connections
            results = {
                "back to back": series(client, image, args.runs, 0.0),
                f"idle {args.idle:g} s between": series(client, image, args.runs, args.idle),
            }
    print(f"1 MP JPEG ({len(image) / 1024:.0f} KiB) through cartoonize, {args.runs} runs, p50:")
    for name, r in results.items():
        print(f"  {name}:")
        print(f"    Prefer: wait submit, wall   {r['wall']:8.1f} ms")
        print(f"    queued_ms                   {r['queued']:8.1f} ms   (target <= 10)")
        print(f"    run_ms                      {r['run']:8.1f} ms")
        print(f"    overhead (wall - run_ms)    {r['overhead']:8.1f} ms   (target <= 20)")
        print(f"    ratio wall / run_ms         {r['ratio']:8.2f}      (target <= 1.15)")
        print(f"    result download, wall       {r['download']:8.1f} ms")


if __name__ == "__main__":
    main()
