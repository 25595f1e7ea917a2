"""Task ``background``: hide what is behind the people (the room, the street).

The person probability of MediaPipe's selfie segmentation, feathered, keeps
the people; everything else is blurred, pixelated or painted one colour. The
output has the input's size. Blur and pixelation work on a reduced copy: the
background is meant to lose its detail, so nothing is lost, and the cost stays
flat as the photo grows (about 40 ms at 1 MP on one core, see bench/learned.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from workers.registry import Runner

if TYPE_CHECKING:
    from workers.models.selfie import SelfieSegmenter


def load() -> Runner:
    """Load the person segmentation once (shared with stylize and parse); return the runner."""
    from workers.models.learned import selfie_from_settings

    return make_runner(selfie_from_settings())


def hidden(image: np.ndarray, *, mode: str, amount: float, color: str) -> np.ndarray:
    """The whole photo with its detail destroyed the way ``mode`` says."""
    import cv2

    height, width = image.shape[:2]
    long_side = max(height, width)
    if mode == "color":
        bgr = [int(color[i : i + 2], 16) for i in (5, 3, 1)]
        return np.broadcast_to(np.array(bgr, np.uint8), image.shape)
    if mode == "pixelate":
        block = max(2.0, amount * long_side)
        size = (max(1, round(width / block)), max(1, round(height / block)))
        small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        return cv2.resize(small, (width, height), interpolation=cv2.INTER_NEAREST)
    # A Gaussian of sigma s at 1/f of the size is one of sigma s*f at full
    # size, at 1/f^2 of the cost; f keeps the small sigma near 4 pixels.
    sigma = amount * long_side
    factor = max(1.0, sigma / 4.0)
    size = (max(1, round(width / factor)), max(1, round(height / factor)))
    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), sigma / factor, borderType=cv2.BORDER_REFLECT)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)


def make_runner(segmenter: SelfieSegmenter) -> Runner:
    """The runner around an already loaded segmenter (the tests pass theirs)."""
    from workers.models.matte import composite, feathered

    def run(image: np.ndarray, params: Mapping[str, Any]) -> np.ndarray:
        alpha = feathered(segmenter.probability(image), feather=float(params["feather"]))
        back = hidden(
            image, mode=params["mode"], amount=float(params["amount"]), color=params["color"]
        )
        return composite(image, back, alpha)

    return run
