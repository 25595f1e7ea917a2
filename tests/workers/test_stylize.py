"""``stylize``: one of 26 learned styles, blended by strength, same size."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from backend.catalogue import CATALOGUE, InvalidParams
from backend.catalogue.tasks import STYLES
from tests.workers.faces_fixtures import astronaut_bgr
from workers.models.faces import FaceDetector
from workers.models.style import STYLE_NAMES, StyleNet, load_style
from workers.stylize import load, make_runner

SPEC = CATALOGUE["stylize"]

Run = Callable[[np.ndarray, Mapping[str, Any]], np.ndarray]


@pytest.fixture(scope="module")
def run(model_dir: Path, face_detector: FaceDetector) -> Run:
    return make_runner(load_style(model_dir=model_dir, key=None))  # type: ignore[return-value]


def test_the_schema_lists_the_model_s_styles() -> None:
    assert STYLES == STYLE_NAMES


def test_two_styles_paint_the_photo_differently(run: Run) -> None:
    photo = cv2.resize(astronaut_bgr(), (320, 240))

    swirls = run(photo, SPEC.validate_params({"style": "blue-swirls"}))
    sepia = run(photo, SPEC.validate_params({"style": "sepia-print"}))

    assert swirls.shape == sepia.shape == photo.shape
    assert np.abs(swirls.astype(int) - photo).mean() > 20
    assert np.abs(swirls.astype(int) - sepia).mean() > 20
    # Blue swirls is blue; the sepia print is warm.
    assert swirls[..., 0].mean() > swirls[..., 2].mean()
    assert sepia[..., 2].mean() > sepia[..., 0].mean()


def test_strength_blends_with_the_photo(run: Run) -> None:
    photo = cv2.resize(astronaut_bgr(), (320, 240))
    full = run(photo, SPEC.validate_params({"strength": 1.0})).astype(np.float32)

    half = run(photo, SPEC.validate_params({"strength": 0.5})).astype(np.float32)
    none = run(photo, SPEC.validate_params({"strength": 0.0}))

    assert np.abs(half - (full + photo) / 2).max() <= 1.0
    assert np.array_equal(none, photo)


@pytest.mark.parametrize(
    "params", [{"style": "van-gogh"}, {"style": 3}, {"strength": 1.5}, {"strength": -0.1}]
)
def test_it_rejects_params_outside_the_schema(params: dict[str, Any]) -> None:
    with pytest.raises(InvalidParams):
        SPEC.validate_params(params)


def test_the_task_loads_from_the_configured_model_dir() -> None:
    runner = load()

    out = runner(astronaut_bgr(), SPEC.validate_params({}))

    assert isinstance(out, np.ndarray)
    assert out.shape == (512, 512, 3)


def test_style_net_is_shared_between_loads() -> None:
    from workers.models.learned import style_from_settings

    assert isinstance(style_from_settings(), StyleNet)
    assert style_from_settings() is style_from_settings()
