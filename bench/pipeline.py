"""End to end over real HTTP: a 1 MP JPEG through `cartoonize` with `Prefer: wait`.

Starts its own Redis, one worker (concurrency 1) and the web under gunicorn,
then times N submits that wait for the end, back to back and with idle time
between them, from the project's keep-alive client (ephemera_client), and prints the job's own
metrics beside the client's wall time: the overhead of the path (HTTP,
sealing, queueing, claiming, storing, the long poll) and its ratio to the work,
and where that overhead goes, from the job record's own clock (one machine,
one clock): from the request's start to the record's creation time (the
upload and its checks), queued (sealing and storing the upload, the queue,
the hand-over to a job process), the claim (its round trip, with the sealed
upload), and from the publish's start to the answer's arrival (sealing and
storing the result, the long poll's wake-up, the response).

    .venv/bin/python bench/pipeline.py [--runs 20] [--idle 0.5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass, fields
from pathlib import Path

import cv2

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import bench_stack
from ephemera_client import Client


def photo_1mp() -> bytes:
    from skimage import data

    image = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    image = cv2.resize(image, (1155, 866), interpolation=cv2.INTER_CUBIC)  # 1.0 MP
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return encoded.tobytes()


@dataclass(frozen=True)
class Submit:
    """One ``Prefer: wait`` submit, in ms: the client's wall time and the record's stages."""

    wall: float
    queued: float
    run: float
    download: float
    #: Request start to the record's ``created_at``: the upload and its checks.
    before_record: float
    #: ``started_at`` (taken as the claim is sent) to ``finished_at`` (the
    #: publish's start), less the run: the claim's round trip, with the upload.
    around_run: float
    #: The publish's start to the answer's arrival: sealing and storing the
    #: result, the long poll's wake-up, the response.
    after_end: float


def submit(client: Client, image: bytes) -> Submit:
    from backend.ephemeral import store  # after bench_stack's django.setup()

    sent = time.time()
    started = time.perf_counter()
    job = client.submit("cartoonize", image, wait=60)
    wall = time.perf_counter() - started
    received = time.time()
    assert job.status == "succeeded", job
    record = store.get_job(job.id)
    assert record is not None, job
    assert record.started_at is not None, record
    assert record.finished_at is not None, record
    assert record.run_ms is not None, record
    started = time.perf_counter()
    client.download(job)
    return Submit(
        wall=wall * 1000,
        queued=record.queued_ms or 0,
        run=record.run_ms,
        download=(time.perf_counter() - started) * 1000,
        before_record=(record.created_at - sent) * 1000,
        around_run=(record.finished_at - record.started_at) * 1000 - record.run_ms,
        after_end=(received - record.finished_at) * 1000,
    )


def series(client: Client, image: bytes, runs: int, idle: float) -> dict[str, float]:
    found = []
    for _ in range(runs):
        time.sleep(idle)
        found.append(submit(client, image))
    med = statistics.median
    medians = {f.name: med(getattr(one, f.name) for one in found) for f in fields(Submit)}
    return {
        **medians,
        "overhead": med(one.wall - one.run for one in found),
        "ratio": medians["wall"] / medians["run"],
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
        print(
            f"    overhead's parts: upload and checks {r['before_record']:.1f}, queued "
            f"{r['queued']:.1f}, claim {r['around_run']:.1f}, publish to answer "
            f"{r['after_end']:.1f} ms"
        )
        print(f"    result download, wall       {r['download']:8.1f} ms")


if __name__ == "__main__":
    main()
