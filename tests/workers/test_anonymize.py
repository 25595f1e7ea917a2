"""``anonymize``: faces found by either detector are hidden, the rest is untouched."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import cv2
import numpy as np
import pytest

from backend.catalogue import InvalidParams
from backend.catalogue.tasks import ANONYMIZE as SPEC
from tests.workers.faces_fixtures import Composed, astronaut_bgr, iou_matrix
from workers.anonymize import detect_options, load, make_runner
from workers.models.faces import DetectOptions, FaceDetector
from workers.models.redact import expand

Run = Callable[[np.ndarray, Mapping[str, Any]], np.ndarray]


@pytest.fixture(scope="module")
def run(face_detector: FaceDetector) -> Run:
    return make_runner(face_detector)  # type: ignore[return-value]


def detail(image: np.ndarray, box: np.ndarray) -> float:
    """Fine structure inside the box at the scale of eyes and mouth.

    The standard deviation of the grey image minus its Gaussian blur at a
    sixteenth of the face: what tells one face from another, and what a
    blur must remove.
    """
    x1, y1, x2, y2 = (round(float(v)) for v in box)
    gray = cv2.cvtColor(image[y1:y2, x1:x2], cv2.COLOR_BGR2GRAY).astype(np.float64)
    sigma = max(1.0, (x2 - x1) / 16)
    return float((gray - cv2.GaussianBlur(gray, (0, 0), sigma)).std())


def colours(image: np.ndarray, box: np.ndarray) -> int:
    x1, y1, x2, y2 = (round(float(v)) for v in box)
    return len(np.unique(image[y1:y2, x1:x2].reshape(-1, 3), axis=0))


def faces_left(detector: FaceDetector, image: np.ndarray, where: np.ndarray) -> int:
    """Faces the recall-first detector still finds over the given boxes."""
    found = detector.detect(image, DetectOptions()).faces
    if len(found) == 0 or len(where) == 0:
        return 0
    return int((iou_matrix(where, found.boxes) > 0.2).any(axis=1).sum())


@pytest.mark.parametrize("mode", ["blur", "pixelate", "box"])
def test_no_face_is_found_where_the_astronaut_was(
    run: Run, face_detector: FaceDetector, mode: str
) -> None:
    photo = astronaut_bgr()
    before = face_detector.detect(photo, DetectOptions()).faces
    face = before.boxes[:1]

    out = run(photo, SPEC.validate_params({"mode": mode}))

    assert out.shape == photo.shape and out.dtype == np.uint8
    assert faces_left(face_detector, out, face) == 0
    if mode == "pixelate":
        # A few dozen flat blocks where there were thousands of colours.
        assert colours(out, face[0]) < 100 < 2000 < colours(photo, face[0])
    else:
        assert detail(out, face[0]) < 0.1 * detail(photo, face[0])


@pytest.mark.slow
def test_every_face_of_a_group_photo_loses_its_detail(
    run: Run, face_detector: FaceDetector, group_photos: list[Composed]
) -> None:
    photo = group_photos[0]

    out = run(photo.image, SPEC.validate_params({}))

    assert faces_left(face_detector, out, photo.boxes) == 0
    for box in photo.boxes:
        # The LFW tile is wider than the face; its inner 80% is the face.
        inner = box + np.array([1, 1, -1, -1]) * 0.1 * (box[2] - box[0])
        assert detail(out, inner) < 0.1 * detail(photo.image, inner)


def test_pixels_away_from_faces_are_untouched(run: Run, face_detector: FaceDetector) -> None:
    photo = astronaut_bgr()
    params = SPEC.validate_params({"margin": 0.2})
    found = face_detector.detect(photo, detect_options(params))

    out = run(photo, params)

    untouched = np.ones(photo.shape[:2], bool)
    for box in found.cover:
        x1, y1, x2, y2 = expand(box, 0.2, photo.shape[1], photo.shape[0])
        untouched[y1:y2, x1:x2] = False
    assert np.array_equal(out[untouched], photo[untouched])
    assert not np.array_equal(out[~untouched], photo[~untouched])


def test_box_mode_blacks_the_face_out_with_its_margin(
    run: Run, face_detector: FaceDetector
) -> None:
    photo = astronaut_bgr()
    params = SPEC.validate_params({"mode": "box", "margin": 0.1})
    found = face_detector.detect(photo, detect_options(params))

    out = run(photo, params)

    x1, y1, x2, y2 = expand(found.cover[0], 0.1, photo.shape[1], photo.shape[0])
    assert (out[y1:y2, x1:x2] == 0).all()


def test_a_photo_without_faces_comes_back_unchanged(run: Run) -> None:
    from skimage import data

    rocket = cv2.cvtColor(data.rocket(), cv2.COLOR_RGB2BGR)

    out = run(rocket, SPEC.validate_params({"centerface_threshold": 0.5}))

    assert np.array_equal(out, rocket)


@pytest.mark.parametrize(
    "params",
    [{"mode": "smudge"}, {"margin": 2}, {"detect_size": 100}, {"mtcnn_thresholds": [0.5, 0.5]}],
)
def test_it_rejects_params_outside_the_schema(params: dict[str, Any]) -> None:
    with pytest.raises(InvalidParams):
        SPEC.validate_params(params)


def test_the_task_loads_from_the_configured_model_dir() -> None:
    runner = load()

    out = runner(astronaut_bgr(), SPEC.validate_params({}))

    assert out.shape == (512, 512, 3)
