"""MediaPipe's selfie segmentation (person probability) through OpenCV's DNN module.

The TFLite file from the ``mediapipe==0.10.21`` wheel takes a 256x256 RGB
image in 0..1 and answers a 256x256 map of the probability that a pixel
belongs to a person (the net ends in a sigmoid). The pre- and
post-processing follow MediaPipe's ``selfie_segmentation_cpu`` graph: the
whole photo is stretched to 256x256 (no letterbox) and the map is stretched
back to the photo's size.

OpenCV 5 reads the file but wants the input in NCHW order, although the
TFLite graph is NHWC; given that, it matches the LiteRT interpreter within
1e-4 (checked by ``tests/workers/models/test_selfie.py`` on a stored
reference). It is preferred over LiteRT here because OpenCV is already a
dependency and the model needs nothing else.
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np

from workers.model_files import read_model

logger = logging.getLogger(__name__)

FILE = "selfie_segmentation.tflite"
SIZE = 256


class SelfieSegmenter:
    """The loaded net; ``probability`` is a pure function of its input."""

    def __init__(self, net: cv2.dnn.Net) -> None:
        self.net = net

    def forward(self, rgb256: np.ndarray) -> np.ndarray:
        """The raw 256x256 person probability of a 256x256 RGB ``uint8`` image."""
        if rgb256.shape != (SIZE, SIZE, 3):
            raise ValueError(f"the net takes a {SIZE}x{SIZE} RGB image, got {rgb256.shape}")
        blob = (rgb256.astype(np.float32) / 255.0).transpose(2, 0, 1)[None]
        self.net.setInput(np.ascontiguousarray(blob))
        out = self.net.forward()
        return np.asarray(out, np.float32).reshape(SIZE, SIZE)

    def probability(self, bgr: np.ndarray) -> np.ndarray:
        """Person probability (float32, 0..1) for every pixel of a BGR ``uint8`` photo."""
        height, width = bgr.shape[:2]
        # INTER_AREA: the photo is usually much larger than 256, and area
        # averaging keeps thin structures (hair, fingers) that sampling drops.
        small = cv2.resize(bgr, (SIZE, SIZE), interpolation=cv2.INTER_AREA)
        prob = self.forward(cv2.cvtColor(small, cv2.COLOR_BGR2RGB))
        return np.clip(cv2.resize(prob, (width, height), interpolation=cv2.INTER_LINEAR), 0, 1)


def load_selfie(*, model_dir: Path, key: bytes | None) -> SelfieSegmenter:
    """Load the net from verified bytes in memory (never from a decrypted file)."""
    data = read_model(FILE, model_dir=model_dir, key=key)
    try:
        net = cv2.dnn.readNetFromTFLite(np.frombuffer(data, np.uint8))
    except cv2.error as exc:
        raise ValueError(f"OpenCV could not read {FILE}: {exc}") from exc
    logger.info("selfie segmentation loaded from %s", model_dir)
    return SelfieSegmenter(net)
