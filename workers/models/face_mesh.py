"""MediaPipe's face mesh (468 points) via LiteRT, placed on our MTCNN faces.

MediaPipe's ``face_landmark_front_cpu`` graph crops each face to a square of
1.5x its detector box, rotated so the eyes are level, at 192x192 with values
0..1; the net answers 468 (x, y, z) points in that square and a face-presence
logit. Here the box and the eyes come from MTCNN (already loaded for the face
tasks), not from BlazeFace. LiteRT runs it because OpenCV returns only the
first of its two outputs; it takes about 2 ms on one core.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from workers.model_files import read_model
from workers.models.pose import PoseRegion, _interpreter, _run, roi_matrix

logger = logging.getLogger(__name__)

FILE = "face_landmark.tflite"
SIZE = 192
_ROI_SCALE = 1.5
PRESENCE_THRESHOLD = 0.5

#: Regions of the mesh, as outlines (MediaPipe's canonical face-mesh indices).
FACE_OVAL = (
    10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400,
    377, 152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109,
)  # fmt: skip
LIPS = (
    61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185,
)  # fmt: skip
#: The person's right eye (left in the photo) and left eye.
RIGHT_EYE = (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246)
LEFT_EYE = (263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466)
RIGHT_BROW = (46, 53, 52, 65, 55, 107, 66, 105, 63, 70)
LEFT_BROW = (276, 283, 282, 295, 285, 336, 296, 334, 293, 300)
#: Bridge, tip, wings and base of the nose; its region is their convex hull.
NOSE = (168, 6, 197, 195, 5, 4, 1, 2, 98, 327, 64, 294, 48, 278, 129, 358)


@dataclass(frozen=True)
class Mesh:
    """468 points (x, y in photo pixels, z) and the net's face-presence score."""

    points: np.ndarray
    presence: float


class FaceMesher:
    """The loaded net; ``mesh`` is a pure function of its inputs."""

    def __init__(self, interpreter: object) -> None:
        self.interpreter = interpreter

    def mesh(self, rgb: np.ndarray, box: np.ndarray, eyes: np.ndarray) -> Mesh:
        """The mesh of the face in ``box`` (x1, y1, x2, y2) whose eye centres are ``eyes``.

        ``eyes`` is (2, 2): the eye on the photo's left first, as MTCNN orders them.
        """
        (lx, ly), (rx, ry) = eyes
        # MediaPipe's angle convention (see pose.roi_matrix): 0 when the eyes are level.
        rotation = -math.atan2(ry - ly, rx - lx)
        side = float(max(box[2] - box[0], box[3] - box[1])) * _ROI_SCALE
        centre = (float(box[0] + box[2]) / 2, float(box[1] + box[3]) / 2)
        region = PoseRegion(1.0, box, centre, side, rotation)
        matrix = roi_matrix(region, SIZE)
        crop = cv2.warpAffine(
            rgb, matrix, (SIZE, SIZE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
        )
        outputs = _run(self.interpreter, (crop.astype(np.float32) / 255.0)[None])
        raw = next(v for v in outputs.values() if v.size == 1404).reshape(468, 3)
        flag = float(next(v for v in outputs.values() if v.size == 1).reshape(()))
        inverse = cv2.invertAffineTransform(matrix)
        xy = raw[:, :2].astype(np.float64) @ inverse[:, :2].T + inverse[:, 2]
        z = raw[:, 2:3] * (side / SIZE)
        points = np.hstack([xy, z]).astype(np.float32)
        return Mesh(points, 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, flag)))))


def face_from_pose(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """A face box and eye centres (photo-left eye first) from BlazePose's face landmarks.

    As MediaPipe Holistic does, the face is found from the body pose instead
    of by a second detector (MTCNN costs about 100 ms on a 1 MP photo; this
    is free). The box is a detector-like square: centred between the eyes and
    the mouth, 2.2 eye distances wide. None when the face's points are not
    visible.
    """
    face = landmarks[[2, 5, 9, 10]]
    if (face[:, 3] < 0.5).any():
        return None
    # BlazePose's 2 is the person's left eye: on the photo's right when they face us.
    eyes = face[[1, 0], :2]
    centre = face[:, :2].mean(axis=0)
    half = 1.1 * float(np.linalg.norm(eyes[0] - eyes[1]))
    if half < 4:
        return None
    box = np.array([centre[0] - half, centre[1] - half, centre[0] + half, centre[1] + half])
    return box.astype(np.float32), eyes.astype(np.float32)


def load_face_mesh(*, model_dir: Path, key: bytes | None) -> FaceMesher:
    """The net from verified bytes in memory (never from a decrypted file)."""
    interpreter = _interpreter(read_model(FILE, model_dir=model_dir, key=key))
    logger.info("face mesh loaded from %s", model_dir)
    return FaceMesher(interpreter)
