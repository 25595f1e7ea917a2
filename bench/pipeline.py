"""End to end over real HTTP: a 1 MP JPEG through `cartoonize` with `Prefer: wait`.

Starts its own Redis, one worker (concurrency 1) and the web under gunicorn,
then times N submits that wait for the end, and prints the job's own metrics
beside the client's wall time, with their ratio (the overhead of the path:
HTTP, sealing, queueing, claiming, storing and the long poll).

    .venv/bin/python bench/pipeline.py [--runs 20]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import cv2

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.stack import REPO, free_port, stack, wait_port
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
    submit_wall = time.perf_counter() - started
    started = time.perf_counter()
    client.download(job)
    download_wall = time.perf_counter() - started
    return submit_wall, job, download_wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    image = photo_1mp()
    with stack() as running:
        running.env["EPHEMERA_TIER_RATES"] = "unlimited:0"
        key = running.manage("create_api_key", "--name", "bench", "--tier", "unlimited")
        running.start_worker(WORKER_CONCURRENCY="1")
        port = free_port()
        running.start(str(REPO / "bin" / "ephemera"), "web", env={"PORT": str(port)})
        wait_port(port)
        # One client, one keep-alive connection, as a real caller would use it.
        with Client(url=f"http://127.0.0.1:{port}", api_key=key) as client:
            submit(client, image)  # warm-up: first connection, first child
            walls, queued, run, downloads = [], [], [], []
            for _ in range(args.runs):
                wall, job, download = submit(client, image)
                assert job.status == "succeeded", job
                walls.append(wall * 1000)
                queued.append(job.queued_ms)
                run.append(job.run_ms)
                downloads.append(download * 1000)
    med = statistics.median
    print(f"1 MP JPEG ({len(image) / 1024:.0f} KiB) through cartoonize, {args.runs} runs, medians:")
    print(f"  Prefer: wait submit, wall      {med(walls):8.1f} ms")
    print(f"  job metrics queued_ms          {med(queued):8.1f} ms")
    print(f"  job metrics run_ms             {med(run):8.1f} ms")
    print(f"  result download, wall          {med(downloads):8.1f} ms")
    print(f"  ratio wall / run_ms            {med(walls) / med(run):8.2f}")
    print(f"  overhead (wall - run_ms)       {med(walls) - med(run):8.1f} ms")


if __name__ == "__main__":
    main()
