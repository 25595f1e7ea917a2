"""The photos of the face baseline (``data/face_baseline.json``), rebuilt by name.

Real photos: scikit-image's astronaut and cameraman portraits, and composed
group photos (real LFW faces on real backgrounds, ``faces_fixtures``) at the
three sizes the benchmark times.
"""

from __future__ import annotations

import cv2
import numpy as np

from tests.workers.faces_fixtures import Composed, astronaut_bgr, composed_set

#: name -> (width, height, seed, index) of a composed photo; two portraits besides.
COMPOSED: dict[str, tuple[int, int, int, int]] = {
    **{f"group-1024x768-{i}": (1024, 768, 2024, i) for i in range(4)},
    **{f"group-640x480-{i}": (640, 480, 480, i) for i in range(2)},
    **{f"group-1280x720-{i}": (1280, 720, 720, i) for i in range(2)},
    **{f"group-1920x1080-{i}": (1920, 1080, 1080, i) for i in range(3)},
}
PHOTOS: tuple[str, ...] = ("astronaut", "camera", *COMPOSED)


def composed(name: str) -> Composed:
    width, height, seed, index = COMPOSED[name]
    return composed_set(index + 1, seed=seed, width=width, height=height)[index]


def photo(name: str) -> np.ndarray:
    """The BGR photo of that name."""
    if name == "astronaut":
        return astronaut_bgr()
    if name == "camera":
        from skimage import data

        return cv2.cvtColor(data.camera(), cv2.COLOR_GRAY2BGR)
    return composed(name).image


def truth(name: str) -> np.ndarray | None:
    """Ground-truth face boxes of a composed photo; None for a portrait."""
    return composed(name).boxes if name in COMPOSED else None
