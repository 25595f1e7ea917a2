"""MTCNN's cascade: the layouts and batches it runs its nets on."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from tests.workers.faces_fixtures import composed_set
from workers.models.faces import FaceDetector


@pytest.mark.parametrize("size", [(960, 540), (640, 480)], ids=["unresampled", "resampled"])
def test_pnet_runs_channels_last_on_every_pyramid_level(
    face_detector: FaceDetector, size: tuple[int, int]
) -> None:
    """oneDNN runs P-Net twice as fast channels-last; a level it takes for
    NCHW (as 1080p's first once was) silently costs 60% more."""
    photo = composed_set(1, seed=7, width=size[0], height=size[1])[0].image
    rgb = cv2.cvtColor(photo, cv2.COLOR_BGR2RGB)
    layouts: list[bool] = []
    hook = face_detector.mtcnn.pnet.conv3.register_forward_hook(
        lambda _m, _i, out: layouts.append(out.is_contiguous(memory_format=torch.channels_last))
    )
    try:
        face_detector.mtcnn.detect(rgb, min_face=12)
    finally:
        hook.remove()

    assert len(layouts) > 5
    assert all(layouts)


def _rnet_inputs(face_detector: FaceDetector, rgb: np.ndarray, floors: tuple[float, ...]) -> int:
    seen: list[int] = []
    hook = face_detector.mtcnn.rnet.register_forward_hook(
        lambda _m, inputs, _o: seen.append(inputs[0].shape[0])
    )
    try:
        face_detector.mtcnn.detect(rgb, min_face=12, level_floors=floors)
    finally:
        hook.remove()
    return sum(seen)


def test_level_floors_send_fewer_windows_to_rnet(face_detector: FaceDetector) -> None:
    """anonymize raises P-Net's threshold on the smallest faces' levels: fewer
    background windows for R-Net to reject (issue 14)."""
    rgb = cv2.cvtColor(composed_set(1, seed=7, width=960, height=540)[0].image, cv2.COLOR_BGR2RGB)

    assert _rnet_inputs(face_detector, rgb, (0.75, 0.7, 0.7)) < _rnet_inputs(face_detector, rgb, ())


def test_level_floors_never_lower_the_threshold(face_detector: FaceDetector) -> None:
    """A floor below the caller's threshold leaves it as it is."""
    rgb = cv2.cvtColor(composed_set(1, seed=7, width=960, height=540)[0].image, cv2.COLOR_BGR2RGB)

    low = face_detector.mtcnn.detect(rgb, min_face=12, level_floors=(0.1, 0.1, 0.1))
    none = face_detector.mtcnn.detect(rgb, min_face=12)

    assert np.array_equal(low.boxes, none.boxes)
