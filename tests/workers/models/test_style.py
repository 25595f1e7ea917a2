"""The 26-style network through OpenCV: the port against onnxruntime, the upsampling."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.workers.faces_fixtures import astronaut_bgr
from workers.models.faces import FaceDetector
from workers.models.style import STYLE_NAMES, StyleNet, load_style, style_weights

DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="module")
def net(model_dir: Path, face_detector: FaceDetector) -> StyleNet:
    # face_detector pins torch and OpenCV to one thread, as a worker runs.
    return load_style(model_dir=model_dir, key=None)


def test_the_port_matches_the_reference_runtime(net: StyleNet) -> None:
    # Written by scripts/references/onnxruntime_reference.py.
    reference = np.load(DATA / "style_reference.npz")
    rgb = reference["input_rgb"].astype(np.float32) / 255.0

    for weights, expected in zip(reference["weights"], reference["stylized"], strict=True):
        np.testing.assert_allclose(
            net.forward(rgb, weights), expected.transpose(1, 2, 0), atol=1e-4
        )


def test_a_blend_is_normalised_and_names_map_to_indices() -> None:
    weights = style_weights({STYLE_NAMES[3]: 2.0, STYLE_NAMES[12]: 2.0})

    assert weights[3] == weights[12] == pytest.approx(0.5)
    assert weights.sum() == pytest.approx(1.0)
    assert len(set(STYLE_NAMES)) == 26


def test_a_capped_run_keeps_the_photo_s_edges(net: StyleNet) -> None:
    # The guided upsampling must beat plain bilinear upsampling against the
    # full-size result, which is what it stands in for.
    photo = cv2.resize(astronaut_bgr(), (640, 640), interpolation=cv2.INTER_CUBIC)
    weights = style_weights("ink-on-cream")
    full = net.stylize(photo, weights, max_pixels=10**7).astype(np.float32)
    capped = net.stylize(photo, weights, max_pixels=160_000).astype(np.float32)
    small = net.stylize(cv2.resize(photo, (400, 400), interpolation=cv2.INTER_AREA), weights)
    bilinear = cv2.resize(small, (640, 640), interpolation=cv2.INTER_LINEAR).astype(np.float32)

    assert capped.shape == full.shape
    assert np.abs(capped - full).mean() < np.abs(bilinear - full).mean()
