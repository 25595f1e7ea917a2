"""Task ``face_crop``: the largest face, aligned on its five landmarks, ``size`` x ``size``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from backend.errors import CodedError
from workers.registry import Runner

if TYPE_CHECKING:
    from workers.models.faces import FaceDetector


def load() -> Runner:
    """Load both face detectors once (shared with the other face tasks); return the runner."""
    from workers.models.faces import load_from_settings

    return make_runner(load_from_settings())


def make_runner(detector: FaceDetector) -> Runner:
    """The runner around an already loaded detector (the tests pass theirs)."""
    from workers.models.align import align
    from workers.models.faces import DetectOptions

    def run(image: np.ndarray, params: Mapping[str, Any]) -> np.ndarray:
        faces = detector.detect(image, DetectOptions.from_params(params)).faces
        if len(faces) == 0:
            raise CodedError(
                "no_face_found",
                "No face was found in the image. Use a photo where a face is visible, or "
                "lower the detection thresholds in params.",
            )
        areas = (faces.boxes[:, 2] - faces.boxes[:, 0]) * (faces.boxes[:, 3] - faces.boxes[:, 1])
        largest = int(np.argmax(areas))
        return align(
            image, faces.landmarks[largest], size=int(params["size"]), padding=params["padding"]
        )

    return run
