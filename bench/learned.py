"""Benchmark the learned-model tasks on one thread: speed against targets, quality, memory.

Run: ``EPHEMERA_MODEL_DIR=var/models OMP_NUM_THREADS=1 .venv/bin/python bench/learned.py``

Speed (median of ``--repeats`` runs, wall and CPU ms, and the ratio to the
target; below 1 meets it):
- ``background`` of a 1 MP photo (target 120 ms), ``stylize`` of 1 MP (1000 ms),
  ``face_verify`` of two 1 MP photos (250 ms).

Quality:
- person mask: the share of every detected face (its inner half) that the mask
  calls person, on 28 real faces; the share of person pixels on photos without
  people; and the IoU of the mask's box with a person box drawn by hand on the
  astronaut photo (the whole suit and hair and the helmet she holds).
- stylize: what running the net at 0.4 MP and upsampling costs against running
  it at the full 1 MP (mean absolute difference and PSNR), for the guided
  upsampling used and for plain bilinear upsampling.
- face_verify: true-accept and false-accept rates over every same-person and
  every different-person pair of the real photos in
  ``tests/workers/models/data/people`` (see SOURCES.md there) plus the
  astronaut, at thresholds around dlib's 0.6.

Memory: the process's RSS with every task's models loaded as a worker node
loads them (``workers.registry.load_all``), and after the timed runs (target
600 MB for the node).
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
PEOPLE = REPO / "tests" / "workers" / "models" / "data" / "people"
#: Drawn by hand on skimage's 512x512 astronaut: hair top to the bottom edge,
#: left edge (her shoulder) to the right edge (the helmet she holds).
ASTRONAUT_PERSON_BOX = (0, 14, 512, 512)


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def timed(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    fn()  # warm up
    walls, cpus = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - start)
        cpus.append(time.process_time() - start_cpu)
    return sorted(walls)[repeats // 2] * 1000, sorted(cpus)[repeats // 2] * 1000


def at_megapixels(image: np.ndarray, megapixels: float) -> np.ndarray:
    height, width = image.shape[:2]
    scale = (megapixels * 1e6 / (height * width)) ** 0.5
    size = (round(width * scale), round(height * scale))
    return cv2.resize(image, size, interpolation=cv2.INTER_CUBIC)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    from skimage import data

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "backend.settings")
    import django

    django.setup()
    from backend.catalogue import CATALOGUE
    from workers import background, face_verify, parse, registry, stylize
    from workers.models import learned
    from workers.models.faces import DetectOptions, load_from_settings
    from workers.models.style import style_weights

    before = rss_mb()
    # What a worker node's parent loads before it forks: every task's runner
    # (the face detectors and cartoonize's net too). The models the bench
    # calls below are the same cached instances.
    registry.load_all()
    loaded = rss_mb()
    detector = load_from_settings()
    segmenter = learned.selfie_from_settings()
    net = learned.style_from_settings()
    embedder = learned.face_embedder_from_settings()
    pose = learned.pose_from_settings()
    mesher = learned.face_mesh_from_settings()

    astronaut = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    people: dict[str, np.ndarray] = {
        p.stem: np.asarray(cv2.imread(str(p))) for p in sorted(PEOPLE.glob("*.jpg"))
    }
    photo = at_megapixels(astronaut, 1.0)
    print(f"one thread; photo {photo.shape[1]}x{photo.shape[0]}; repeats {args.repeats}")

    print("\n== speed (median ms; ratio to target, <= 1 meets it) ==")
    bg = background.make_runner(segmenter)
    st = stylize.make_runner(net)
    fv = face_verify.make_compare(detector, embedder)
    pa = parse.make_runner(pose, mesher, segmenter)
    obama_1mp, obama2_1mp = (
        at_megapixels(people["obama"], 1.0),
        at_megapixels(people["obama2"], 1.0),
    )
    rows = [
        ("parse 1 MP, one person", 300, lambda: pa(photo, CATALOGUE["parse"].validate_params({}))),
        ("background 1 MP", 120, lambda: bg(photo, CATALOGUE["background"].validate_params({}))),
        ("stylize 1 MP", 1000, lambda: st(photo, CATALOGUE["stylize"].validate_params({}))),
        (
            "face_verify 2 x 1 MP",
            250,
            lambda: fv(obama_1mp, obama2_1mp, CATALOGUE["face_verify"].validate_params({})),
        ),
    ]
    for name, target, fn in rows:
        wall, cpu = timed(fn, args.repeats)
        print(f"{name:24s} wall {wall:7.1f}  cpu {cpu:7.1f}  ratio {cpu / target:5.2f} (cpu)")
    after_runs = rss_mb()
    print("\n== person mask ==")
    covered, faces = [], 0
    for image in [astronaut, *people.values()]:
        found = detector.detect(image, DetectOptions(detectors=("mtcnn",))).faces
        probability = segmenter.probability(image)
        for x1, y1, x2, y2 in found.boxes.round().astype(int):
            qx, qy = (x2 - x1) // 4, (y2 - y1) // 4
            inner = probability[max(0, y1 + qy) : y2 - qy, max(0, x1 + qx) : x2 - qx]
            covered.append(float((inner > 0.5).mean()))
            faces += 1
    print(
        f"faces (inner half) called person: mean {np.mean(covered):.3f}, "
        f"min {min(covered):.3f}, n={faces}"
    )
    for name in ("rocket", "brick", "coffee", "hubble_deep_field", "grass"):
        image = getattr(data, name)()
        image = cv2.cvtColor(
            image if image.ndim == 3 else np.dstack([image] * 3), cv2.COLOR_RGB2BGR
        )
        share = float((segmenter.probability(image) > 0.5).mean())
        print(f"no person, {name:18s}: person share {share:.3f}")
    mask = segmenter.probability(astronaut) > 0.5
    ys, xs = np.nonzero(mask)
    box = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    hand = ASTRONAUT_PERSON_BOX
    inter = max(0, min(box[2], hand[2]) - max(box[0], hand[0])) * max(
        0, min(box[3], hand[3]) - max(box[1], hand[1])
    )
    union = (
        (box[2] - box[0]) * (box[3] - box[1]) + (hand[2] - hand[0]) * (hand[3] - hand[1]) - inter
    )
    print(f"astronaut: mask box {box} vs hand box {hand}: IoU {inter / union:.3f}")

    wall, cpu = timed(lambda: net.stylize(photo, style_weights("blue-swirls"), max_pixels=10**7), 3)
    print(
        f"{'(stylize net at 1 MP)':24s} wall {wall:7.1f}  cpu {cpu:7.1f}  ratio {cpu / 1000:5.2f}"
    )

    print("\n== stylize: cost of the 0.4 MP net + upsampling, against the net at 1 MP ==")
    weights = style_weights("blue-swirls")
    full = net.stylize(photo, weights, max_pixels=10**7).astype(np.float32)
    capped = net.stylize(photo, weights).astype(np.float32)
    height, width = photo.shape[:2]
    small = net.stylize(at_megapixels(photo, 0.4), weights)
    bilinear = cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    for name, out in (("guided (used)", capped), ("bilinear", bilinear)):
        mse = float(((out - full) ** 2).mean())
        psnr = 10 * np.log10(255**2 / mse)
        print(
            f"{name:14s}: mean abs diff {np.abs(out - full).mean():5.2f} / 255, PSNR {psnr:5.2f} dB"
        )

    print("\n== face_verify: pairs of real photos ==")
    from workers.models.align import align
    from workers.models.face_embed import SIZE, chip_points

    identities: list[tuple[str, np.ndarray]] = []
    sources = [("astronaut", astronaut), *people.items()]
    for source, image in sources:
        found = detector.detect(
            image, DetectOptions(detectors=("mtcnn",), mtcnn_thresholds=(0.6, 0.7, 0.8))
        ).faces
        for i, landmarks in enumerate(found.landmarks):
            who = (
                "collins"
                if source == "astronaut"
                else source.rstrip("0123456789")
                if source.startswith(("obama", "biden"))
                else f"{source}:{i}"
            )
            chip = align(image, landmarks, size=SIZE, padding=0.0, points=chip_points())
            identities.append((who, embedder.embed(cv2.cvtColor(chip, cv2.COLOR_BGR2RGB))))
    known = {"obama", "biden", "collins"}
    same, different = [], []
    for (a, ea), (b, eb) in itertools.combinations(identities, 2):
        distance = float(np.linalg.norm(ea - eb))
        if a == b:
            same.append(distance)
        elif a in known or b in known:  # the demo faces are unnamed: only against known people
            different.append(distance)
    print(
        f"{len(identities)} faces; {len(same)} same-person pairs (max distance {max(same):.3f}), "
        f"{len(different)} different-person pairs (min distance {min(different):.3f})"
    )
    for threshold in (0.45, 0.5, 0.55, 0.6, 0.65, 0.7):
        tar = np.mean(np.array(same) < threshold)
        far = np.mean(np.array(different) < threshold)
        marker = "  <- used" if threshold == face_verify.THRESHOLD else ""
        print(f"threshold {threshold:.2f}: true-accept {tar:.3f}  false-accept {far:.3f}{marker}")

    print("\n== parse: labels against the landmarks of another net (MTCNN) ==")
    import base64
    import io

    from PIL import Image

    from workers.models.parsing import LABELS

    hits = {"eyes": 0, "nose": 0, "lips": 0}
    total = 0
    for image in [astronaut, *people.values()]:
        answer = pa(image, CATALOGUE["parse"].validate_params({}))
        assert isinstance(answer, dict)
        png = base64.b64decode(str(answer["png_base64"]))
        labels = np.array(Image.open(io.BytesIO(png)))
        found = detector.detect(image, DetectOptions(detectors=("mtcnn",))).faces
        for marks in found.landmarks:
            total += 1

            def near(point: np.ndarray, labels: np.ndarray = labels) -> set[str]:
                x, y = round(point[0]), round(point[1])
                window = labels[max(0, y - 2) : y + 3, max(0, x - 2) : x + 3]
                return {LABELS[v] for v in np.unique(window)}

            hits["eyes"] += "eyes" in near(marks[0]) and "eyes" in near(marks[1])
            hits["nose"] += "nose" in near(marks[2])
            hits["lips"] += "lips" in near(marks[3:].mean(axis=0))
    print(
        f"{total} MTCNN faces: both eye centres within 2 px of 'eyes' {hits['eyes']}, nose tip "
        f"in 'nose' {hits['nose']}, mouth centre in 'lips' {hits['lips']} (faces of people "
        f"BlazePose missed count as misses)"
    )

    print("\n== memory ==")
    print(
        f"RSS: imports {before:.0f} MB, every model loaded {loaded:.0f} MB, after the timed "
        f"task runs {after_runs:.0f} MB; ratio to 600 MB: {after_runs / 600:.2f}"
    )


if __name__ == "__main__":
    main()
