"""Hide faces in an image: blur, pixelate or black box, scaled to each face's size.

The strength follows the face, not the image: a fixed kernel leaves a large
face recognisable and smears a small one into its surroundings. Box filters
cost the same whatever their size, so a 600-pixel face blurs as fast as a
30-pixel one.
"""

from __future__ import annotations

import math
from typing import Literal

import cv2
import numpy as np

Mode = Literal["blur", "pixelate", "box"]

#: Blur: three box passes (close to a Gaussian with sigma ~ face / 4) of this
#: fraction of the face's side: eyes, nose and mouth merge into one blob.
BLUR_FRACTION = 1 / 2
BLUR_PASSES = 3
#: Pixelate: about this many blocks across the face (without margin).
PIXELATE_BLOCKS = 6


def expand(box: np.ndarray, margin: float, width: int, height: int) -> tuple[int, int, int, int]:
    """The box grown by ``margin`` of its size on every side, in whole pixels, clipped."""
    x1, y1, x2, y2 = (float(v) for v in box)
    dx, dy = (x2 - x1) * margin, (y2 - y1) * margin
    return (
        max(0, math.floor(x1 - dx)),
        max(0, math.floor(y1 - dy)),
        min(width, math.ceil(x2 + dx)),
        min(height, math.ceil(y2 + dy)),
    )


def _blur(region: np.ndarray, face: float) -> np.ndarray:
    k = max(3, round(face * BLUR_FRACTION))
    out = region
    for _ in range(BLUR_PASSES):
        out = cv2.blur(out, (k, k), borderType=cv2.BORDER_REFLECT)
    return out


def _pixelate(region: np.ndarray, face: float) -> np.ndarray:
    block = max(2.0, face / PIXELATE_BLOCKS)
    h, w = region.shape[:2]
    small = cv2.resize(
        region,
        (max(1, math.ceil(w / block)), max(1, math.ceil(h / block))),
        interpolation=cv2.INTER_AREA,
    )
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)


def redact(image: np.ndarray, boxes: np.ndarray, *, mode: Mode, margin: float) -> np.ndarray:
    """A copy of ``image`` (BGR ``uint8``) with every box, plus margin, made unrecognisable."""
    out = image.copy()
    height, width = image.shape[:2]
    for box in boxes:
        x1, y1, x2, y2 = expand(box, margin, width, height)
        if x2 <= x1 or y2 <= y1:
            continue
        face = float(max(box[2] - box[0], box[3] - box[1]))
        region = out[y1:y2, x1:x2]
        if mode == "blur":
            region[:] = _blur(region, face)
        elif mode == "pixelate":
            region[:] = _pixelate(region, face)
        else:
            region[:] = 0
    return out
