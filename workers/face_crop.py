"""Task ``face_crop``: the largest face, aligned on its five landmarks, ``size`` x ``size``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from workers.models.face_params import detection_properties
from workers.registry import Runner, TaskFailed, TaskSpec

if TYPE_CHECKING:
    from workers.models.faces import FaceDetector

MIN_SIZE = 32
MAX_SIZE = 1024

PARAMS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "size": {
            "type": "integer",
            "minimum": MIN_SIZE,
            "maximum": MAX_SIZE,
            "default": 256,
            "description": "Side of the square output, in pixels.",
        },
        "padding": {
            "type": "number",
            "minimum": 0,
            "maximum": 1,
            "default": 0.25,
            "description": (
                "Space around the canonical face (eyes to mouth), as a fraction of it: "
                "0 is the tight 112x112 ArcFace framing."
            ),
        },
        **detection_properties(recall_first=False),
    },
}


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
            raise TaskFailed(
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


SPEC = TaskSpec(
    name="face_crop",
    description=(
        "The largest face, aligned on its eyes, nose and mouth to a canonical position, "
        "as a square image."
    ),
    params_schema=PARAMS_SCHEMA,
    load=load,
    output="image",
)
