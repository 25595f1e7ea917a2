"""``background``: the people are kept, what is behind them loses its detail."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from backend.catalogue import CATALOGUE, InvalidParams
from tests.workers.faces_fixtures import astronaut_bgr
from workers.background import load, make_runner
from workers.models.faces import DetectOptions, FaceDetector
from workers.models.matte import feathered
from workers.models.selfie import SelfieSegmenter, load_selfie

SPEC = CATALOGUE["background"]

Run = Callable[[np.ndarray, Mapping[str, Any]], np.ndarray]


@pytest.fixture(scope="module")
def segmenter(model_dir: Path, face_detector: FaceDetector) -> SelfieSegmenter:
    return load_selfie(model_dir=model_dir, key=None)


@pytest.fixture(scope="module")
def run(segmenter: SelfieSegmenter) -> Run:
    return make_runner(segmenter)  # type: ignore[return-value]


def fine(image: np.ndarray) -> np.ndarray:
    """The fine structure of an image: grey minus its Gaussian blur (sigma 2)."""
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(np.float32)
    return gray - cv2.GaussianBlur(gray, (0, 0), 2)


def surviving_detail(original: np.ndarray, out: np.ndarray, where: np.ndarray) -> float:
    """How much of the original's fine structure is still in ``out`` (1 = all, 0 = none).

    A projection, not a comparison of energies: pixelation makes new edges
    (block borders) that carry nothing of the photo and must not count.
    """
    before, after = fine(original)[where], fine(out)[where]
    return float((before * after).sum() / (before * before).sum())


@pytest.mark.parametrize("mode", ["blur", "pixelate", "color"])
def test_the_face_is_kept_and_the_background_loses_its_detail(
    run: Run, segmenter: SelfieSegmenter, face_detector: FaceDetector, mode: str
) -> None:
    photo = cv2.resize(astronaut_bgr(), (900, 700))
    x1, y1, x2, y2 = face_detector.detect(photo, DetectOptions()).faces.boxes[0].astype(int)
    behind = segmenter.probability(photo) < 0.01
    behind[:, 450:] = False  # the flag on the left: the most detailed background there is
    assert behind.sum() > 20_000

    out = run(photo, SPEC.validate_params({"mode": mode}))

    assert out.shape == photo.shape
    assert out.dtype == np.uint8
    inset = (x2 - x1) // 4  # the box reaches past the cheeks; its middle is all face
    face = np.s_[y1 + inset : y2 - inset, x1 + inset : x2 - inset]
    assert np.abs(out[face].astype(int) - photo[face]).max() <= 2
    assert surviving_detail(photo, out, behind) < 0.1


def test_color_mode_paints_the_background_that_colour(run: Run, segmenter: SelfieSegmenter) -> None:
    photo = astronaut_bgr()
    behind = segmenter.probability(photo) < 0.001

    out = run(photo, SPEC.validate_params({"mode": "color", "color": "#10a0f0", "feather": 0}))

    assert np.abs(out[behind].astype(int) - [0xF0, 0xA0, 0x10]).max() <= 1


def test_the_edge_is_feathered(segmenter: SelfieSegmenter) -> None:
    probability = segmenter.probability(astronaut_bgr())

    def band(alpha: np.ndarray) -> int:
        return int(((alpha > 0.05) & (alpha < 0.95)).sum())

    assert band(feathered(probability, feather=0.02)) > 2 * band(feathered(probability, feather=0))


@pytest.mark.parametrize(
    "params", [{"mode": "erase"}, {"color": "red"}, {"amount": 0.5}, {"feather": -1}, {"x": 1}]
)
def test_it_rejects_params_outside_the_schema(params: dict[str, Any]) -> None:
    with pytest.raises(InvalidParams):
        SPEC.validate_params(params)


def test_the_task_loads_from_the_configured_model_dir() -> None:
    runner = load()

    out = runner(astronaut_bgr(), SPEC.validate_params({}))

    assert isinstance(out, np.ndarray)
    assert out.shape == (512, 512, 3)
