"""Task ``face_verify``: are the largest faces of two photos the same person?

Two images in (``image`` and ``reference``), JSON out:
``{"same_person": bool, "distance": float, "threshold": float, "faces": [n_image, n_reference]}``.

The largest face of each photo is found by MTCNN (its five landmarks are the
most precise we have; CenterFace's recall is not needed here), aligned on
those landmarks to face-api's dlib framing, and described by dlib's ResNet
(``workers.models.face_embed``). The two descriptors exist only in this
function's locals: they are never returned, logged, or put in Redis, and
nothing here logs at all, so no exception or log line can carry them.

The threshold is dlib's: the net was trained to put one person's faces
within 0.6 of each other. Measured here (bench/learned.py, real photos: the
face_recognition 1.3.0 test photos of Barack Obama and Joe Biden, Eileen
Collins in scikit-image's astronaut, and the 21 faces of face-api's demo
photos): every same-person pair below 0.45, every different-person pair
above 0.67, so 0.6 accepts all 10 same pairs and none of 158 different pairs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from backend.errors import CodedError
from workers.registry import PairRunner

if TYPE_CHECKING:
    from workers.models.face_embed import FaceEmbedder
    from workers.models.faces import FaceDetector

#: dlib's distance threshold (see the module docstring for the measurement).
THRESHOLD = 0.6


def load() -> PairRunner:
    """Load MTCNN (shared with the face tasks) and the descriptor net once; return compare."""
    from workers.models.faces import load_from_settings
    from workers.models.learned import face_embedder_from_settings

    return make_compare(load_from_settings(), face_embedder_from_settings())


def make_compare(detector: FaceDetector, embedder: FaceEmbedder) -> PairRunner:
    """The comparison around already loaded models (the tests pass theirs)."""
    import cv2

    from workers.models.align import align
    from workers.models.face_embed import SIZE, chip_points
    from workers.models.faces import DetectOptions

    points = chip_points(SIZE)

    def largest_face(
        photo: np.ndarray, options: DetectOptions, which: str
    ) -> tuple[np.ndarray, int]:
        faces = detector.detect(photo, options).faces
        if len(faces) == 0:
            raise CodedError(
                f"no_face_in_{which}",
                f"No face was found in the {which}. Use a photo where one face is clearly "
                f"visible, or lower the detection thresholds in params.",
            )
        areas = (faces.boxes[:, 2] - faces.boxes[:, 0]) * (faces.boxes[:, 3] - faces.boxes[:, 1])
        chip = align(
            photo, faces.landmarks[int(np.argmax(areas))], size=SIZE, padding=0.0, points=points
        )
        return cv2.cvtColor(chip, cv2.COLOR_BGR2RGB), len(faces)

    def compare(
        image: np.ndarray, reference: np.ndarray, params: Mapping[str, Any]
    ) -> dict[str, Any]:
        options = dataclasses.replace(DetectOptions.from_params(params), detectors=("mtcnn",))
        chip_a, n_image = largest_face(image, options, "image")
        chip_b, n_reference = largest_face(reference, options, "reference")
        descriptors = embedder.embed(np.stack([chip_a, chip_b]))
        distance = float(np.linalg.norm(descriptors[0] - descriptors[1]))
        return {
            "same_person": distance < THRESHOLD,
            "distance": round(distance, 4),
            "threshold": THRESHOLD,
            "faces": [n_image, n_reference],
        }

    return compare
