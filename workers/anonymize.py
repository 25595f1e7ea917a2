"""Task ``anonymize``: every face found by either detector, blurred, pixelated or boxed.

Recall first: the faces of MTCNN and CenterFace are united (a missed face is
a privacy leak, a spare blur is not), each is hidden with a margin, and the
blur's strength follows the face's size. The output has the input's size.
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
    from workers.models.redact import redact

    def run(image: np.ndarray, params: Mapping[str, Any]) -> np.ndarray:
        found = detector.detect(image, DetectOptions.from_params(params))
        return redact(image, found.cover, mode=params["mode"], margin=float(params["margin"]))

    return run
