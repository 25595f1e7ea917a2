"""MediaPipe selfie segmentation through OpenCV: the port against LiteRT, and the mask."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.workers.faces_fixtures import astronaut_bgr, background
from workers.models.faces import DetectOptions, FaceDetector
from workers.models.selfie import SelfieSegmenter, load_selfie

DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="module")
def segmenter(model_dir: Path, face_detector: FaceDetector) -> SelfieSegmenter:
    # face_detector pins torch and OpenCV to one thread, as a worker runs.
    return load_selfie(model_dir=model_dir, key=None)


def test_the_port_matches_the_reference_runtime(segmenter: SelfieSegmenter) -> None:
    # Written by scripts/references/litert_reference.py with ai_edge_litert.
    reference = np.load(DATA / "selfie_reference.npz")

    probability = segmenter.forward(reference["input_rgb"])

    np.testing.assert_allclose(probability, reference["probability"], atol=2e-4)


def test_every_face_pixel_is_person_and_the_plain_wall_is_not(
    segmenter: SelfieSegmenter, face_detector: FaceDetector
) -> None:
    photo = astronaut_bgr()
    face = face_detector.detect(photo, DetectOptions()).faces.boxes[0]
    x1, y1, x2, y2 = face.round().astype(int)
    inset = (x2 - x1) // 5

    probability = segmenter.probability(photo)

    assert probability.shape == photo.shape[:2]
    assert probability[y1 + inset : y2 - inset, x1 + inset : x2 - inset].min() > 0.9
    assert probability[0:60, 440:512].max() < 0.05  # the grey wall above her shoulder


@pytest.mark.parametrize("name", ["rocket", "brick"])
def test_a_photo_without_people_has_no_person(segmenter: SelfieSegmenter, name: str) -> None:
    assert (segmenter.probability(background(name)) > 0.5).mean() < 0.01
