"""MTCNN's cascade: the layouts and batches it runs its nets on."""

from __future__ import annotations

import cv2
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
