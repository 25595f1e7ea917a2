"""Group photos composed from real faces, with ground-truth boxes known by construction.

The faces are the 100 face crops of ``skimage.data.lfw_subset()`` (real LFW
faces, 25x25 greyscale, cropped tightly from the brows to the chin), scaled
to a target size and pasted, with a feathered edge, at random places on real
photos that scikit-image ships. The 100 non-face crops of the same set are
pasted too, as distractors that a detector must not call faces. The pasted
face square is the ground-truth box.

The benchmark (``bench/faces.py``) imports this module as well, so the tests
and the published figures measure the same kind of images.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import cv2
import numpy as np
from skimage import data

#: Face-size bins (pixels, the side of the pasted square) used by tests and bench.
SIZE_BINS: tuple[tuple[int, int], ...] = ((24, 48), (48, 96), (96, 192))
BACKGROUNDS: tuple[str, ...] = (
    "coffee",
    "rocket",
    "stereo_motorcycle",
    "hubble_deep_field",
    "brick",
    "grass",
    "gravel",
    "immunohistochemistry",
)


@dataclass(frozen=True)
class Composed:
    """A BGR image and the ground-truth boxes ``(N, 4)`` of the faces in it."""

    image: np.ndarray
    boxes: np.ndarray


@cache
def lfw_crops() -> tuple[np.ndarray, np.ndarray]:
    """The 100 face and 100 non-face crops of LFW as ``uint8``."""
    crops = (data.lfw_subset() * 255).round().astype(np.uint8)
    return crops[:100], crops[100:]


@cache
def background(name: str) -> np.ndarray:
    image = getattr(data, name)()
    if isinstance(image, tuple):  # stereo_motorcycle: (left, right, disparity)
        image = image[0]
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    return cv2.cvtColor(image[..., :3], cv2.COLOR_RGB2BGR)


def astronaut_bgr() -> np.ndarray:
    return cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)


def lbp_cascade_faces(bgr: np.ndarray) -> np.ndarray:
    """Faces found by scikit-image's LBP cascade: an independent reference detector."""
    from skimage.feature import Cascade

    cascade = Cascade(data.lbp_frontal_face_cascade_filename())
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    found = cascade.detect_multi_scale(
        img=gray, scale_factor=1.2, step_ratio=1, min_size=(60, 60), max_size=(300, 300)
    )
    return np.array(
        [[f["c"], f["r"], f["c"] + f["width"], f["r"] + f["height"]] for f in found], np.float32
    ).reshape(-1, 4)


def _fit(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Scale to cover ``width`` x ``height`` and centre-crop: a real background of that size."""
    h, w = image.shape[:2]
    scale = max(width / w, height / h)
    resized = cv2.resize(
        image, (max(width, round(w * scale)), max(height, round(h * scale))), cv2.INTER_AREA
    )
    y = (resized.shape[0] - height) // 2
    x = (resized.shape[1] - width) // 2
    return resized[y : y + height, x : x + width].copy()


def _paste(canvas: np.ndarray, crop: np.ndarray, x: int, y: int, side: int) -> None:
    tile = cv2.resize(
        crop,
        (side, side),
        interpolation=cv2.INTER_CUBIC if side > crop.shape[0] else cv2.INTER_AREA,
    )
    tile = cv2.cvtColor(tile, cv2.COLOR_GRAY2BGR).astype(np.float32)
    # A feathered edge, so that the detectors see a face and not a pasted square.
    feather = max(1, side // 16)
    ramp = np.minimum(np.arange(side) + 1, np.arange(side)[::-1] + 1) / feather
    alpha = np.clip(np.minimum.outer(ramp, ramp), 0, 1)[..., None]
    region = canvas[y : y + side, x : x + side].astype(np.float32)
    canvas[y : y + side, x : x + side] = (
        (alpha * tile + (1 - alpha) * region).round().astype(np.uint8)
    )


def _place(
    rng: np.random.Generator, taken: list[tuple[int, int, int]], side: int, width: int, height: int
) -> tuple[int, int] | None:
    for _ in range(200):
        x = int(rng.integers(0, width - side))
        y = int(rng.integers(0, height - side))
        # Keep a gap of a quarter of the larger square: faces do not overlap.
        if all(
            x + side + max(side, s) // 4 <= tx
            or tx + s + max(side, s) // 4 <= x
            or y + side + max(side, s) // 4 <= ty
            or ty + s + max(side, s) // 4 <= y
            for tx, ty, s in taken
        ):
            return x, y
    return None


def compose(
    rng: np.random.Generator,
    *,
    width: int,
    height: int,
    face_sides: Sequence[int],
    distractors: int,
    backdrop: str,
) -> Composed:
    """One group photo: faces of the given sides, plus non-face LFW crops, on a real photo."""
    faces, non_faces = lfw_crops()
    canvas = _fit(background(backdrop), width, height)
    taken: list[tuple[int, int, int]] = []
    boxes = []
    for side in sorted(face_sides, reverse=True):
        spot = _place(rng, taken, side, width, height)
        if spot is None:
            continue
        taken.append((*spot, side))
        _paste(canvas, faces[int(rng.integers(len(faces)))], spot[0], spot[1], side)
        boxes.append([spot[0], spot[1], spot[0] + side, spot[1] + side])
    for _ in range(distractors):
        side = int(rng.integers(24, 160))
        spot = _place(rng, taken, side, width, height)
        if spot is None:
            continue
        taken.append((*spot, side))
        _paste(canvas, non_faces[int(rng.integers(len(non_faces)))], spot[0], spot[1], side)
    return Composed(canvas, np.array(boxes, np.float32).reshape(-1, 4))


def composed_set(
    count: int,
    *,
    seed: int,
    width: int = 1024,
    height: int = 768,
    faces_per_bin: int = 3,
    distractors: int = 3,
) -> list[Composed]:
    """``count`` group photos, each with ``faces_per_bin`` faces in every size bin."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        sides = [int(rng.integers(lo, hi)) for lo, hi in SIZE_BINS for _ in range(faces_per_bin)]
        out.append(
            compose(
                rng,
                width=width,
                height=height,
                face_sides=sides,
                distractors=distractors,
                backdrop=BACKGROUNDS[i % len(BACKGROUNDS)],
            )
        )
    return out


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of two box arrays, in numpy: the tests' own, independent of the code."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)[:, None]
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)[None, :]
    return inter / np.maximum(area_a + area_b - inter, 1e-9)


def match(truth: np.ndarray, found: np.ndarray, *, iou: float = 0.5) -> tuple[np.ndarray, int]:
    """Greedy one-to-one matching at ``iou``: which truths were found, and how many
    detections matched nothing (false positives)."""
    if len(truth) == 0 or len(found) == 0:
        return np.zeros(len(truth), bool), len(found)
    overlap = iou_matrix(truth, found)
    hit = np.zeros(len(truth), bool)
    used = np.zeros(len(found), bool)
    for t, f in sorted(
        ((t, f) for t in range(len(truth)) for f in range(len(found)) if overlap[t, f] >= iou),
        key=lambda tf: -overlap[tf],
    ):
        if not hit[t] and not used[f]:
            hit[t] = used[f] = True
    return hit, int((~used).sum())
