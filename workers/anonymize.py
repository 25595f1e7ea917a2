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

from workers.registry import Runner

if TYPE_CHECKING:
    from workers.models.faces import DetectOptions, FaceDetector


#: Longest side of the smaller copy CenterFace runs on for anonymize, taken
#: from the detection copy. MTCNN finds the small faces (its window is 12 px;
#: on the composed set it found 99% of them alone); CenterFace is there for
#: the larger ones and those MTCNN misses (turned heads), and found few faces
#: under 24 px even at 960. Its cost grows with the area: on one core, with
#: OpenCV's DNN module, 960x544 took 110 ms, 640x384 48 ms, 384x224 17 ms (on
#: ONNX Runtime now, 960x544 48 ms, 640x352 18 ms). 384 passed the recall checks but
#: no longer reached a 50 px face of the group photos that, merged with
#: MTCNN's box, widened the hidden area past the face's edge
#: (test_anonymize); 640 keeps it (issue 14). detect and face_crop return
#: CenterFace's boxes and landmarks to the client and keep the whole copy.
CENTERFACE_SIZE = 640
#: Least P-Net thresholds of the first three pyramid levels, those of the
#: smallest faces (up to twice the minimum face size; the rest keep the
#: params' threshold). Those levels gave three quarters of the windows sent to
#: R-Net, most of them textured background: a 1080p group photo's 1,087
#: candidates became 765, and R-Net was a quarter of anonymize's time. The
#: real faces there score high on P-Net: on the composed sets at 640x480,
#: 1280x720 and 1920x1080 every recall and precision figure stayed the same.
#: Raising the other levels did not: 0.7 on every level lost faces over 48 px
#: (recall 0.989 -> 0.972), and 0.8 on level 0 lost faces of 24-48 px (issue 14).
PNET_LEVEL_FLOORS: tuple[float, ...] = (0.75, 0.7, 0.7)


def detect_options(params: Mapping[str, Any]) -> DetectOptions:
    """The detection options anonymize runs with: the params, CenterFace on a
    smaller copy (``CENTERFACE_SIZE``) and fewer P-Net windows of the smallest
    faces (``PNET_LEVEL_FLOORS``), both for speed (issue 14)."""
    from workers.models.faces import DetectOptions

    return replace(
        DetectOptions.from_params(params),
        centerface_size=CENTERFACE_SIZE,
        pnet_level_floors=PNET_LEVEL_FLOORS,
    )


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
