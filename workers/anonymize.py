"""Task ``anonymize``: every face found by either detector, blurred, pixelated or boxed.

Recall first: the faces of MTCNN and CenterFace are united (a missed face is
a privacy leak, a spare blur is not), each is hidden with a margin, and the
blur's strength follows the face's size. The output has the input's size.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from workers.models.face_params import detection_properties
from workers.registry import Runner, TaskSpec

if TYPE_CHECKING:
    from workers.models.faces import DetectOptions, FaceDetector

PARAMS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "mode": {
            "enum": ["blur", "pixelate", "box"],
            "default": "blur",
            "description": "How to hide each face.",
        },
        "margin": {
            "type": "number",
            "minimum": 0,
            "maximum": 1,
            "default": 0.2,
            "description": "Extra area hidden around each face, as a fraction of its size.",
        },
        **detection_properties(recall_first=True),
    },
}


def detect_options(params: Mapping[str, Any]) -> DetectOptions:
    """The detection options anonymize runs with: the params, and CenterFace on a
    smaller copy (``face_params.CENTERFACE_SIZE``, issue 14)."""
    from workers.models.face_params import CENTERFACE_SIZE
    from workers.models.faces import DetectOptions

    return replace(DetectOptions.from_params(params), centerface_size=CENTERFACE_SIZE)


def load() -> Runner:
    """Load both face detectors once (shared with the other face tasks); return the runner."""
    from workers.models.faces import load_from_settings

    return make_runner(load_from_settings())


def make_runner(detector: FaceDetector) -> Runner:
    """The runner around an already loaded detector (the tests pass theirs)."""
    from workers.models.redact import redact

    def run(image: np.ndarray, params: Mapping[str, Any]) -> np.ndarray:
        found = detector.detect(image, detect_options(params))
        return redact(image, found.cover, mode=params["mode"], margin=float(params["margin"]))

    return run


SPEC = TaskSpec(
    name="anonymize",
    description=(
        "Find every face (two detectors, recall first) and blur, pixelate or black it out. "
        "The result has the input's size."
    ),
    params_schema=PARAMS_SCHEMA,
    load=load,
    # Answers in the input's own size and coordinates; the detector downscales
    # its own copy (detect_size), so the photo itself is not shrunk first.
    downscale_input=False,
    output="image",
)
