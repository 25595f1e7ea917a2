"""The cost of job isolation: a fresh worker child per job vs children that live on.

`EPHEMERA_ISOLATE_JOBS=true` (the default) makes Celery replace each pool child
after one job, so no child ever holds two people's photos. This runs the same
jobs through a worker each way, one after the other in one run, and prints the
throughput of each and their ratio.

    .venv/bin/python bench/isolation.py [--jobs 40] [--concurrency 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from pathlib import Path

import cv2
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.stack import stack


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=40)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--side", type=int, default=512)
    args = parser.parse_args()

    from skimage import data

    image = cv2.resize(cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR), (args.side, args.side))
    photo = cv2.imencode(".jpg", image)[1].tobytes()
    results: dict[str, float] = {}
    with stack() as running:
        os.environ.update({k: v for k, v in running.env.items() if k != "PATH"})
        os.environ["DJANGO_SETTINGS_MODULE"] = "backend.settings"
        import django

        django.setup()
        from backend.ephemeral import store
        from workers.celery_app import app

        for isolate in ("true", "false"):
            worker = running.start_worker(
                EPHEMERA_ISOLATE_JOBS=isolate, WORKER_CONCURRENCY=str(args.concurrency)
            )
            ids = []
            started = time.perf_counter()
            for _ in range(args.jobs):
                job_id = str(uuid.uuid4())
                store.create_job(
                    job_id=job_id,
                    owner="bench",
                    task="cartoonize",
                    params={},
                    fmt="jpeg",
                    image=photo,
                )
                app.send_task("workers.run_job", args=[job_id], queue="jobs")
                ids.append(job_id)
            for job_id in ids:
                record = store.wait_for_end(job_id, timeout=300)
                assert record is not None, job_id
                assert record.status == "succeeded", record
            results[isolate] = args.jobs / (time.perf_counter() - started)
            running.stop(worker)
            redis.Redis.from_url(running.env["REDIS_URL"]).flushdb()

    print(
        f"{args.jobs} cartoonize jobs of {args.side}x{args.side}, concurrency {args.concurrency}:"
    )
    print(f"  fresh child per job (isolated)  {results['true']:6.2f} jobs/s")
    print(f"  children live on                {results['false']:6.2f} jobs/s")
    print(f"  ratio isolated / live-on        {results['true'] / results['false']:6.2f}")


if __name__ == "__main__":
    main()
