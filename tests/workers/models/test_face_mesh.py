"""The face mesh through LiteRT on our face boxes: against MediaPipe and MTCNN."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.workers.faces_fixtures import astronaut_bgr
from workers.models.face_mesh import (
    LEFT_EYE,
    LIPS,
    RIGHT_EYE,
    FaceMesher,
    face_from_pose,
    load_face_mesh,
)
from workers.models.faces import DetectOptions, FaceDetector
from workers.models.pose import load_pose

DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="module")
def mesher(model_dir: Path, face_detector: FaceDetector) -> FaceMesher:
    return load_face_mesh(model_dir=model_dir, key=None)


def inside(outline: np.ndarray, point: np.ndarray) -> bool:
    contour = outline.astype(np.float32).reshape(-1, 1, 2)
    return cv2.pointPolygonTest(contour, (float(point[0]), float(point[1])), False) >= 0


def test_the_mesh_matches_mediapipe_s_own_pipeline(
    mesher: FaceMesher, face_detector: FaceDetector
) -> None:
    # Written by scripts/references/mediapipe_reference.py (MediaPipe Face Mesh,
    # its BlazeFace box, on the astronaut). Ours starts from MTCNN's box, so
    # the crop differs a little: the points agree within 2% of the face.
    expected = np.array(json.loads((DATA / "face_mesh_reference.json").read_text())["points"])
    photo = astronaut_bgr()
    face = face_detector.detect(photo, DetectOptions(detectors=("mtcnn",))).faces

    mesh = mesher.mesh(cv2.cvtColor(photo, cv2.COLOR_BGR2RGB), face.boxes[0], face.landmarks[0][:2])

    assert mesh.presence > 0.9
    face_size = float(face.boxes[0, 2] - face.boxes[0, 0])
    assert (
        np.median(np.linalg.norm(mesh.points[:, :2] - expected[:, :2], axis=1)) < 0.02 * face_size
    )


def test_the_eye_and_lip_outlines_hold_mtcnn_s_points(
    mesher: FaceMesher, face_detector: FaceDetector
) -> None:
    photo = astronaut_bgr()
    face = face_detector.detect(photo, DetectOptions(detectors=("mtcnn",))).faces
    marks = face.landmarks[0]

    mesh = mesher.mesh(cv2.cvtColor(photo, cv2.COLOR_BGR2RGB), face.boxes[0], marks[:2])

    points = mesh.points[:, :2]
    assert inside(
        points[list(RIGHT_EYE)], marks[0]
    )  # the person's right eye is on the photo's left
    assert inside(points[list(LEFT_EYE)], marks[1])
    assert inside(points[list(LIPS)], marks[3:].mean(axis=0))


def test_a_face_box_from_the_pose_overlaps_mtcnn_s(
    model_dir: Path, face_detector: FaceDetector
) -> None:
    photo = astronaut_bgr()
    mtcnn = face_detector.detect(photo, DetectOptions(detectors=("mtcnn",))).faces.boxes[0]
    pose = load_pose(model_dir=model_dir, key=None).estimate(cv2.cvtColor(photo, cv2.COLOR_BGR2RGB))

    found = face_from_pose(pose[0].landmarks)

    assert found is not None
    box, _ = found
    inter = np.prod(
        np.clip(np.minimum(box[2:], mtcnn[2:]) - np.maximum(box[:2], mtcnn[:2]), 0, None)
    )
    union = np.prod(box[2:] - box[:2]) + np.prod(mtcnn[2:] - mtcnn[:2]) - inter
    assert inter / union > 0.5
