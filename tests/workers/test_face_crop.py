"""``face_crop``: the largest face, aligned on its landmarks to the template."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import cv2
import numpy as np
import pytest

from backend.catalogue import InvalidParams
from backend.catalogue.tasks import FACE_CROP as SPEC
from backend.errors import CodedError
from tests.workers.faces_fixtures import astronaut_bgr, background, lfw_crops
from workers.face_crop import make_runner
from workers.models.align import similarity, template
from workers.models.faces import DetectOptions, FaceDetector

Run = Callable[[np.ndarray, Mapping[str, Any]], np.ndarray]


@pytest.fixture(scope="module")
def run(face_detector: FaceDetector) -> Run:
    return make_runner(face_detector)  # type: ignore[return-value]


def landmarks_in(detector: FaceDetector, crop: np.ndarray) -> np.ndarray:
    faces = detector.detect(crop, DetectOptions(detectors=("mtcnn",))).faces
    assert len(faces) >= 1
    return faces.landmarks[int(np.argmax(faces.scores))]


def rotated(image: np.ndarray, degrees: float) -> np.ndarray:
    h, w = image.shape[:2]
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    return cv2.warpAffine(image, matrix, (w, h), borderMode=cv2.BORDER_REFLECT)


@pytest.mark.parametrize("degrees", [0, 25])
def test_the_face_lands_on_the_template(
    run: Run, face_detector: FaceDetector, degrees: float
) -> None:
    photo = rotated(astronaut_bgr(), degrees)
    params = SPEC.validate_params({})

    crop = run(photo, params)

    assert crop.shape == (256, 256, 3)
    found = landmarks_in(face_detector, crop)
    expected = template(256, params["padding"])
    assert np.linalg.norm(found - expected, axis=1).max() < 0.05 * 256
    (lx, ly), (rx, ry) = found[0], found[1]
    assert abs(np.degrees(np.arctan2(ry - ly, rx - lx))) < 4  # eyes level: the tilt is undone


@pytest.mark.parametrize("size", [32, 1024])
def test_the_size_is_honoured_at_its_bounds(run: Run, size: int) -> None:
    crop = run(astronaut_bgr(), SPEC.validate_params({"size": size}))

    assert crop.shape == (size, size, 3)


@pytest.mark.parametrize("size", [16, 31, 1025, 4096])
def test_sizes_out_of_bounds_are_rejected(size: int) -> None:
    with pytest.raises(InvalidParams, match="size"):
        SPEC.validate_params({"size": size})


def test_the_largest_face_is_the_one_cropped(run: Run) -> None:
    # A small grey LFW face beside the large colour astronaut, on a real photo.
    canvas = cv2.resize(background("brick"), (900, 600))
    canvas[50:562, 380:892] = astronaut_bgr()
    small = cv2.resize(lfw_crops()[0][3], (60, 60), interpolation=cv2.INTER_CUBIC)
    canvas[100:160, 60:120] = cv2.cvtColor(small, cv2.COLOR_GRAY2BGR)

    crop = run(canvas, SPEC.validate_params({"padding": 0}))

    saturation = cv2.cvtColor(crop, cv2.COLOR_BGR2HSV)[..., 1]
    assert saturation.mean() > 40  # the colour face, not the grey one


def test_no_face_fails_the_job_with_its_code(run: Run) -> None:
    from skimage import data

    with pytest.raises(CodedError) as failed:
        run(cv2.cvtColor(data.coffee(), cv2.COLOR_RGB2BGR), SPEC.validate_params({}))

    assert failed.value.code == "no_face_found"


def test_the_similarity_fit_recovers_a_known_transform() -> None:
    points = template(112, 0.0)
    angle, scale, shift = np.radians(30), 1.7, np.array([12.0, -5.0])
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    moved = points @ (scale * rot).T + shift

    matrix = similarity(points, moved)

    np.testing.assert_allclose(matrix[:, :2], scale * rot, atol=1e-9)
    np.testing.assert_allclose(matrix[:, 2], shift, atol=1e-9)
