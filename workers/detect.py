"""Task ``detect``: face boxes, scores and five landmarks each, as JSON.

Coordinates are pixels of the array the runner is given (x right, y down,
boxes as ``[x1, y1, x2, y2]``); landmarks are the left eye, right eye, nose,
left and right mouth corner, "left" meaning the image's left.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from workers.registry import Runner

if TYPE_CHECKING:
    from workers.models.faces import FaceDetector


def load() -> Runner:
    """Load both face detectors once (shared with the other face tasks); return the runner."""
    from workers.models.faces import load_from_settings

    return make_runner(load_from_settings())


def make_runner(detector: FaceDetector) -> Runner:
    """The runner around an already loaded detector (the tests pass theirs)."""
    from workers.models.faces import DetectOptions

    def run(image: np.ndarray, params: Mapping[str, Any]) -> dict[str, Any]:
        height, width = image.shape[:2]
        faces = detector.detect(image, DetectOptions.from_params(params)).faces
        faces = faces.clipped(width, height)
        rows = zip(faces.boxes, faces.scores, faces.landmarks, strict=True)
        return {
            "width": int(width),
            "height": int(height),
            "faces": [
                {
                    "box": [round(float(v), 1) for v in box],
                    "score": round(float(score), 4),
                    "landmarks": [[round(float(x), 1), round(float(y), 1)] for x, y in marks],
                }
                for box, score, marks in rows
            ],
        }

    return run
