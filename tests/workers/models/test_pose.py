"""BlazePose through LiteRT: our pre- and post-processing against MediaPipe and MTCNN."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.workers.faces_fixtures import astronaut_bgr, background
from workers.models.faces import DetectOptions, FaceDetector
from workers.models.pose import PoseEstimator, load_pose, ssd_anchors
from workers.models.selfie import load_selfie

DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="module")
def estimator(model_dir: Path, face_detector: FaceDetector) -> PoseEstimator:
    return load_pose(model_dir=model_dir, key=None)


def rgb(bgr: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def test_the_anchors_are_mediapipe_s_ssd_grid() -> None:
    anchors = ssd_anchors()

    assert anchors.shape == (2254, 2)  # 28*28*2 + 14*14*2 + 7*7*6, the net's outputs
    np.testing.assert_allclose(anchors[0], [0.5 / 28, 0.5 / 28])
    np.testing.assert_allclose(anchors[-1], [6.5 / 7, 6.5 / 7])


def test_the_body_landmarks_match_mediapipe_s_own_pipeline(estimator: PoseEstimator) -> None:
    # Written by scripts/references/mediapipe_reference.py: MediaPipe Pose
    # (mediapipe 0.10.21, model_complexity=1, the same .tflite files) on the
    # astronaut, in pixels.
    reference = json.loads((DATA / "pose_reference.json").read_text())
    expected = np.array(reference["landmarks"])[:, :2]
    visible = np.array(reference["landmarks"])[:, 3] > 0.5

    poses = estimator.estimate(rgb(astronaut_bgr()))

    assert len(poses) == 1
    error = np.linalg.norm(poses[0].landmarks[:, :2] - expected, axis=1)
    # Within 8 pixels: 1.5 pixels of the net's 256x256 crop, which spans 1318
    # photo pixels here (her hips are far below the frame).
    assert error[visible].max() < 8


def test_a_person_lying_down_gets_the_same_landmarks(estimator: PoseEstimator) -> None:
    # The landmark net sees a square turned upright along the body: turning
    # the photo by 90 degrees must turn the landmarks with it.
    upright = estimator.estimate(rgb(astronaut_bgr()))[0].landmarks
    turned = estimator.estimate(rgb(cv2.rotate(astronaut_bgr(), cv2.ROTATE_90_CLOCKWISE)))

    assert len(turned) == 1
    # (x, y) in the turned photo is (511 - y, x) of the upright one.
    back = np.column_stack([turned[0].landmarks[:, 1], 511 - turned[0].landmarks[:, 0]])
    face = list(range(11))  # the shoulders move more: the net is not exactly equivariant
    error = np.linalg.norm(back[face] - upright[face, :2], axis=1)
    assert error.max() < 10


def test_the_face_landmarks_agree_with_mtcnn(
    estimator: PoseEstimator, face_detector: FaceDetector
) -> None:
    photo = astronaut_bgr()
    face = face_detector.detect(photo, DetectOptions(detectors=("mtcnn",))).faces
    eyes_mtcnn = face.landmarks[0][:2]
    eye_distance = float(np.linalg.norm(eyes_mtcnn[0] - eyes_mtcnn[1]))

    poses = estimator.estimate(rgb(photo))

    assert len(poses) == 1
    marks = poses[0].landmarks
    # MTCNN orders the eyes by the photo, BlazePose by the person: compare
    # them as a pair, whichever way round fits.
    pose_eyes = marks[[5, 2], :2]
    errors = min(
        np.linalg.norm(pose_eyes - eyes_mtcnn, axis=1).max(),
        np.linalg.norm(pose_eyes[::-1] - eyes_mtcnn, axis=1).max(),
    )
    # BlazePose's face points are coarse (it models the whole body): a third
    # of the eye distance.
    assert errors < 0.35 * eye_distance
    mouth = face.landmarks[0][3:].mean(axis=0)
    assert np.linalg.norm(marks[[9, 10], :2].mean(axis=0) - mouth) < 0.35 * eye_distance


def test_the_pose_mask_agrees_with_the_selfie_mask(
    estimator: PoseEstimator, model_dir: Path
) -> None:
    photo = astronaut_bgr()
    selfie = load_selfie(model_dir=model_dir, key=None).probability(photo) > 0.5

    pose_mask = estimator.estimate(rgb(photo))[0].mask > 0.5

    # Two different nets; BlazePose's mask is coarse here (its 256x256 square
    # spans 1318 photo pixels).
    assert (pose_mask & selfie).sum() / (pose_mask | selfie).sum() > 0.75


@pytest.mark.parametrize("name", ["rocket", "brick"])
def test_nobody_is_found_where_there_is_nobody(estimator: PoseEstimator, name: str) -> None:
    assert estimator.estimate(rgb(background(name))) == []
