"""Soft person mattes from a probability map, and compositing with them.

Kept apart from the nets so that ``background`` and ``stylize`` share one
definition of "the person" and its feathered edge.
"""

from __future__ import annotations

import cv2
import numpy as np


def feathered(probability: np.ndarray, *, feather: float) -> np.ndarray:
    """A 0..1 matte whose edge is softened over ``feather`` x the image's long side.

    The feathering is a Gaussian of the map at a reduced size (the map comes
    from a 256x256 net, so no detail is lost by blurring it small), which keeps
    the cost constant however large the photo is.
    """
    height, width = probability.shape
    long_side = max(height, width)
    if feather <= 0:
        return probability.astype(np.float32, copy=False)
    scale = min(1.0, 512 / long_side)
    small = cv2.resize(
        probability,
        (max(1, round(width * scale)), max(1, round(height * scale))),
        interpolation=cv2.INTER_AREA,
    )
    sigma = max(0.5, feather * long_side * scale)
    small = cv2.GaussianBlur(small, (0, 0), sigma)
    return np.clip(cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR), 0, 1)


def composite(front: np.ndarray, back: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """``alpha * front + (1 - alpha) * back`` for ``uint8`` images, rounded."""
    a = alpha[..., None].astype(np.float32)
    mixed = back.astype(np.float32)
    mixed += a * (front.astype(np.float32) - mixed)
    return np.clip(mixed + 0.5, 0, 255).astype(np.uint8)
