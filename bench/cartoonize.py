"""Benchmark ``cartoonize`` at 0.3, 1 and 4 MP on one thread, as one worker core runs it.

Each size runs in its own process, so that the peak RSS it reports belongs to that size
alone (``ru_maxrss`` never goes down). Run: ``.venv/bin/python bench/cartoonize.py``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

SIZES_MP: tuple[float, ...] = (0.3, 1.0, 4.0)
REPEATS = 5


def measure(megapixels: float, repeats: int) -> dict[str, float]:
    """Median wall and CPU ms per image and peak RSS growth, for a square photo.

    CPU time is reported too because the cores are shared: it moves less than wall time
    when other processes compete, which is what makes runs comparable.
    """
    import cv2
    import numpy as np
    import torch
    from skimage import data

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from workers.cartoonize import SPEC

    torch.set_num_threads(1)
    side = round((megapixels * 1e6) ** 0.5)
    photo = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    image = np.ascontiguousarray(cv2.resize(photo, (side, side), interpolation=cv2.INTER_CUBIC))
    run = SPEC.load()
    params = SPEC.validate_params({})
    run(np.zeros((8, 8, 3), np.uint8), params)  # warm up torch's kernels, not the image
    baseline_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times, cpu_times = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        run(image, params)
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - start_cpu)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "side": side,
        "ms": sorted(times)[len(times) // 2] * 1000,
        "cpu_ms": sorted(cpu_times)[len(cpu_times) // 2] * 1000,
        "peak_mb": (peak_kb - baseline_kb) / 1024,
        "image_mb": image.nbytes / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--one", type=float, help="measure one size in this process (internal)")
    parser.add_argument("--repeats", type=int, default=REPEATS)
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(measure(args.one, args.repeats)))
        return
    results = {}
    for mp in SIZES_MP:
        child = [sys.executable, __file__, "--one", str(mp), "--repeats", str(args.repeats)]
        out = subprocess.run(child, check=True, capture_output=True, text=True).stdout
        results[mp] = json.loads(out.strip().splitlines()[-1])
    base = results[SIZES_MP[0]]
    print(f"cartoonize, defaults, 1 thread, median of {args.repeats}")
    for mp, r in results.items():
        print(
            f"{mp:4.1f} MP ({r['side']}x{r['side']}): {r['ms']:7.1f} ms wall"
            f" {r['cpu_ms']:7.1f} ms CPU"
            f"  x{r['cpu_ms'] / base['cpu_ms']:4.1f} CPU for x{mp / SIZES_MP[0]:4.1f} pixels"
            f"  peak +{r['peak_mb']:.0f} MB RSS ({r['peak_mb'] / r['image_mb']:.0f}x the input)"
        )


if __name__ == "__main__":
    main()
